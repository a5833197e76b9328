"""The server's Prometheus metrics (prometheus-client), one registry per `Metrics` object.

The composition root makes one and hands it to the servers and the queue; tests make their own,
so nothing is global. Label values are always from a fixed set (protocol names, reply codes,
command names the server knows, "OTHER" for the rest): a client can never grow the registry.
Names and meanings are documented in docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Seconds: from one fsync (milliseconds) to a slow remote MTA or a retry hours later.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)

POP3_COMMANDS = frozenset(
    [
        "USER",
        "PASS",
        "APOP",
        "STAT",
        "LIST",
        "RETR",
        "DELE",
        "NOOP",
        "RSET",
        "QUIT",
        "TOP",
        "UIDL",
        "CAPA",
        "STLS",
        "AUTH",
    ]
)

Sample = tuple[str, str, str, dict[str, str], float]  # kind, name, help, labels, value


class _Callback(Collector):
    """Values read at scrape time (queue size, store counters) from a callable."""

    def __init__(self, read: Callable[[], Iterable[Sample]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        families: dict[str, Any] = {}
        for kind, name, doc, labels, value in self.read():
            fam = families.get(name)
            if fam is None:
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                fam = families[name] = cls(name, doc, labels=sorted(labels))
            fam.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()


class Tally(Collector):
    """A labelled counter for the commands and replies of every session: bumped with one
    dictionary update on the event loop, rendered as a prometheus counter when scraped.
    prometheus_client's Counter takes a lock and makes four Python calls per increment, and an
    SMTP message counts thirteen (its commands and replies). Only the event loop bumps it, so
    no increment is lost without a lock; label values come from fixed sets, as for any metric."""

    def __init__(self, name: str, documentation: str, labelnames: list[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.counts: dict[tuple[str, ...], int] = {}

    def describe(self) -> Iterator[Any]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Any]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, n in list(self.counts.items()):
            family.add_metric(list(key), float(n))
        yield family

    def value(self, *labels: str) -> int:
        return self.counts.get(labels, 0)


class Metrics:
    def __init__(self) -> None:
        # no `_created` series: a timestamp per label set doubles the output for nothing
        # Prometheus uses (process-wide switch of the library; every registry wants it off)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Counter(
            "carteiro_connections",
            "Connections accepted, by protocol and service (listener)",
            ["protocol", "service"],
            registry=r,
        )
        self.connections_active = Gauge(
            "carteiro_connections_active", "Connections open now", ["service"], registry=r
        )
        self.connections_refused = Counter(
            "carteiro_connections_refused",
            "Connections closed at once: over a per-IP or total cap",
            ["service"],
            registry=r,
        )
        self.commands = Tally(
            "carteiro_commands",
            "Commands received, by protocol and command (OTHER: not a known command)",
            ["protocol", "command"],
        )
        r.register(self.commands)
        self.replies = Tally(
            "carteiro_replies",
            "Replies sent: SMTP reply code, IMAP tagged status (OK/NO/BAD), POP3 +OK/-ERR",
            ["protocol", "code"],
        )
        r.register(self.replies)
        self._commands = self.commands.counts
        self._replies = self.replies.counts
        self.messages_received = Counter(
            "carteiro_messages_received",
            "Messages accepted by the SMTP server (250 at the end of data), by service",
            ["service"],
            registry=r,
        )
        self.received_bytes = Counter(
            "carteiro_messages_received_bytes", "Octets of the messages accepted", registry=r
        )
        self.deliveries = Counter(
            "carteiro_deliveries",
            "Delivery attempts per recipient: status sent|deferred|bounced|expired, route "
            "local (into the store or an mbox spool) or remote (SMTP to another server)",
            ["status", "route"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "carteiro_delivery_seconds",
            "From arrival to final delivery of a recipient (local: the SMTP transaction's "
            "commit; queued: arrival in the queue to the successful attempt)",
            ["route"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.store_commit_seconds = Histogram(
            "carteiro_store_commit_seconds",
            "Local delivery of one received message to all its local recipients: store "
            "transaction, fsyncs (group commit), mbox writes",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "carteiro_auth_failures",
            "Failed logins (wrong credentials, throttled, refused), by protocol",
            ["protocol"],
            registry=r,
        )
        self.tls_connections = Counter(
            "carteiro_tls_connections",
            "TLS sessions established (implicit TLS or STARTTLS/STLS), by protocol and version",
            ["protocol", "version"],
            registry=r,
        )
        self.reloads = Counter(
            "carteiro_config_reloads",
            "SIGHUP reloads, by result (ok: applied; failed: the old configuration stays)",
            ["result"],
            registry=r,
        )

    def add_callback(self, read: Callable[[], Iterable[Sample]]) -> None:
        """Values computed when scraped (the queue's size, the store's counters)."""
        self.registry.register(_Callback(read))

    def command(self, protocol: str, name: str) -> None:
        """`name` must come from a fixed set (the caller maps anything else to "OTHER")."""
        counts, key = self._commands, (protocol, name)
        counts[key] = counts.get(key, 0) + 1

    def reply(self, protocol: str, code: str) -> None:
        counts, key = self._replies, (protocol, code)
        counts[key] = counts.get(key, 0) + 1

    def render(self) -> bytes:
        """The Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry)

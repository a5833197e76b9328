"""What every protocol server is given by the composition root (app.py): configuration, the store,
the directory, the outbound spool, TLS contexts, the shared auth throttle and the shutdown signal.

Servers take what they need from here and never construct backends themselves.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from carteiro.config import Config
from carteiro.core.metrics import Metrics
from carteiro.directory.accounts import Directory
from carteiro.directory.throttle import AuthThrottle
from carteiro.lists.service import ListService
from carteiro.mail.sieve_filter import SieveFilter
from carteiro.mailauth.dmarc_reports import Recorder
from carteiro.mailauth.inbound import Checker
from carteiro.net.trust import TrustedPeers
from carteiro.queue.api import Envelope, HeldMail, QueuedRecipient, Spool
from carteiro.store.api import MailStore

T = TypeVar("T")


@dataclass
class ServerContext:
    config: Config
    store: MailStore
    directory: Directory
    spool: Spool
    throttle: AuthThrottle
    tls: ssl.SSLContext
    trace: frozenset[str] = (
        frozenset()
    )  # protocols whose sessions are traced ("smtp", "imap", "pop3")
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    mailauth: Checker | None = None  # checks on inbound mail ([mailauth]); None: disabled
    dmarc_recorder: Recorder | None = None  # results kept for DMARC aggregate reports
    metrics: Metrics = field(default_factory=Metrics)
    # the queue's mail for held domains (ETRN, ATRN); None when no queue runs in this process
    held: HeldMail | None = None
    lists: ListService | None = None  # mailing lists: their addresses are taken at RCPT
    # peers that may pass their client's address ([auth] trusted_networks, the in-process webmail)
    trusted: TrustedPeers = field(default_factory=TrustedPeers)
    # objects that outlive a reload (SIGHUP builds a new context and new servers for new
    # sessions; dataclasses.replace hands this same dict to it): per-client rate counters
    lasting: dict[str, Any] = field(default_factory=dict)

    def keep(self, name: str, make: Callable[[], T]) -> T:
        """The object called `name`, made once and then shared by every server built from this
        context or a reload of it, so a reload neither resets counters nor doubles them."""
        if name not in self.lasting:
            self.lasting[name] = make()
        got: T = self.lasting[name]
        return got

    def tracing(self, protocol: str) -> bool:
        return protocol in self.trace or protocol in self.config.log.trace


def spool_outbound(
    spool: Spool,
) -> Callable[[str, tuple[str, ...], bytes, str | None, bool], Awaitable[object]]:
    """mail.deliver's Outbound (Sieve redirects and replies) as queue entries in `spool`."""

    async def outbound(
        mail_from: str, recipients: tuple[str, ...], data: bytes, key: str | None, trusted: bool
    ) -> str:
        env = Envelope(
            mail_from,
            tuple(QueuedRecipient(r) for r in recipients),
            smtputf8=not (mail_from.isascii() and all(r.isascii() for r in recipients)),
            body="8BITMIME",
            trusted=trusted,
        )
        return await spool.enqueue(env, data, key)

    return outbound


def sieve_filter(cfg: Config) -> SieveFilter | None:
    """The Sieve filter over DATA/sieve for deliveries, or None when [sieve] enabled = false."""
    if not cfg.sieve.enabled:
        return None
    from carteiro.mail.sieve_filter import open_sieve_filter

    s = cfg.sieve
    return open_sieve_filter(
        cfg.data_dir,
        cfg.hostname,
        max_scripts=s.max_scripts,
        max_script_size=s.max_script_size,
        max_cpu=s.max_cpu,
        max_redirects=s.max_redirects,
    )

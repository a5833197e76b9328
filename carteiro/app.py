"""Composition root: configuration -> backends -> services -> listeners.

The only module that names concrete backends and builds the services (the outbound queue with its
transport, resolver and local delivery; the protocol servers' context). The CLI calls in here, never
the other way round. `App.start()` opens the store, directory and queue, binds every configured
listener (failing fast with a one-line error naming the service and address), and `App.stop()`
stops accepting, lets in-flight sessions finish for a grace period, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from carteiro.config import Config, ConfigError
from carteiro.core.address import normalize_domain
from carteiro.core.metrics import Metrics, Sample
from carteiro.directory.accounts import Directory
from carteiro.directory.throttle import AuthThrottle
from carteiro.net.listener import Listener, ListenError
from carteiro.net.tls import load_server_context
from carteiro.net.trust import TrustedPeers
from carteiro.queue.api import Envelope, LocalHandoff, QueuedRecipient, Spool
from carteiro.queue.routing import Resolver, Router
from carteiro.queue.service import CONTROL_SOCKET, QUEUE_DIR, QueueService
from carteiro.queue.transport import Reply, TLSPolicy, Transport
from carteiro.servers.context import ServerContext, sieve_filter, spool_outbound
from carteiro.store.api import MailStore, MessageSource

if TYPE_CHECKING:  # commands that only open the store start fast: serving imports these when built
    from starlette.routing import BaseRoute

    from carteiro.fetch.poller import Fetcher
    from carteiro.lists.model import MailingList
    from carteiro.lists.service import Copy, ListService
    from carteiro.mail.deliver import LocalDelivery as MailDelivery
    from carteiro.mail.sieve_filter import Outbound
    from carteiro.mailauth.arc import Sealer
    from carteiro.mailauth.dkim import DKIMSigner
    from carteiro.mailauth.dmarc_reports import Recorder
    from carteiro.mailauth.inbound import Checker
    from carteiro.mailauth.lookup import Resolver as LookupResolver
    from carteiro.ops.privileges import Target
    from carteiro.queue.api import Spool
    from carteiro.queue.mta_sts import Policies
    from carteiro.queue.pickup import PickupConfig
    from carteiro.queue.rewrite import AddressMap
    from carteiro.queue.tlsrpt import Recorder as TLSRecorder
    from carteiro.queue.worker import WorkerConfig
    from carteiro.web.imap import Vouch
    from carteiro.web.server import WebServer
    from carteiro.web.settings import ListView, OwnedList, PasswordChanger, WebSettings

log = logging.getLogger("carteiro")

Requeue = Callable[[Envelope, MessageSource], Awaitable[str]]  # FileSpool.enqueue


ListenerFactory = Callable[[ServerContext], list[Listener]]


def _retune_transport(transport: Transport, cfg: Config) -> None:
    """The outbound SMTP/LMTP clients' name and connect timeout for their next connections."""
    from carteiro.net.lmtp_client import LMTPClientTransport, MuxTransport
    from carteiro.net.smtp_client import SMTPClientTransport

    if isinstance(transport, MuxTransport):
        for t in (transport.smtp, transport.lmtp):
            if isinstance(t, SMTPClientTransport | LMTPClientTransport):
                t.local_hostname = cfg.hostname
                t.connect_timeout = cfg.queue.connect_timeout


def open_store(cfg: Config, search_indexer: bool | str = False) -> MailStore:
    """The store; `search_indexer` for the long-running server only ("process": in a worker
    process of its own): a CLI command or one `carteiro deliver` leaves the messages it adds to
    the server's indexer (until it has them, SEARCH reads them)."""
    from carteiro.store.api import QuotaLimits
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    quota = QuotaLimits(cfg.quota.storage or None, cfg.quota.messages or None)
    store: MailStore = SqliteMaildirStore(cfg.data_dir, quota=quota, search_indexer=search_indexer)
    return store


def open_directory(cfg: Config) -> Directory:
    d = Directory(cfg.data_dir / "directory.sqlite", static_domains=cfg.domains)
    d.cache_ttl = cfg.auth.cache_ttl
    return d


def listener_factories() -> list[ListenerFactory]:
    """Each protocol server's `listeners(ctx)`; a disabled service ("" address) yields none."""
    factories: list[ListenerFactory] = []
    from carteiro.servers import pop3d

    factories.append(pop3d.listeners)
    from carteiro.servers import imapd

    factories.append(imapd.listeners)
    from carteiro.servers import smtpd

    factories.append(smtpd.listeners)
    from carteiro.servers import managesieved

    factories.append(managesieved.listeners)
    from carteiro.servers import lmtpd

    factories.append(lmtpd.listeners)
    from carteiro.servers import odmrd

    factories.append(odmrd.listeners)
    return factories


def open_local_delivery(
    cfg: Config, store: MailStore, directory: Directory, outbound: Outbound | None = None
) -> MailDelivery:
    """The one local delivery (aliases, plus-folders, Sieve, store or mbox), configured from
    [smtp] and [sieve]: the SMTP server, `carteiro deliver` and the queue all file mail through
    it. `outbound` queues what Sieve scripts send (redirects, vacation replies)."""
    from carteiro.mail.deliver import LocalDelivery as MailDelivery

    return MailDelivery(
        store,
        directory,
        cfg.path(cfg.smtp.mbox_dir),
        plus_folders=cfg.smtp.plus_folder_delivery,
        mbox_lock_timeout=cfg.smtp.mbox_lock_timeout,
        sieve=sieve_filter(cfg),
        outbound=outbound,
    )


class QueueHandoff:
    """The queue's LocalHandoff done by mail.deliver: DSNs and queued local recipients are filed
    exactly as the SMTP server files mail. Remote alias targets go back to the queue (`requeue`)
    inside the same delivery; mail's errors become the replies the queue records."""

    def __init__(
        self, delivery: MailDelivery, requeue: Requeue | None, lists: ListService | None = None
    ) -> None:
        self.delivery = delivery
        self.requeue = requeue
        self.lists = lists

    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> Reply:
        from carteiro.mail.deliver import DeliveryError

        if self.lists is not None and self.lists.owns(recipient):
            # a list address: the SMTP server queued it (the session is long done), the engine
            # expands it now; its 4xx makes the queue try again, with nothing sent twice
            try:
                out = await self.lists.receive(mail_from, recipient, data)
            except Exception:
                log.exception("lists: handling mail to %s failed", recipient)
                return Reply(451, "4.3.0", "list processing failed; will retry")
            return Reply(out.code, out.status, out.text)
        requeue = self.requeue

        async def forward(remote: Sequence[str]) -> None:
            assert requeue is not None
            await requeue(Envelope(mail_from, tuple(QueuedRecipient(a) for a in remote)), data)

        try:
            what = await self.delivery.deliver_to(
                recipient, mail_from, data, forward if requeue is not None else None
            )
        except DeliveryError as e:
            return Reply(451 if e.temporary else 550, e.status, e.reason)
        return Reply(250, "2.0.0", what)


def _tls_policy(value: str) -> TLSPolicy:
    if value in ("opportunistic", "starttls", "implicit", "none"):
        return value  # type: ignore[return-value]
    raise ConfigError(f"relay.tls: {value!r} is not one of opportunistic, starttls, implicit, none")


@dataclass
class QueueParts:
    """What hostname, [queue], [relay], [dns], [transport], [canonical] and [dkim] make of the
    outbound queue. Built at start, and again by a reload (SIGHUP), which swaps them into the
    running queue: its spool, its messages and the worker's schedule stay."""

    router: Router
    worker: WorkerConfig
    signer: DKIMSigner | None
    rewriter: AddressMap
    pickup: PickupConfig


def queue_parts(
    cfg: Config,
    directory: Directory,
    transport: Transport,
    resolver: Resolver | None = None,
    rng: random.Random | None = None,
) -> QueueParts:
    """Raises ConfigError for a value that cannot work (a reload then changes nothing)."""
    from carteiro.mailauth.dkim import DKIMSigner
    from carteiro.net.dns import DNSResolver
    from carteiro.queue.pickup import PickupConfig
    from carteiro.queue.retry import policy_from
    from carteiro.queue.rewrite import AddressMap
    from carteiro.queue.routing import Router, RoutingConfig
    from carteiro.queue.worker import WorkerConfig

    if resolver is None:
        resolver = DNSResolver(cfg.dns.nameservers, cfg.dns.timeout, dnssec=cfg.queue.dane)
    static = {d.lower() for d in cfg.domains}
    null_client = cfg.relay.null_client

    def is_local(domain: str) -> bool:
        if null_client:
            return False  # a null client delivers nothing itself: all to the smarthost
        return domain in static or directory.is_local_domain(domain)

    signer = DKIMSigner(cfg.data_dir, is_local, cfg.dkim.selector) if cfg.dkim.enabled else None
    q = cfg.queue
    inet = cfg.dns.inet_protocols
    if inet not in ("any", "ipv4", "ipv6"):
        raise ConfigError(f"dns.inet_protocols: {inet!r} is not one of any, ipv4, ipv6")
    routing = RoutingConfig(
        hostname=cfg.hostname,
        remote_port=q.remote_port,
        smarthost=cfg.relay.smarthost,
        relay_tls=_tls_policy(cfg.relay.tls),
        relay_username=cfg.relay.username,
        relay_password=cfg.relay.password,
        transport=dict(cfg.transport),
        tls_verify=q.tls_verify,
        cafile=str(cfg.path(q.tls_cafile)) if q.tls_cafile else "",
        inet_protocols=inet,
        dane=q.dane,
    )
    router = Router(
        resolver,
        routing,
        is_local,
        rng or random.Random(),
        prefer=transport.has_idle,
        is_held=directory.is_held_domain,
        sts=_mta_sts(cfg, resolver, routing.cafile),
    )
    worker = WorkerConfig(
        hostname=cfg.hostname,
        policy=policy_from(q.retry_schedule, q.max_age, q.delay_warning),
        max_concurrency=q.max_concurrency,
        max_per_destination=q.max_per_destination,
    )
    domains = list(cfg.domains) or directory.domains()
    pickup = PickupConfig(
        hostname=cfg.hostname,
        origin=domains[0] if domains else cfg.hostname,
        max_size=cfg.smtp.max_message_size,
    )
    return QueueParts(router, worker, signer, AddressMap(cfg.canonical), pickup)


def _mta_sts(cfg: Config, resolver: Resolver, cafile: str) -> Policies | None:
    """MTA-STS policies for the router ([queue] mta_sts), looked up through its resolver; None
    when off, or when the resolver cannot answer TXT queries (a test's fake)."""
    from carteiro.net.mta_sts import fetch_policy, txt_lookup
    from carteiro.queue.mta_sts import Policies

    lookup = getattr(resolver, "lookup", None)
    if not cfg.queue.mta_sts or lookup is None:
        return None
    port = cfg.queue.mta_sts_port

    async def fetch(domain: str) -> str:
        return await fetch_policy(domain, resolver.addresses, port, cafile)

    return Policies(txt_lookup(lookup), fetch, cfg.data_dir / QUEUE_DIR / "mta-sts.json")


def make_queue_service(
    cfg: Config,
    store: MailStore,
    directory: Directory,
    transport: Transport | None = None,
    resolver: Resolver | None = None,
    *,
    local: LocalHandoff | None = None,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    lists: ListService | None = None,
) -> QueueService:
    """The outbound queue for `cfg`. transport/resolver default to aiosmtplib and dnspython
    configured from [queue] and [dns]; `local` to delivery into the store."""
    from carteiro.net.control import ControlledQueueService
    from carteiro.net.smtp_client import SMTPClientTransport
    from carteiro.queue.spool import FileSpool
    from carteiro.queue.worker import QueueWorker

    rng = rng or random.Random()
    if transport is None:
        from carteiro.net.lmtp_client import LMTPClientTransport, MuxTransport

        transport = MuxTransport(
            SMTPClientTransport(cfg.hostname, connect_timeout=cfg.queue.connect_timeout),
            LMTPClientTransport(cfg.hostname, connect_timeout=cfg.queue.connect_timeout),
        )
    parts = queue_parts(cfg, directory, transport, resolver, rng)
    spool = FileSpool(
        cfg.data_dir / QUEUE_DIR,
        signer=parts.signer,
        clock=clock,
        rewriter=parts.rewriter,
    )
    if local is None:
        local = QueueHandoff(
            open_local_delivery(cfg, store, directory, spool_outbound(spool)),
            spool.enqueue,
            lists,
        )
    worker = QueueWorker(spool, parts.router, transport, local, parts.worker, clock=clock, rng=rng)
    if cfg.queue.tls_reports:
        from carteiro.queue.tlsrpt import DB_NAME
        from carteiro.queue.tlsrpt import Recorder as TLSRecorder

        rec = TLSRecorder(cfg.data_dir / QUEUE_DIR / DB_NAME, cfg.queue.tls_report_period, clock)
        worker.tls_report = rec
        if parts.router.sts is not None:
            parts.router.sts.on_failure = rec.session
    from carteiro.queue.maildrop import PICKUP_SOCKET
    from carteiro.queue.pickup import Pickup

    pickup = Pickup(cfg.data_dir / QUEUE_DIR, spool, parts.pickup)
    return ControlledQueueService(
        spool,
        worker,
        transport,
        pickup,
        control_path=cfg.data_dir / QUEUE_DIR / CONTROL_SOCKET,
        pickup_path=cfg.data_dir / QUEUE_DIR / PICKUP_SOCKET,
    )


def make_fetcher(cfg: Config, store: MailStore, directory: Directory) -> Fetcher:
    """The `[[fetch]]` pollers, delivering through the same local delivery as SMTP."""
    from carteiro.core.durations import parse_duration
    from carteiro.fetch.poller import FetchEntry, Fetcher
    from carteiro.mail.deliver import DeliveryError

    delivery = open_local_delivery(cfg, store, directory)

    async def deliver(account: str, data: bytes, sender: str, delivery_id: str) -> None:
        res = delivery.resolve(account)
        if not res.local_accounts:
            raise DeliveryError(f"{account} has no local mailbox", temporary=True)
        targets = await delivery.targets(res.local_accounts)
        await delivery.deliver(targets, data, sender, None, delivery_id)

    entries = [
        FetchEntry(
            account=f.account,
            server=f.server,
            protocol=f.protocol,
            tls=f.tls,
            user=f.user,
            password_file=cfg.path(f.password_file),
            folders=tuple(f.folders),
            keep=f.keep,
            interval=parse_duration(f.interval),
            verify=f.tls_verify,
            cafile=str(cfg.path(f.tls_cafile)) if f.tls_cafile else None,
        )
        for f in cfg.fetch
    ]
    return Fetcher(entries, cfg.data_dir, deliver, cfg.hostname)


def make_mail_checker(
    cfg: Config, resolver: object | None = None, directory: Directory | None = None
) -> Checker | None:
    """The inbound checks ([mailauth]) over our DNS resolver; None when disabled. Without a
    usable resolver every lookup is a temporary failure (mail deferred, never misjudged)."""
    from carteiro.mailauth.inbound import Checker, Settings
    from carteiro.mailauth.lookup import NoResolver

    m = cfg.mailauth
    if not m.enabled:
        return None
    dns: LookupResolver
    if resolver is not None:
        dns = resolver  # type: ignore[assignment]
    else:
        from carteiro.net.dns import DNSResolver

        try:
            dns = DNSResolver(cfg.dns.nameservers, cfg.dns.timeout)
        except Exception as e:  # no /etc/resolv.conf and no [dns] nameservers
            log.warning("mailauth: no DNS resolver (%s): inbound mail is deferred", e)
            dns = NoResolver()
    settings = Settings(
        authserv_id=m.authserv_id or cfg.hostname,
        dmarc_policy=m.dmarc_policy,
        spf_fail=m.spf_fail,
        temperror=m.temperror,
        require_iprev=m.require_iprev,
        require_helo=m.require_helo,
        verify_max_size=m.verify_max_size,
        dns_timeout=m.dns_timeout,
        arc_trusted_sealers=tuple(m.arc_trusted_sealers),
        dnsbl_zones=tuple(cfg.limits.dnsbl_zones),
        dmarc_failure_reports=m.dmarc_failure_reports and m.dmarc_reports,
    )
    hostname = cfg.hostname.lower().rstrip(".")
    static = {d.lower() for d in cfg.domains}

    def ours(name: str) -> bool:
        """This server's names a stranger must not HELO with (helo.check)."""
        if name == hostname or name in static:
            return True
        return directory is not None and directory.is_local_domain(name)

    return Checker(dns, settings, ours=ours)


FAILURE_REPORT_RETRY = 3600.0  # seconds a failure report waits out DNS failures, then dropped


class _ReportTask:
    """A reporting job of the running server: every `tick` seconds it runs once() (which
    writes what `recorder` counted and mails what is due) until the server stops; what is
    still counted is written last."""

    name = "report"  # for the log
    tick = 60.0

    def __init__(self, cfg: Config, recorder: Recorder | TLSRecorder, spool: Spool) -> None:
        self.cfg = cfg
        self.recorder = recorder
        self.spool = spool
        # reports go out from postmaster of the first domain, in the name of this host (DMARC's
        # settings name both, for every kind of report)
        m = cfg.mailauth
        first = cfg.domains[0] if cfg.domains else cfg.hostname
        self.sender = m.dmarc_report_from or f"postmaster@{first}"
        self.org = m.dmarc_report_org or cfg.hostname

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # waits first: the queue opens after this task is made
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick):
                    await stop.wait()
            if stop.is_set():
                break
            # a round can wait on the network (a report POSTed to a slow server): the server's
            # stop ends it (what it had not sent is sent by the next start), not the other way
            work = asyncio.ensure_future(self.once())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait((work, stopping), return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
                break
            if (exc := work.exception()) is not None:
                log.error("%s: reporting failed; trying again later", self.name, exc_info=exc)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.recorder.flush)

    async def once(self) -> int:
        raise NotImplementedError


class DMARCReportTask(_ReportTask):
    """Flushes the recorded DMARC results and mails each domain's aggregate report (RFC 7489
    7.2) through the outbound queue when its period has ended."""

    name = "dmarc"

    def __init__(self, cfg: Config, recorder: Recorder, spool: Spool, checker: Checker) -> None:
        super().__init__(cfg, recorder, spool)
        self.dmarc = recorder
        self.checker = checker
        self.interval = cfg.mailauth.dmarc_report_interval
        self.tick = min(60.0, max(0.5, self.interval / 4))

    async def once(self) -> int:
        from carteiro.mailauth import dmarc_reports

        data = self.cfg.data_dir
        await asyncio.to_thread(self.recorder.flush)
        due = await asyncio.to_thread(
            dmarc_reports.due_reports, data, self.org, self.sender, self.cfg.hostname,
            self.interval,
        )  # fmt: skip
        sent = 0
        resolver = self.checker.resolver
        for report in due:
            verdicts = [
                (a, await dmarc_reports.authorized(resolver, report.policy_domain, a))
                for a in report.recipients
            ]
            if any(v is None for _a, v in verdicts):
                # not marked sent: the next round asks DNS again
                log.info("dmarc: report for %s put off: DNS failed for now", report.policy_domain)
                continue
            to = [a for a, v in verdicts if v]
            if to:
                env = Envelope(self.sender, tuple(QueuedRecipient(a) for a in to))
                await self.spool.enqueue(env, report.message)
                sent += 1
                log.info(
                    "dmarc: report for %s (%d rows) to %s",
                    report.policy_domain,
                    report.rows,
                    ", ".join(to),
                )
            else:
                log.info("dmarc: no authorized report address for %s", report.policy_domain)
            await asyncio.to_thread(dmarc_reports.mark_sent, data, report)
        return sent + await self.failure_reports()

    async def failure_reports(self) -> int:
        """RFC 7489 7.3: the failure reports sessions left in the outbox, each to the ruf=
        addresses that accept reports for the domain (7.1) and within their !size."""
        from carteiro.mailauth import dmarc_failures, dmarc_reports

        sent = 0
        for case in self.dmarc.failures.drain():
            targets = [t for t in (dmarc_reports.parse_mailto(u) for u in case.ruf) if t]
            verdicts = [
                (
                    addr,
                    await dmarc_reports.authorized(self.checker.resolver, case.policy_domain, addr),
                )
                for addr, _limit in targets
            ]
            if any(v is None for _a, v in verdicts):
                # DNS failed for now: the next round tries again, for an hour after the message
                if time.time() - case.arrival < FAILURE_REPORT_RETRY:
                    self.dmarc.failures.add(case)
                continue
            to = [addr for addr, v in verdicts if v]
            if not to:
                log.info("dmarc: no authorized failure report address for %s", case.policy_domain)
                continue
            message = dmarc_failures.compose(case, self.org, self.sender, to, self.cfg.hostname)
            to = [a for a, limit in targets if a in to and (not limit or len(message) <= limit)]
            if not to:
                continue
            env = Envelope(self.sender, tuple(QueuedRecipient(a) for a in to))
            await self.spool.enqueue(env, message)
            sent += 1
            log.info(
                "dmarc: failure report for %s (from %s) to %s",
                case.from_domain,
                case.source_ip,
                ", ".join(to),
            )
        return sent


class TLSReportTask(_ReportTask):
    """Writes the counted TLS sessions and sends each domain that asks for it (`_smtp._tls`
    TXT) its report (RFC 8460) when a period has ended: by mail through the outbound queue to
    its rua=mailto: addresses, by HTTPS POST to its rua=https: URIs (kept in an outbox in the
    database until posted, retried for three days)."""

    name = "tls-rpt"
    POSTS_AT_ONCE = 8

    def __init__(self, cfg: Config, recorder: TLSRecorder, spool: Spool, resolver: object) -> None:
        super().__init__(cfg, recorder, spool)
        self.tls = recorder
        self.lookup = getattr(resolver, "lookup", None)
        self.addresses = getattr(resolver, "addresses", None)
        self.period = recorder.period
        self.tick = min(60.0, max(0.5, self.period / 4))
        q = cfg.queue
        self.cafile = str(cfg.path(q.tls_cafile)) if q.tls_cafile else ""

    async def once(self, now: float | None = None) -> int:
        await asyncio.to_thread(self.recorder.flush)
        sent = await self._reports(now)
        await self._posts(now)
        return sent

    async def _reports(self, now: float | None) -> int:
        from carteiro.net.mta_sts import txt_lookup
        from carteiro.queue import tlsrpt

        path = self.tls.path
        due = await asyncio.to_thread(
            tlsrpt.due_reports, path, self.org, self.sender, self.period, now
        )
        if not due or self.lookup is None:
            return 0
        txt = txt_lookup(self.lookup)
        sent = 0
        for report in due:
            status, records = await txt(f"_smtp._tls.{report.domain}")
            clock = now if now is not None else time.time()
            if status == "temp" and clock - report.end < TLS_REPORT_RETRY:
                log.info("tls-rpt: report for %s put off: DNS failed for now", report.domain)
                continue  # the next round asks DNS again
            uris = (tlsrpt.parse_record(records) if status == "ok" else None) or []
            to = tlsrpt.mailto_addresses(uris)
            posts = tlsrpt.https_uris(uris) if self.addresses is not None else []
            others = [u for u in uris if u[:7].lower() != "mailto:" and u not in posts]
            if others:
                log.info("tls-rpt: %s asks for reports at %s: not used (mailto: and at most"
                         " %d https: URIs are)", report.domain, ", ".join(others),
                         tlsrpt.MAX_HTTPS)  # fmt: skip
            if to:
                message = tlsrpt.compose(self.org, self.sender, to, report, self.cfg.hostname)
                env = Envelope(self.sender, tuple(QueuedRecipient(a) for a in to))
                await self.spool.enqueue(env, message)
                log.info(
                    "tls-rpt: report for %s (%d sessions) to %s",
                    report.domain,
                    report.sessions,
                    ", ".join(to),
                )
            if to or posts:
                sent += 1
            if posts:  # the outbox rows and the forgetting in one transaction
                await asyncio.to_thread(tlsrpt.queue_posts, path, report, posts, clock)
            else:
                await asyncio.to_thread(tlsrpt.forget, path, report)
        return sent

    async def _posts(self, now: float | None) -> None:
        """POST what the outbox holds and is due (RFC 8460 5.3.2: a 2xx is delivered)."""
        from carteiro.net import https
        from carteiro.net.tls import client_context
        from carteiro.queue import tlsrpt

        path = self.tls.path
        clock = now if now is not None else time.time()
        due = await asyncio.to_thread(tlsrpt.due_posts, path, clock)
        if not due or self.addresses is None:
            return
        ctx = client_context(verify=True, cafile=self.cafile or None)
        room = asyncio.Semaphore(self.POSTS_AT_ONCE)
        addresses = self.addresses

        async def post(p: tlsrpt.Post) -> None:
            host, port, target = tlsrpt.post_target(p.uri)
            async with room:
                try:
                    resp = await https.request(
                        host,
                        addresses,
                        ctx,
                        "POST",
                        target,
                        port=port,
                        headers=[
                            ("Content-Type", "application/tlsrpt+gzip"),
                            ("User-Agent", "carteiro (TLS-RPT)"),
                        ],
                        body=p.body,
                        timeout=POST_TIMEOUT,
                    )
                    ok, why = 200 <= resp.status < 300, f"HTTP {resp.status}"
                except (OSError, ValueError, TimeoutError) as e:
                    ok, why = False, str(e) or type(e).__name__
            gone = await asyncio.to_thread(tlsrpt.post_done, path, p, ok, clock)
            if ok:
                log.info("tls-rpt: report %s for %s posted to %s", p.report_id, p.domain, p.uri)
            else:
                log.warning("tls-rpt: posting report %s for %s to %s failed (%s); %s",
                            p.report_id, p.domain, p.uri, why,
                            "dropped" if gone else "trying again later")  # fmt: skip

        await asyncio.gather(*(post(p) for p in due))


POST_TIMEOUT = 60.0  # seconds for one HTTPS POST of a TLS report
TLS_REPORT_RETRY = 3 * 86400.0  # seconds a report waits out DNS failures, then dropped


class QueueSender:
    """The list engine's `Sender`: its copies go to the outbound queue (set once it exists)."""

    def __init__(self) -> None:
        self.spool: Spool | None = None

    async def send(
        self,
        mail_from: str,
        recipients: Sequence[Copy],
        data: bytes,
        *,
        verp: bool = False,
        trusted: bool = True,
        key: str | None = None,
    ) -> None:
        if self.spool is None:
            raise RuntimeError("the outbound queue is not open")
        addresses = [mail_from, *(c.address for c in recipients)]
        env = Envelope(
            mail_from=mail_from,
            recipients=tuple(QueuedRecipient(c.address, headers=c.headers) for c in recipients),
            body="7BIT" if data.isascii() else "8BITMIME",
            smtputf8=not all(a.isascii() for a in addresses),
            # trusted: the queue DKIM-signs what comes From one of our domains (a list post
            # whose From was rewritten for DMARC); never a stranger's From
            trusted=trusted,
            verp=verp,
        )
        await self.spool.enqueue(env, data, f"list:{key}" if key else None)


class StoreArchiver:
    """The list engine's `Archiver`: posts filed into an account's mailbox by local delivery."""

    def __init__(self, store: MailStore, delivery: MailDelivery) -> None:
        self.store = store
        self.delivery = delivery

    async def archive(self, target: str, data: bytes, key: str) -> None:
        import hashlib

        from carteiro.mail.deliver import Target
        from carteiro.store.api import MailboxNotFound

        account, _, mailbox = target.partition(":")
        mailbox = mailbox or "INBOX"
        acct = await self.store.account(account)
        try:
            await acct.get_mailbox(mailbox)
        except MailboxNotFound:
            await acct.create_mailbox(mailbox)
        delivery_id = hashlib.sha256(key.encode()).hexdigest()[:40]
        await self.delivery.deliver([Target(account, mailbox)], data, "", delivery_id=delivery_id)


class ListsOwnerPage:
    """The webmail's `ListsOwner`: the list engine, as the logged-in user sees it. Only lists
    that name the user among their owners exist for it (the same answer as for no such list)."""

    EDITABLE = (
        "description",
        "subscription",
        "posting",
        "reply_to",
        "subject_prefix",
        "footer",
        "max_size",
    )

    def __init__(self, service: ListService) -> None:
        self.svc = service

    async def _mine(self, user: str, address: str) -> MailingList | None:
        from carteiro.core.address import AddressError, parse_address

        try:
            canonical = parse_address(address).canonical
        except AddressError:
            return None
        ml = await self.svc.query(self.svc.db.get, canonical)
        if ml is None or user.lower() not in {o.lower() for o in ml.owners}:
            return None
        return ml

    async def owned(self, user: str) -> list[OwnedList]:
        from carteiro.web.settings import OwnedList

        out = []
        for ml in await self.svc.query(self.svc.db.all):
            if user.lower() in {o.lower() for o in ml.owners}:
                members = await self.svc.query(self.svc.db.members, ml.address)
                held = await self.svc.query(self.svc.db.pending_of, ml.address, "post")
                out.append(OwnedList(ml.address, ml.settings.description, len(members), len(held)))
        return out

    async def view(self, user: str, address: str) -> ListView | None:
        from carteiro.web.settings import HeldPost, ListMemberView, ListView

        ml = await self._mine(user, address)
        if ml is None:
            return None
        members = await self.svc.query(self.svc.db.members, ml.address)
        held = await self.svc.query(self.svc.db.pending_of, ml.address, "post")
        return ListView(
            ml.address,
            {k: str(getattr(ml.settings, k)) for k in self.EDITABLE},
            [ListMemberView(m.address, m.name, m.delivery, m.status) for m in members],
            [
                HeldPost(p.token, p.address, p.subject, p.reason, p.created)
                for p in held
                if p.state == "waiting"
            ],
        )

    async def _owned_or_refuse(self, user: str, address: str) -> MailingList:
        from carteiro.web.settings import ListRefused

        ml = await self._mine(user, address)
        if ml is None:
            raise ListRefused("You own no such list.")
        return ml

    @staticmethod
    def _member(text: str) -> str:
        from carteiro.core.address import AddressError, parse_address
        from carteiro.web.settings import ListRefused

        try:
            return parse_address(text).canonical
        except AddressError as e:
            raise ListRefused(f"{text}: {e}") from None

    async def add_member(self, user: str, address: str, member: str) -> str:
        ml = await self._owned_or_refuse(user, address)
        who = self._member(member)
        if await self.svc.query(self.svc.db.member, ml.address, who) is not None:
            return f"{who} is already a member."
        await self.svc.add_by_owner(ml, who, user)
        return f"{who} added."

    async def remove_member(self, user: str, address: str, member: str) -> str:
        ml = await self._owned_or_refuse(user, address)
        who = self._member(member)
        if not await self.svc.query(self.svc.db.remove_member, ml.address, who):
            return f"{who} was not a member."
        log.info("lists: %s: %s removed by owner %s", ml.address, who, user)
        return f"{who} removed."

    async def change(self, user: str, address: str, values: dict[str, str]) -> str:
        import copy

        from carteiro.lists.model import SettingError
        from carteiro.web.settings import ListRefused

        ml = await self._owned_or_refuse(user, address)
        settings = copy.deepcopy(ml.settings)
        try:
            for key, value in values.items():
                if key not in self.EDITABLE:
                    raise ListRefused(f"{key} is not a setting owners change here.")
                if key == "footer":
                    # the form's text as typed (set() reads the CLI's one-line "\\n" escape)
                    settings.footer = value.replace("\r\n", "\n")
                else:
                    settings.set(key, value.strip())
        except SettingError as e:
            raise ListRefused(str(e)) from None
        ml.settings = settings
        await self.svc.query(self.svc.db.save, ml)
        log.info("lists: %s: settings changed by owner %s", ml.address, user)
        return "Settings saved."

    async def decide(self, user: str, address: str, token: str, action: str, reason: str) -> str:
        from carteiro.web.settings import ListRefused

        ml = await self._owned_or_refuse(user, address)
        held = await self.svc.query(self.svc.db.pending_of, ml.address, "post")
        # only a held post of this list: never another kind of token (a member's pending
        # confirmation), which moderate() would otherwise consume
        if not any(p.token == token.lower() and p.state == "waiting" for p in held):
            raise ListRefused("No such held post (already decided, or expired).")
        return await self.svc.moderate(ml, token, action, reason, by=user)


class ListSealer:
    """The list engine's `Sealer`: each list seals with its own domain's RSA DKIM key (d= the
    list's domain, as Mailman and mox do), else with the first served domain's key."""

    def __init__(self, cfg: Config, fallback: list[str]) -> None:
        self.cfg = cfg
        self.fallback = fallback
        self.authserv_id = cfg.mailauth.authserv_id or cfg.hostname
        self._sealers: dict[str, Sealer | None] = {}

    def _for(self, domain: str) -> Sealer | None:
        from carteiro.mailauth.arc import Sealer

        if domain not in self._sealers:
            self._sealers[domain] = Sealer.for_domain(
                self.cfg.data_dir, domain, self.cfg.dkim.selector, self.authserv_id
            )
        return self._sealers[domain]

    def seal(self, domain: str, data: bytes) -> bytes:
        if len(data) > self.cfg.mailauth.verify_max_size:
            return b""  # as the forward path: what was too big to verify is not vouched for
        sealer = self._for(domain.lower())
        if sealer is None and self.fallback:
            sealer = self._for(self.fallback[0].lower())
        return sealer.seal(data) if sealer is not None else b""


def lists_web_url(cfg: Config) -> str:
    if cfg.lists.web_url:
        return cfg.lists.web_url
    if not cfg.listen.web:
        return ""
    from carteiro.core.hostport import parse_hostport

    _, port = parse_hostport(cfg.listen.web)
    return f"https://{cfg.hostname}" + ("" if port == 443 else f":{port}")


def open_lists(
    cfg: Config, store: MailStore, directory: Directory
) -> tuple[ListService, QueueSender]:
    from carteiro.lists.db import ListDB, db_path
    from carteiro.lists.dmarc import DnsPolicy
    from carteiro.lists.service import ListService
    from carteiro.net.dns_txt import DNSTxt

    sender = QueueSender()
    service = ListService(
        ListDB(db_path(cfg.data_dir)),
        sender,
        DnsPolicy(DNSTxt(cfg.dns.nameservers, cfg.dns.timeout)),
        StoreArchiver(store, open_local_delivery(cfg, store, directory)),
        # sealing needs our Authentication-Results on the post: only when inbound checks run
        sealer=ListSealer(cfg, cfg.domains or directory.domains())
        if cfg.mailauth.arc_seal and cfg.mailauth.enabled
        else None,
        web_url=lists_web_url(cfg),
        batch=cfg.lists.batch,
    )
    return service, sender


def web_routes(cfg: Config, lists: ListService | None) -> list[BaseRoute]:
    """Routes other areas mount on the web listener: the lists' one-click unsubscribe (RFC 8058),
    under /lists/. The webmail's application serves these beside its own pages."""
    out: list[BaseRoute] = []
    if cfg.mta_sts.mode:
        out.append(mta_sts_route(cfg))
    if lists is not None:
        from carteiro.web.list_unsubscribe import routes

        out += routes(lists.one_click)
    return out


def published_mta_sts(cfg: Config) -> tuple[str, str]:
    """The MTA-STS policy we publish ([mta_sts]) and its id: (text, id)."""
    from carteiro.queue.mta_sts import policy_id, policy_text

    text = policy_text(cfg.mta_sts.mode, cfg.mta_sts.mx or [cfg.hostname], cfg.mta_sts.max_age)
    return text, policy_id(text)


def mta_sts_route(cfg: Config) -> BaseRoute:
    """GET /.well-known/mta-sts.txt: our policy as text/plain (RFC 8461 3.3), for whichever
    mta-sts.<domain> name points at the web listener."""
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    text, _ident = published_mta_sts(cfg)

    async def policy(_request: object) -> PlainTextResponse:
        return PlainTextResponse(text, headers={"Cache-Control": "max-age=300"})

    return Route("/.well-known/mta-sts.txt", policy, methods=["GET"])


def _local(host: str) -> str:
    # A wildcard listener is reached on loopback from this same process.
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def web_settings(cfg: Config, vouch: Vouch | None = None) -> WebSettings:
    """The webmail as a client of this server's own IMAP and submission listeners (implicit TLS
    preferred, else STARTTLS), and what autoconfiguration tells mail programs. With `vouch`
    (inside `carteiro serve`) the IMAP server trusts the webmail's own sockets, and only them,
    to pass the browser's address (docs/auth-trust.md)."""
    from carteiro.core.hostport import parse_hostport
    from carteiro.web.autoconfig import Service, Services
    from carteiro.web.imap import Endpoint
    from carteiro.web.settings import WebSettings

    lst = cfg.listen

    def endpoint(implicit: str, starttls: str, what: str, vouch: Vouch | None = None) -> Endpoint:
        # Encrypted even on loopback (the servers refuse plaintext passwords); the certificate is
        # our own, so it is not verified against a name.
        if implicit:
            host, port = parse_hostport(implicit)
            return Endpoint(_local(host), port, "implicit", verify=False, vouch=vouch)
        if starttls:
            host, port = parse_hostport(starttls)
            return Endpoint(_local(host), port, "starttls", verify=False, vouch=vouch)
        raise ConfigError(f"listen.web: the webmail needs [listen] {what} enabled")

    services = []
    for key, proto, tls in (
        ("imaps", "imap", "implicit"),
        ("imap", "imap", "starttls"),
        ("pop3s", "pop3", "implicit"),
        ("pop3", "pop3", "starttls"),
        ("submissions", "smtp", "implicit"),
        ("submission", "smtp", "starttls"),
    ):
        value = getattr(lst, key)
        if value:
            services.append(Service(proto, parse_hostport(value)[1], tls))
    public = cfg.web.public_hostname or cfg.hostname
    return WebSettings(
        imap=endpoint(lst.imaps, lst.imap, "imaps or imap", vouch),
        smtp=endpoint(lst.submissions, lst.submission, "submissions or submission"),
        hostname=cfg.hostname,
        services=Services(public, tuple(services)),
        idle_timeout=cfg.web.idle_timeout,
        max_upload=cfg.web.max_upload,
        secure_cookies=cfg.web.tls == "on",
        # ManageSieve with STARTTLS, as any client would, for the filter settings.
        sieve=endpoint("", lst.sieve, "sieve") if lst.sieve else None,
    )


def password_changer(directory: Directory, min_length: int) -> PasswordChanger:
    """The webmail's Settings -> change password, inside `carteiro serve` only (IMAP and SMTP
    have no command for it): the current password checked, the new one Argon2id-hashed by the
    directory, which also drops the account's login cache entry (and bumps its generation, so
    other processes' caches drop it too)."""
    from carteiro.web.settings import PasswordRefused

    async def change(user: str, old: str, new: str) -> None:
        if len(new) < min_length:
            raise PasswordRefused(f"The new password needs at least {min_length} characters.")
        if len(new) > 1024:
            raise PasswordRefused("The new password is too long.")
        if new == old:
            raise PasswordRefused("The new password is the same as the current one.")
        account = await directory.verify(user, old)
        if account is None:
            raise PasswordRefused("The current password is wrong.", wrong=True)
        await asyncio.to_thread(directory.set_password, account, new)
        log.info("password of %s changed in the webmail", account)

    return change


def web_server(
    cfg: Config,
    routes: Sequence[BaseRoute] = (),
    vouch: Vouch | None = None,
    directory: Directory | None = None,
    lists: ListService | None = None,
    settings: WebSettings | None = None,
) -> WebServer:
    """The web listener: the webmail's pages, with `routes` (web_routes) beside them; with the
    directory, the Settings page can change passwords."""
    from carteiro.web.app import create_app
    from carteiro.web.guard import WebLimits
    from carteiro.web.server import WebServer

    if settings is None:
        settings = web_settings(cfg, vouch)
    if directory is not None:
        settings.change_password = password_changer(directory, cfg.web.min_password_length)
    if lists is not None:
        settings.lists_owner = ListsOwnerPage(lists)
    cert = key = None
    if settings.secure_cookies:
        cert = cfg.path(cfg.web.cert or cfg.tls.cert)
        key = cfg.path(cfg.web.key or cfg.tls.key)
    limits = WebLimits(
        header_timeout=cfg.web.header_timeout,
        body_timeout=cfg.web.body_timeout,
        send_timeout=cfg.web.send_timeout,
        max_connections_per_ip=cfg.web.max_connections_per_ip if cfg.web.tls == "on" else 0,
        max_userip_connections=cfg.web.max_userip_connections,
        max_connections=cfg.web.max_connections,
    )
    return WebServer(create_app(settings, routes), cfg.listen.web, cert, key, limits)


@dataclass
class App:
    config: Config
    trace: frozenset[str] = frozenset()
    listeners: list[Listener] = field(default_factory=list)
    ctx: ServerContext | None = None
    queue: QueueService | None = None
    _dmarc: asyncio.Task[None] | None = None
    _tlsrpt: asyncio.Task[None] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    started: float = 0.0
    log_level_override: str | None = None  # `serve --log-level`: kept across reloads
    _stopped: bool = False

    def _privileges(self) -> Target | None:
        """The user to become after binding (started as root with [server] user set)."""
        from carteiro.ops import privileges

        user = self.config.server.user
        if not user:
            return None
        target = privileges.resolve(user, self.config.server.group)
        if not privileges.needs_switch(user):
            privileges.check_not_other_user(target)
            return None
        privileges.check_data_dir(target, self.config.data_dir)
        return target

    fetcher: Fetcher | None = None
    lists: ListService | None = None
    web: WebServer | None = None
    web_settings: WebSettings | None = None
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> None:
        """Raises ListenError, TLSFileError, PrivilegeError: one line each for the user."""
        from carteiro.net.listener import bind_address
        from carteiro.net.metrics_http import metrics_listener
        from carteiro.ops import privileges

        cfg = self.config
        target = self._privileges()
        # Read as started (root may be the only reader of a key under /etc), before any switch.
        tls = load_server_context(cfg.path(cfg.tls.cert), cfg.path(cfg.tls.key))
        prebound: dict[str, list[socket.socket]] = {}
        if target is not None:
            try:
                for f in dataclasses.fields(cfg.listen):
                    address = getattr(cfg.listen, f.name)
                    if address and f.name != "web" and not address.startswith("unix:"):
                        prebound[f.name] = bind_address(f.name, address)
            except ListenError:
                for socks in prebound.values():
                    for sock in socks:
                        sock.close()
                raise
            privileges.preload()
            privileges.drop_to(target)
            log.info("bound the ports as root; now running as %s", target.user)
        self._warn_missing_dkim_keys()
        store = open_store(cfg, search_indexer="process")
        directory = open_directory(cfg)
        throttle = AuthThrottle(
            failure_delay=cfg.auth.failure_delay,
            max_failures=cfg.auth.max_failures,
            window=cfg.auth.failure_window,
            block_time=cfg.auth.block_time,
            max_in_flight_per_ip=cfg.auth.max_in_flight_per_ip,
            max_in_flight_per_account=cfg.auth.max_in_flight_per_account,
            account_free_failures=cfg.auth.account_free_failures,
            account_delay=cfg.auth.account_delay,
            account_max_delay=cfg.auth.account_max_delay,
            slot_wait=cfg.auth.slot_wait,
        )
        self.lists, list_sender = open_lists(cfg, store, directory)
        self.queue = make_queue_service(cfg, store, directory, lists=self.lists)
        list_sender.spool = self.queue.spool
        self.ctx = ServerContext(
            config=cfg,
            store=store,
            directory=directory,
            spool=self.queue.spool,
            throttle=throttle,
            tls=tls,
            trace=self.trace,
            mailauth=make_mail_checker(cfg, directory=directory),
            metrics=self.metrics,
            held=self.queue.worker,
            lists=self.lists,
            trusted=TrustedPeers(cfg.auth.trusted_networks),
        )
        if self.ctx.mailauth is not None and cfg.mailauth.dmarc_reports:
            from carteiro.mailauth.dmarc_reports import Recorder

            self.ctx.dmarc_recorder = Recorder(cfg.data_dir)
            task = DMARCReportTask(
                cfg, self.ctx.dmarc_recorder, self.queue.spool, self.ctx.mailauth
            )
            self._dmarc = asyncio.get_running_loop().create_task(task.run(self.ctx.shutdown))
        tls_rec = self.queue.worker.tls_report
        if tls_rec is not None:
            tls_task = TLSReportTask(
                cfg, tls_rec, self.queue.spool, self.queue.worker.router.resolver
            )
            self._tlsrpt = asyncio.get_running_loop().create_task(tls_task.run(self.ctx.shutdown))
        self._instrument(self.queue, store)
        for factory in listener_factories():
            self.listeners.extend(factory(self.ctx))
        if cfg.listen.metrics:
            self.listeners.append(metrics_listener(cfg.listen.metrics, self.metrics, self.health))
        for lst in self.listeners:
            if lst.service != "metrics":  # scrapes are not mail traffic
                lst.metrics = self.metrics
            if lst.service in prebound:
                lst.adopt(prebound.pop(lst.service))
        for socks in prebound.values():
            for sock in socks:
                sock.close()
        try:
            # Every port bound first, so that one in use (or below 1024 without the right) is
            # the only line a failed start prints; then the queue, which a message accepted by
            # a listener must find open; then the listeners serve.
            for lst in self.listeners:
                if not lst.address.startswith("unix:"):
                    lst.prebind()
            await self.queue.start()
            for lst in self.listeners:
                await lst.start()
            if cfg.listen.web:
                try:
                    vouch = self.ctx.trusted.register
                    self.web_settings = web_settings(cfg, vouch)
                    self.web = web_server(
                        cfg,
                        web_routes(cfg, self.lists),
                        vouch,
                        directory,
                        self.lists,
                        self.web_settings,
                    )
                    await self.web.start()
                except OSError as e:  # one line, without "[Errno 98]" before it
                    raise ListenError(e.strerror or str(e)) from e
                except ConfigError as e:
                    raise ListenError(str(e)) from e
            self.lists.start()
        except ListenError:
            await self.stop(grace=0)
            raise
        self.started = time.time()
        from carteiro.store.sqlite_maildir import SqliteMaildirStore

        if isinstance(store, SqliteMaildirStore):
            store.start_search_indexer()  # (after the ports: a failed start stays one line)
        for lst in self.listeners:
            if lst.bound:
                log.info("%-12s listening on %s:%d", lst.service, *lst.bound)
        if os.geteuid() == 0:  # (said once it runs: a failed start stays one line)
            log.warning(
                "running as root: set [server] user (it binds the ports, then switches) "
                "or run it as a user with CAP_NET_BIND_SERVICE (contrib/carteiro.service)"
            )
        if cfg.fetch:
            self.fetcher = make_fetcher(cfg, store, directory)
            await self.fetcher.start()
        if self.web is not None and self.web.bound is not None:
            log.info(
                "%-12s listening on %s:%d (%s; webmail and list unsubscribe)",
                "web",
                *self.web.bound,
                "https" if self.web.https else "http",
            )

    def _warn_missing_dkim_keys(self) -> None:
        """Mail from a domain without its key goes out unsigned: say so once, at start."""
        cfg = self.config
        if not cfg.dkim.enabled:
            return
        from carteiro.mailauth.dkim import key_path

        directory = open_directory(cfg)
        try:
            domains = directory.domains()
        finally:
            directory.close()
        for dom in domains:
            path = key_path(cfg.data_dir, dom, cfg.dkim.selector)
            if not path.exists():
                log.warning(
                    "dkim: no key for %s (%s): its outbound mail goes unsigned; "
                    "`carteiro init --data %s` makes the missing keys",
                    dom,
                    path,
                    cfg.data_dir,
                )

    def _instrument(self, queue: QueueService, store: MailStore) -> None:
        """Point the queue's outcomes at the metrics; read queue size and store counters when
        scraped."""
        m = self.metrics

        def outcome(status: str, route: str, delay: float) -> None:
            m.deliveries.labels(status, route).inc()
            if status == "sent":
                m.delivery_seconds.labels(route).observe(delay)

        queue.worker.on_outcome = outcome
        spool = queue.spool

        def sample() -> Iterator[Sample]:
            msgs = list(spool.messages.values())
            now = time.time()
            pending = sum(1 for msg in msgs for r in msg.recipients if r.state == "pending")
            oldest = min((msg.arrival for msg in msgs), default=now)
            yield (
                "gauge",
                "carteiro_queue_messages",
                "Messages in the outbound queue",
                {},
                len(msgs),
            )
            yield (
                "gauge",
                "carteiro_queue_recipients_pending",
                "Recipients still to deliver",
                {},
                pending,
            )
            yield (
                "gauge",
                "carteiro_queue_oldest_age_seconds",
                "Age of the oldest message in the queue (0 when empty)",
                {},
                max(0.0, now - oldest),
            )
            yield (
                "gauge",
                "carteiro_queue_held_messages",
                "Messages held by the operator",
                {},
                sum(1 for msg in msgs if msg.held),
            )
            for attr, name, doc in (
                ("batches", "carteiro_store_commits_total", "Store write transactions committed"),
                (
                    "sync_rounds",
                    "carteiro_store_fsync_rounds_total",
                    "Rounds of fsyncs the store waited for (group commit: one per batch)",
                ),
                ("fsync_calls", "carteiro_store_fsync_calls_total", "fsync(2) calls by the store"),
            ):
                value = getattr(store, attr, None)
                if isinstance(value, int):
                    yield ("counter", name, doc, {}, value)

        m.add_callback(sample)

    async def health(self) -> dict[str, Any]:
        """What /healthz and `carteiro status` report: ok is false when a part is not working."""
        from carteiro.ops.health import check_health

        return await check_health(self)

    async def reload(self) -> bool:
        """SIGHUP: re-read carteiro.toml and apply what can change under running sessions
        (ops/reload.py says what); a bad file changes nothing. One reload at a time."""
        from carteiro.ops.reload import reload_app

        async with self._reloading:
            ok = await reload_app(self)
        self.metrics.reloads.labels("ok" if ok else "failed").inc()
        return ok

    def prepare(self, cfg: Config) -> Callable[[], None]:
        """Build everything a reload to `cfg` changes, touching nothing that runs, and return
        the function that swaps it in (which cannot fail). Raises (ConfigError, ValueError,
        OSError) when `cfg` cannot work: then nothing has changed.

        New sessions get servers built from `cfg` (a new ServerContext sharing the store,
        directory, spool, TLS context, throttle state and shutdown event); open sessions keep
        the servers, and so the configuration, they began with. The queue gets a new router,
        retry policy, signer and address map for its next attempts; the shared objects (auth
        throttle, directory, trusted networks, quota, lists, webmail) change in place."""
        old = self.ctx
        if old is None:
            return lambda: None
        ctx = dataclasses.replace(
            old, config=cfg, mailauth=make_mail_checker(cfg, directory=old.directory)
        )
        trusted = TrustedPeers(cfg.auth.trusted_networks).networks
        fresh = {lst.service: lst for f in listener_factories() for lst in f(ctx)}
        queue = self.queue
        parts = local = None
        if queue is not None:
            worker = queue.worker
            parts = queue_parts(cfg, ctx.directory, worker.transport, rng=worker.rng)
            if isinstance(worker.local, QueueHandoff):
                local = QueueHandoff(
                    open_local_delivery(cfg, ctx.store, ctx.directory, spool_outbound(queue.spool)),
                    queue.spool.enqueue,
                    self.lists,
                )
        web = None
        if self.web_settings is not None:
            web = web_settings(cfg, self.web_settings.imap.vouch)
            change = password_changer(ctx.directory, cfg.web.min_password_length)

        def commit() -> None:
            a = cfg.auth
            t = ctx.throttle  # the same object: its counters stay
            t.failure_delay, t.max_failures, t.window = (
                a.failure_delay,
                a.max_failures,
                a.failure_window,
            )
            t.block_time, t.slot_wait = a.block_time, a.slot_wait
            t.max_in_flight_per_ip = a.max_in_flight_per_ip
            t.max_in_flight_per_account = a.max_in_flight_per_account
            t.account_free_failures = a.account_free_failures
            t.account_delay, t.account_max_delay = a.account_delay, a.account_max_delay
            ctx.trusted.networks = trusted
            ctx.directory.cache_ttl = a.cache_ttl
            ctx.directory.static_domains = frozenset(normalize_domain(d) for d in cfg.domains)
            for lst in self.listeners:
                if lst.service in fresh:
                    lst.follow(fresh[lst.service])
            if queue is not None and parts is not None:
                queue.worker.router = parts.router
                queue.worker.config = parts.worker
                if local is not None:
                    queue.worker.local = local
                queue.spool.signer = parts.signer
                queue.spool.rewriter = parts.rewriter
                if queue.pickup is not None:
                    queue.pickup.config = parts.pickup
                _retune_transport(queue.transport, cfg)
            from carteiro.store.api import QuotaLimits
            from carteiro.store.sqlite_maildir import SqliteMaildirStore

            if isinstance(ctx.store, SqliteMaildirStore):
                ctx.store.quota_defaults = QuotaLimits(
                    cfg.quota.storage or None, cfg.quota.messages or None
                )
            if self.lists is not None:
                self.lists.web_url = lists_web_url(cfg).rstrip("/")
                self.lists.batch = cfg.lists.batch
            if web is not None and self.web_settings is not None:
                live = self.web_settings
                live.hostname, live.services = web.hostname, web.services
                live.max_upload = web.max_upload
                live.change_password = change
            self.config = cfg
            self.ctx = ctx

        return commit

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let sessions finish (up to `grace` s), stop the queue, close the store.
        Idempotent (a failed start has already stopped what it started)."""
        if self._stopped:
            return
        self._stopped = True
        if self.ctx is not None:
            self.ctx.shutdown.set()
        if self.fetcher is not None:
            await self.fetcher.stop()
        if self.web is not None:
            # First: its IMAP sessions (live-update streams) are connections the listeners wait for.
            await self.web.stop()
        await asyncio.gather(*(lst.stop(grace) for lst in self.listeners), return_exceptions=True)
        for task in (self._dmarc, self._tlsrpt):
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
        if self.lists is not None:
            await self.lists.stop()  # its maintenance; the queue may still hand mail over
        if self.queue is not None:
            await self.queue.stop()
        if self.ctx is not None:
            await self.ctx.store.close()
            self.ctx.directory.close()
        if self.lists is not None:
            self.lists.close()

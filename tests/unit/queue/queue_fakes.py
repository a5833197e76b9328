"""Fakes for queue tests: clock, resolver, transport, local delivery; and a queue to drive."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.queue.retry import RetryPolicy
from carteiro.queue.routing import AddressAnswer, MXAnswer, Router, RoutingConfig
from carteiro.queue.spool import FileSpool
from carteiro.queue.transport import Hop, Reply, SendResult, Transaction
from carteiro.queue.worker import QueueWorker, WorkerConfig

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeResolver:
    def __init__(self) -> None:
        self.mx_answers: dict[str, MXAnswer] = {}
        self.hosts: dict[str, AddressAnswer] = {}
        self.queries: list[tuple[str, str]] = []

    def mx_for(self, domain: str, *records: tuple[int, str]) -> None:
        self.mx_answers[domain] = MXAnswer("ok", tuple(records))

    def host(self, name: str, *addresses: str) -> None:
        self.hosts[name] = AddressAnswer("ok", tuple(addresses))

    async def mx(self, domain: str) -> MXAnswer:
        self.queries.append(("MX", domain))
        if domain in self.mx_answers:
            return self.mx_answers[domain]
        if domain in self.hosts:
            return MXAnswer("nodata")
        return MXAnswer("nxdomain", (), f"{domain}: no such domain")

    async def addresses(self, host: str) -> AddressAnswer:
        self.queries.append(("A", host))
        return self.hosts.get(host, AddressAnswer("nxdomain", (), f"{host}: no such domain"))


Handler = Callable[[Hop, Transaction], SendResult]


def accept_all(hop: Hop, txn: Transaction) -> SendResult:
    return SendResult(recipients=tuple(Reply(250, "2.0.0", "ok") for _ in txn.recipients))


def reply_all(code: int, status: str, text: str = "no") -> Handler:
    def handler(hop: Hop, txn: Transaction) -> SendResult:
        return SendResult(recipients=tuple(Reply(code, status, text) for _ in txn.recipients))

    return handler


def refuse_connect(hop: Hop, txn: Transaction) -> SendResult:
    return SendResult(
        session_error=Reply(451, "4.4.1", f"connect to {hop.address}: refused"), try_next=True
    )


@dataclass
class FakeTransport:
    handler: Handler = accept_all
    delay: float = 0.0
    calls: list[tuple[Hop, Transaction]] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    active_by_host: dict[str, int] = field(default_factory=dict)
    max_by_host: dict[str, int] = field(default_factory=dict)
    gate: asyncio.Event | None = None
    closed: bool = False

    async def send(self, hop: Hop, txn: Transaction) -> SendResult:
        self.calls.append((hop, txn))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        n = self.active_by_host.get(hop.host, 0) + 1
        self.active_by_host[hop.host] = n
        self.max_by_host[hop.host] = max(self.max_by_host.get(hop.host, 0), n)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            return self.handler(hop, txn)
        finally:
            self.active -= 1
            self.active_by_host[hop.host] -= 1

    def has_idle(self, hop: Hop) -> bool:
        return False

    async def close(self) -> None:
        self.closed = True

    def recipients_sent(self) -> list[str]:
        return [r.address for _, t in self.calls for r in t.recipients]


@dataclass
class FakeLocal:
    reply: Reply = field(default_factory=lambda: Reply(250, "2.0.0", "delivered"))
    delivered: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> Reply:
        if self.reply.ok:
            self.delivered.append((mail_from, recipient, data))
        return self.reply


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


MESSAGE = (
    b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@a.test>\r\n\r\nHi Bob.\r\n"
)


def env(*rcpts: str, sender: str = "alice@a.test", **kw: object) -> Envelope:
    return Envelope(sender, tuple(QueuedRecipient(r) for r in rcpts), **kw)  # type: ignore[arg-type]


@dataclass
class Queue:
    spool: FileSpool
    worker: QueueWorker
    transport: FakeTransport
    resolver: FakeResolver
    local: FakeLocal
    clock: FakeClock

    async def stop(self) -> None:
        await self.worker.stop()
        await self.spool.close()


async def make_queue(
    root: Path,
    *,
    transport: FakeTransport | None = None,
    resolver: FakeResolver | None = None,
    local: FakeLocal | None = None,
    clock: FakeClock | None = None,
    policy: RetryPolicy | None = None,
    routing: RoutingConfig | None = None,
    max_concurrency: int = 50,
    max_per_destination: int = 5,
    max_rcpt: int = 50,
) -> Queue:
    clock = clock or FakeClock()
    transport = transport or FakeTransport()
    if resolver is None:
        resolver = FakeResolver()
        for d, mx, ip in (
            ("b.test", "mx.b.test", "127.0.0.3"),
            ("c.test", "mx.c.test", "127.0.0.4"),
        ):
            resolver.mx_for(d, (10, mx))
            resolver.host(mx, ip)
    local = local or FakeLocal()
    spool = FileSpool(root, clock=clock)
    await spool.open()
    router = Router(
        resolver,
        routing or RoutingConfig(hostname="mx.a.test"),
        is_local=lambda d: d == "a.test",
        rng=random.Random(7),
    )
    worker = QueueWorker(
        spool,
        router,
        transport,
        local,
        WorkerConfig(
            hostname="mx.a.test",
            policy=policy
            or RetryPolicy(schedule=(60.0, 300.0), max_age=3 * 3600.0, delay_warning=3600.0),
            max_concurrency=max_concurrency,
            max_per_destination=max_per_destination,
            max_rcpt_per_transaction=max_rcpt,
        ),
        clock=clock,
        rng=random.Random(3),
    )
    await worker.start()
    return Queue(spool, worker, transport, resolver, local, clock)

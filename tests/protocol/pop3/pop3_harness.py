"""A real POP3 server (pop3d listeners on free loopback ports) over each store backend (the
in-memory one and SqliteMaildirStore in a temp dir), a real directory and TLS, plus a line client
and a transcript player for the tests in this directory."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carteiro.config import Config
from carteiro.directory.accounts import Directory
from carteiro.directory.throttle import AuthThrottle
from carteiro.net.listener import Listener
from carteiro.net.tls import client_context, make_self_signed, server_context
from carteiro.servers import pop3d
from carteiro.servers.context import ServerContext
from carteiro.store.api import AccountStore, MailStore
from carteiro.store.memory import MemoryMailStore

USER = "alice@example.test"
PASSWORD = "alice secret"
BOB = "bob@example.test"
BOB_PASSWORD = "bob-pw"
TIMEOUT = 10.0

# Every test using `server` runs once per backend. A test that is memory-only by nature says so
# with @pytest.mark.memory_only(reason=...); tests in files this harness does not own are listed
# here instead, by function name.
STORES = ["memory", "sqlite"]
MEMORY_ONLY: dict[str, str] = {
    "test_update_failure_is_sys_temp_and_deletes_nothing": "patches MemoryAccountStore",
    "test_login_store_failure_and_read_failure": "patches MemoryAccountStore",
}


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    make_self_signed(d / "cert.pem", d / "key.pem", "mail.example.test")
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="session")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    """One directory for the whole run (the tests only read it): Argon2 is slow by design, and
    the directory remembers successful logins, so most logins here cost a hash lookup."""
    d = Directory(tmp_path_factory.mktemp("dir") / "directory.sqlite", ["example.test"])
    d.add_user(USER, PASSWORD)
    d.add_user(BOB, BOB_PASSWORD)
    yield d
    d.close()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def cmd(self, line: str) -> str:
        await self.send(line.encode() + b"\r\n")
        return await self.line()

    async def line(self) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert raw.endswith(b"\r\n"), f"not a CRLF line: {raw!r}"
        return raw[:-2].decode("utf-8", "replace")

    async def multiline(self) -> list[str]:
        out = []
        while (line := await self.line()) != ".":
            out.append(line)
        return out

    async def raw_until_terminator(self) -> bytes:
        data = await asyncio.wait_for(self.reader.readuntil(b"\r\n.\r\n"), TIMEOUT)
        return data

    async def starttls(self) -> None:
        await self.writer.start_tls(client_context(verify=False))

    async def eof(self) -> bool:
        """True when the server closed the connection (after any remaining output)."""
        rest = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        assert rest == b"", f"unexpected data before close: {rest!r}"
        return True

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, ssl.SSLError, TimeoutError):
            pass


@dataclass
class Harness:
    ctx: ServerContext
    store: MailStore
    listeners: list[Listener]
    clients: list[Client] = field(default_factory=list)

    def port(self, service: str) -> int:
        for lst in self.listeners:
            if lst.service == service and lst.bound:
                return lst.bound[1]
        raise KeyError(service)

    async def account(self, who: str = USER) -> AccountStore:
        return await self.store.account(who)

    async def inbox_id(self, who: str = USER) -> int:
        return (await (await self.account(who)).get_mailbox("INBOX")).id

    async def add(self, data: bytes, who: str = USER) -> int:
        return (await (await self.account(who)).append("INBOX", data)).uid

    async def uids(self, who: str = USER) -> list[int]:
        acct = await self.account(who)
        return [m.uid for m in await acct.list_messages(await self.inbox_id(who))]

    async def connect(self, service: str = "pop3s", greeting: bool = True) -> Client:
        ctx = client_context(verify=False) if service == "pop3s" else None
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port(service), ssl=ctx, limit=1 << 22
        )
        client = Client(reader, writer)
        self.clients.append(client)
        if greeting:
            assert await client.line() == "+OK mail.example.test POP3 server ready"
        return client

    async def login(self, service: str = "pop3s", who: str = USER, pw: str = PASSWORD) -> Client:
        c = await self.connect(service)
        assert (await c.cmd(f"USER {who}")).startswith("+OK")
        reply = await c.cmd(f"PASS {pw}")
        assert reply.startswith("+OK Logged in"), reply
        return c


def _matches(expected: str, got: str) -> bool:
    if "{...}" not in expected:
        return expected == got
    pattern = ".*".join(re.escape(p) for p in expected.split("{...}"))
    return re.fullmatch(pattern, got) is not None


async def play(client: Client, script: str) -> None:
    """Run a transcript. Consecutive `C:` lines are sent in one write (pipelined); each `S:` line
    must be the server's next line exactly (`{...}` matches any text). Directives: `-- starttls`,
    `-- eof` (the server closed), `-- drop` (the client vanishes). `#` starts a comment."""
    pending: list[bytes] = []
    for n, raw in enumerate(script.strip("\n").splitlines(), 1):
        line = raw.lstrip()
        if line.startswith("C:"):
            pending.append(line[3:].encode() + b"\r\n")
            continue
        if pending:
            await client.send(b"".join(pending))
            pending = []
        if line.startswith("S:"):
            got = await client.line()
            assert _matches(line[3:], got), (
                f"transcript line {n}: expected {line[3:]!r}, got {got!r}"
            )
        elif line.strip() == "-- starttls":
            await client.starttls()
        elif line.strip() == "-- eof":
            assert await client.eof()
        elif line.strip() == "-- drop":
            client.abort()
        elif line.strip() and not line.lstrip().startswith("#"):
            raise ValueError(f"transcript line {n}: cannot read {line!r}")
    if pending:
        await client.send(b"".join(pending))


def make_config() -> Config:
    cfg = Config(hostname="mail.example.test", domains=["example.test"])
    cfg.listen.pop3 = "127.0.0.1:0"
    cfg.listen.pop3s = "127.0.0.1:0"
    return cfg


@pytest.fixture
def config() -> Config:
    """Tests may change it (e.g. a short idle timeout) before `server` starts."""
    return make_config()


@pytest.fixture(params=STORES)
async def server(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    config: Config,
    tls_files: tuple[Path, Path],
    directory: Directory,
) -> AsyncIterator[Harness]:
    kind: str = request.param
    if kind != "memory":
        mark = request.node.get_closest_marker("memory_only")
        name = getattr(request.node, "originalname", request.node.name)
        reason = mark.kwargs.get("reason", "memory store only") if mark else MEMORY_ONLY.get(name)
        if reason is not None:
            pytest.skip(f"memory store only: {reason}")
    store: MailStore
    if kind == "memory":
        store = MemoryMailStore()
    else:
        from carteiro.store.sqlite_maildir import SqliteMaildirStore

        store = SqliteMaildirStore(tmp_path / "store")
    for who in (USER, BOB):
        await store.create_account(who)
    ctx = ServerContext(
        config=config,
        store=store,
        directory=directory,
        spool=None,  # type: ignore[arg-type]  # POP3 never sends mail
        throttle=AuthThrottle(failure_delay=0.0, max_failures=1000),
        tls=server_context(*tls_files),
    )
    listeners = pop3d.listeners(ctx)
    for lst in listeners:
        await lst.start()
    h = Harness(ctx, store, listeners)
    try:
        yield h
    finally:
        for c in h.clients:
            await c.close()
        ctx.shutdown.set()
        await asyncio.gather(*(lst.stop(grace=2) for lst in listeners))
        await store.close()  # the sqlite store's threads and flock end with the test

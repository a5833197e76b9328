"""A real IMAP server (imapd listeners on free loopback ports) over each store backend (the
in-memory one and SqliteMaildirStore in a temp dir, so sessions meet the file journal and the
cross-process feed), a real directory and TLS; an IMAP line client; and the transcript player the
tests in this directory use.

Test modules import the fixtures from here (no conftest.py: other suites import theirs by name).
Transcripts read like the RFC examples. ``C:``/``S:`` belong to session 1, ``C2:``/``S2:`` to
session 2 and so on. ``<...>`` in an ``S:`` line matches any text. Server lines are compared in
order; the player waits (with a deadline) for each expected line.
"""

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
from carteiro.servers import imapd
from carteiro.servers.context import ServerContext
from carteiro.store.api import AccountStore, MailStore
from carteiro.store.memory import MemoryMailStore

USER = "alice@example.test"
PASSWORD = "alice secret"
BOB = "bob@example.test"
BOB_PASSWORD = "bob-pw"
TIMEOUT = 10.0

# Every test using `server`/`start_server` runs once per backend. A test that is memory-only by
# nature (it patches MemoryAccountStore, say) says so with @pytest.mark.memory_only(reason=...);
# tests in files this harness does not own are listed here instead, by function name.
STORES = ["memory", "sqlite"]
MEMORY_ONLY: dict[str, str] = {}


async def open_store(kind: str, data_dir: Path) -> MailStore:
    """A fresh store of `kind` with the two test accounts."""
    store: MailStore
    if kind == "memory":
        store = MemoryMailStore()
    else:
        from carteiro.store.sqlite_maildir import SqliteMaildirStore

        store = SqliteMaildirStore(data_dir)
    for user in (USER, BOB):
        await store.create_account(user)
    return store


def skip_if_memory_only(request: pytest.FixtureRequest, kind: str) -> None:
    if kind == "memory":
        return
    mark = request.node.get_closest_marker("memory_only")
    name = getattr(request.node, "originalname", request.node.name)
    reason = mark.kwargs.get("reason", "memory store only") if mark else MEMORY_ONLY.get(name)
    if reason is not None:
        pytest.skip(f"memory store only: {reason}")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("imaptls")
    make_self_signed(d / "cert.pem", d / "key.pem", "mail.example.test")
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="session")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    """Argon2 hashing is slow: one directory for the whole run, its login cache kept warm
    (nothing here changes accounts)."""
    path = tmp_path_factory.mktemp("imapdir") / "directory.sqlite"
    d = Directory(path, static_domains=["example.test"])
    d.add_user(USER, PASSWORD)
    d.add_user(BOB, BOB_PASSWORD)
    d.cache_ttl = 1e9
    assert d.verify_sync(USER, PASSWORD) and d.verify_sync(BOB, BOB_PASSWORD)
    yield d
    d.close()


class _NoSpool:
    async def enqueue(self, envelope: object, source: object, dedupe_key: object = None) -> str:
        raise RuntimeError("no outbound queue in IMAP tests")


@dataclass
class IMAPTestServer:
    ctx: ServerContext
    store: MailStore
    listeners: list[Listener]
    store_dir: Path
    port: int = 0
    tls_port: int = 0
    clients: list[Client] = field(default_factory=list)

    async def account(self, name: str = USER) -> AccountStore:
        return await self.store.account(name)

    async def connect(
        self, tls: bool = False, login: bool = False, greeting: bool = True
    ) -> Client:
        if tls:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", self.tls_port, ssl=client_context(verify=False)
            )
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        client = Client(reader, writer)
        self.clients.append(client)
        if not greeting:
            return client
        first = await client.line()
        assert first.startswith("* OK"), first
        if login:
            lines = await client.cmd(f'LOGIN {USER} "{PASSWORD}"')
            assert lines[-1].split()[1] == "OK", lines
        return client

    async def deliver(self, data: bytes, mailbox: str = "INBOX", account: str = USER) -> int:
        acct = await self.store.account(account)
        return (await acct.append(mailbox, data)).uid


def make_config(**imap: object) -> Config:
    cfg = Config()
    cfg.listen.imap = "127.0.0.1:0"
    cfg.listen.imaps = "127.0.0.1:0"
    cfg.imap.allow_plaintext_auth = True
    for k, v in imap.items():
        setattr(cfg.imap, k, v)
    return cfg


@pytest.fixture(params=STORES)
async def start_server(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tls_files: tuple[Path, Path],
    directory: Directory,
) -> AsyncIterator[object]:
    kind: str = request.param
    skip_if_memory_only(request, kind)
    started: list[IMAPTestServer] = []

    async def start(
        cfg: Config | None = None, restart: IMAPTestServer | None = None
    ) -> IMAPTestServer:
        """A new server; with `restart`, that one is stopped first and the new one opens its data
        (the same store directory; the same in-memory store), as after a process restart."""
        cfg = cfg or make_config()
        cfg.data_dir = tmp_path
        if restart is None:
            store_dir = tmp_path / f"store{len(started)}"
            store = await open_store(kind, store_dir)
        else:
            store_dir = restart.store_dir
            for c in restart.clients:
                c.close()
            for item in restart.listeners:
                await item.stop(grace=1)
            started.remove(restart)
            if kind == "memory":
                store = restart.store
            else:
                await restart.store.close()
                store = await open_store(kind, store_dir)
        ctx = ServerContext(
            config=cfg,
            store=store,
            directory=directory,
            spool=_NoSpool(),  # type: ignore[arg-type]
            throttle=AuthThrottle(failure_delay=0.0, max_failures=50),
            tls=server_context(*tls_files),
        )
        lst = imapd.listeners(ctx)
        for item in lst:
            await item.start()
        srv = IMAPTestServer(ctx, store, lst, store_dir)
        for item in lst:
            assert item.bound is not None
            if item.service == "imap":
                srv.port = item.bound[1]
            else:
                srv.tls_port = item.bound[1]
        started.append(srv)
        return srv

    yield start
    for srv in started:
        for c in srv.clients:
            c.close()
        for item in srv.listeners:
            await item.stop(grace=1)
        await srv.store.close()  # the sqlite store's threads and flock end with the test


@pytest.fixture
async def server(start_server) -> IMAPTestServer:  # type: ignore[no-untyped-def]
    return await start_server()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.n = 0

    def close(self) -> None:
        self.writer.close()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, timeout: float = TIMEOUT) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        assert raw.endswith(b"\r\n"), f"not a CRLF line: {raw!r}"
        return raw[:-2].decode("utf-8", "replace")

    async def raw_response(self, tag: str) -> bytes:
        """Everything up to and including the tagged line, literals honoured."""
        out = bytearray()
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
            if not raw:
                raise EOFError(bytes(out))
            out += raw
            m = re.search(rb"\{(\d+)\}\r\n$", raw)
            if m:
                out += await asyncio.wait_for(self.reader.readexactly(int(m.group(1))), TIMEOUT)
                continue
            if raw.startswith(tag.encode() + b" "):
                return bytes(out)

    async def raw_response_of(self, line: str) -> bytes:
        """Send ``line`` (tag first) and return its raw answer (raw_response)."""
        await self.send(line.encode() + b"\r\n")
        return await self.raw_response(line.split(" ", 1)[0])

    async def cmd(self, text: str, tag: str | None = None) -> list[str]:
        """Send ``tag text``; return every line up to and including the tagged one."""
        if tag is None:
            self.n += 1
            tag = f"t{self.n}"
        await self.send(f"{tag} {text}\r\n".encode())
        raw = await self.raw_response(tag)
        return raw.decode("utf-8", "replace").split("\r\n")[:-1]

    async def starttls(self) -> None:
        await self.writer.start_tls(client_context(verify=False))

    async def eof(self) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(1), TIMEOUT) == b""
        except (ConnectionError, ssl.SSLError):
            return True


def _pattern(expected: str) -> re.Pattern[str]:
    parts = expected.split("<...>")
    return re.compile(".*".join(re.escape(p) for p in parts), re.DOTALL)


async def play(srv: IMAPTestServer, script: str, login: bool = False) -> dict[int, Client]:
    """Run a transcript. Sessions connect on first use (greeting consumed). Returns them."""
    sessions: dict[int, Client] = {}
    for lineno, raw in enumerate(script.strip("\n").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([CS])(\d*):\s?(.*)$", raw.strip(" "))
        assert m, f"transcript line {lineno}: {raw!r}"
        who, num, text = m.group(1), int(m.group(2) or 1), m.group(3)
        if num not in sessions:
            # a session's first S: line may be its greeting; otherwise it is skipped
            greet_here = who == "S" and text.startswith("* OK") and not login
            sessions[num] = await srv.connect(login=login, greeting=not greet_here)
        client = sessions[num]
        if who == "C":
            await client.send(text.encode("utf-8") + b"\r\n")
        else:
            try:
                got = await client.line()
            except TimeoutError:
                raise AssertionError(f"line {lineno}: expected {text!r}, got nothing") from None
            assert _pattern(text).fullmatch(got), (
                f"transcript line {lineno} (session {num}):\n expected {text!r}\n      got {got!r}"
            )
    return sessions

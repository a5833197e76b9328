"""A real SMTP server (smtpd listeners on free loopback ports) over the in-memory store, a real
directory, TLS and a fake outbound spool; plus a transcript player for the tests in this directory.

Transcripts read like RFC examples. `C:` sends a line (CRLF added), `B:` sends raw bytes written
with Python escapes (nothing added), `S:` expects one reply line (`*` matches any text), `TLS`
starts TLS on the client side, `CLOSED` expects the server to close the connection.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from carteiro.config import Config, loads
from carteiro.directory.accounts import Directory
from carteiro.directory.throttle import AuthThrottle
from carteiro.mailauth.inbound import Checker
from carteiro.net.listener import Listener
from carteiro.net.tls import client_context, make_self_signed, server_context
from carteiro.queue.api import Envelope
from carteiro.servers import smtpd
from carteiro.servers.context import ServerContext
from carteiro.store.api import MailStore, MessageSource
from carteiro.store.memory import MemoryMailStore

ALICE = "alice@example.test"
ALICE_PW = "alice secret"
BOB = "bob@example.test"
BOB_PW = "bob-pw"
CAROL = "carol@example.test"  # delivery = mbox
TIMEOUT = 10.0


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("smtp-tls")
    make_self_signed(d / "cert.pem", d / "key.pem", "mail.example.test")
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="session")
def directory_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Argon2 hashing is slow: make the accounts once, copy the database per test."""
    path = tmp_path_factory.mktemp("smtp-dir") / "directory.sqlite"
    d = Directory(path, static_domains=["example.test"])
    d.add_domain("other.test")
    d.add_user(ALICE, ALICE_PW)
    d.add_user(BOB, BOB_PW)
    d.add_user(CAROL, "carol-pw", delivery="mbox")
    d.add_alias("sales@example.test", ALICE)
    d.add_alias("sales@example.test", BOB)
    d.add_alias("team@example.test", ALICE)
    d.add_alias("team@example.test", "friend@remote.test")
    d.add_alias("@other.test", BOB)
    d.add_alias("loop1@example.test", "loop2@example.test")
    d.add_alias("loop2@example.test", "loop1@example.test")
    d.close()
    return path


class FakeSpool:
    """The outbound queue's spool, in memory: records what it was given."""

    def __init__(self) -> None:
        self.queued: list[tuple[Envelope, bytes]] = []
        self.fail: Exception | None = None
        self.keys: dict[str, str] = {}

    async def enqueue(
        self, envelope: Envelope, source: MessageSource, dedupe_key: str | None = None
    ) -> str:
        if self.fail is not None:
            raise self.fail
        if dedupe_key is not None and dedupe_key in self.keys:
            return self.keys[dedupe_key]  # the spool's contract: a key is queued once
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        self.queued.append((envelope, data))
        queue_id = f"Q{len(self.queued)}"
        if dedupe_key is not None:
            self.keys[dedupe_key] = queue_id
        return queue_id


@dataclass
class Env:
    ctx: ServerContext
    store: MailStore
    spool: FakeSpool
    ports: dict[str, int] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)

    async def connect(self, role: str = "smtp") -> Client:
        tls = client_context(verify=False) if role == "submissions" else None
        r, w = await asyncio.open_connection("127.0.0.1", self.ports[role], ssl=tls)
        c = Client(r, w)
        self.clients.append(c)
        return c

    async def inbox(self, account: str, mailbox: str = "INBOX") -> list[bytes]:
        acct = await self.store.account(account)
        info = await acct.get_mailbox(mailbox)
        return [await acct.read_message(info.id, m.uid) for m in await acct.list_messages(info.id)]

    def mbox(self, account: str) -> bytes:
        p = self.ctx.config.data_dir / "mbox" / account
        return p.read_bytes() if p.exists() else b""

    async def play(self, transcript: str, role: str = "smtp") -> Client:
        c = await self.connect(role)
        await c.play(transcript)
        return c


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seen: list[str] = []

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        if not raw:
            raise EOFError("server closed the connection")
        assert raw.endswith(b"\r\n"), f"not a CRLF line: {raw!r}"
        text = raw[:-2].decode("utf-8", "replace")
        self.seen.append(text)
        return text

    async def reply(self) -> list[str]:
        lines = [await self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(await self.line())
        return lines

    async def cmd(self, line: str) -> list[str]:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def starttls(self) -> None:
        await self.writer.start_tls(client_context(verify=False))

    async def closed(self) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(1), TIMEOUT)
        except (ConnectionError, ssl.SSLError):
            return True
        return data == b""

    async def play(self, transcript: str) -> None:
        for n, raw in enumerate(textwrap.dedent(transcript).strip("\n").splitlines(), 1):
            line = raw.strip("\n").lstrip(" ")  # indentation is layout; content follows "C: "
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("C: ") or line == "C:":
                await self.send(line[3:].encode() + b"\r\n")
            elif line.startswith("B: "):
                await self.send(line[3:].encode().decode("unicode_escape").encode("latin-1"))
            elif line.startswith("S: "):
                want = line[3:]
                got = await self.line()
                assert match(got, want), (
                    f"transcript line {n}: expected {want!r}, got {got!r}\nseen: {self.seen}"
                )
            elif line == "TLS":
                await self.starttls()
            elif line == "CLOSED":
                assert await self.closed(), f"transcript line {n}: connection still open"
            else:
                raise ValueError(f"transcript line {n}: cannot parse {line!r}")

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass


def match(got: str, want: str) -> bool:
    """`want` with `*` matching any text; everything else literal."""
    pattern = ".*".join(re.escape(part) for part in want.split("*"))
    return re.fullmatch(pattern, got, re.DOTALL) is not None


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(
    tmp_path: Path, tls_files: tuple[Path, Path], directory_file: Path
) -> AsyncIterator[MakeEnv]:
    envs: list[Env] = []

    async def make(
        config: str = "",
        store: MailStore | None = None,
        mailauth: Checker | None = None,
        **throttle: Any,
    ) -> Env:
        data = tmp_path / f"data{len(envs)}"
        data.mkdir()
        shutil.copy(directory_file, data / "directory.sqlite")
        cfg: Config = loads(
            'hostname = "mail.example.test"\ndomains = ["example.test"]\n'
            + '[listen]\nsmtp = "127.0.0.1:0"\nsubmission = "127.0.0.1:0"\n'
            + 'submissions = "127.0.0.1:0"\n'
            + textwrap.dedent(config),
            data_dir=data,
        )
        st = store or MemoryMailStore()
        for acct in (ALICE, BOB, CAROL):
            await st.create_account(acct)
        directory = Directory(data / "directory.sqlite", static_domains=cfg.domains)
        spool = FakeSpool()
        ctx = ServerContext(
            config=cfg,
            store=st,
            directory=directory,
            spool=spool,
            throttle=AuthThrottle(**({"failure_delay": 0.0} | throttle)),
            tls=server_context(*tls_files),
            mailauth=mailauth,
        )
        env = Env(ctx, st, spool)
        env.listeners = smtpd.listeners(ctx)
        for lst in env.listeners:
            await lst.start()
            assert lst.bound is not None
            env.ports[lst.service] = lst.bound[1]
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.ctx.shutdown.set()
        for c in env.clients:
            await c.close()
        for lst in env.listeners:
            await lst.stop(grace=1)
        await env.store.close()
        env.ctx.directory.close()


@pytest.fixture
async def env(make_env: MakeEnv) -> Env:
    return await make_env()

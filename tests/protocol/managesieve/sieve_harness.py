"""A real ManageSieve server (managesieved's listener on a free loopback port) over a temp data
dir, a real directory and TLS, plus a line client and a C:/S: transcript player."""

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
from carteiro.servers import managesieved
from carteiro.servers.context import ServerContext

USER = "alice@example.test"
PASSWORD = "alice secret"
TIMEOUT = 10.0


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("sieve-tls")
    make_self_signed(d / "cert.pem", d / "key.pem", "mail.example.test")
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="session")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    d = Directory(tmp_path_factory.mktemp("sieve-dir") / "directory.sqlite", ["example.test"])
    d.add_user(USER, PASSWORD)
    d.add_user("bob@example.test", "bob-pw")
    yield d
    d.close()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert raw.endswith(b"\r\n"), f"not a CRLF line: {raw!r}"
        return raw[:-2].decode("utf-8", "replace")

    async def until_ok(self) -> list[str]:
        out = []
        while not (line := await self.line()).startswith(("OK", "NO", "BYE")):
            out.append(line)
        out.append(line)
        return out

    async def starttls(self) -> None:
        await self.writer.start_tls(client_context(verify=False))

    async def eof(self) -> bool:
        rest = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        assert rest == b"", f"unexpected data before close: {rest!r}"
        return True

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
    listeners: list[Listener]
    cert: Path
    clients: list[Client] = field(default_factory=list)

    @property
    def port(self) -> int:
        bound = self.listeners[0].bound
        assert bound is not None
        return bound[1]

    async def connect(self) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        c = Client(reader, writer)
        self.clients.append(c)
        return c


@pytest.fixture
def config(tmp_path: Path) -> Config:
    cfg = Config(hostname="mail.example.test", domains=["example.test"])
    cfg.data_dir = tmp_path / "data"
    cfg.listen.sieve = "127.0.0.1:0"
    cfg.sieve.max_scripts = 3
    cfg.sieve.max_script_size = 1000
    return cfg


@pytest.fixture
async def server(
    config: Config, tls_files: tuple[Path, Path], directory: Directory
) -> AsyncIterator[Harness]:
    ctx = ServerContext(
        config=config,
        store=None,  # type: ignore[arg-type]  # ManageSieve touches scripts, not mail
        directory=directory,
        spool=None,  # type: ignore[arg-type]
        throttle=AuthThrottle(failure_delay=0.0, max_failures=1000),
        tls=server_context(*tls_files),
    )
    listeners = managesieved.listeners(ctx)
    for lst in listeners:
        await lst.start()
    h = Harness(ctx, listeners, tls_files[0])
    try:
        yield h
    finally:
        for c in h.clients:
            await c.close()
        ctx.shutdown.set()
        await asyncio.gather(*(lst.stop(grace=2) for lst in listeners))


def _matches(expected: str, got: str) -> bool:
    if "{...}" not in expected:
        return expected == got
    pattern = ".*".join(re.escape(p) for p in expected.split("{...}"))
    return re.fullmatch(pattern, got) is not None


async def play(client: Client, script: str) -> None:
    """Run a transcript as in RFC 5804's examples. Consecutive `C:` lines go in one write; each
    `S:` line must be the server's next line (`{...}` matches any text). `-- starttls` upgrades,
    `-- eof` expects the server to close. `#` starts a comment."""
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
        elif line.strip() and not line.lstrip().startswith("#"):
            raise ValueError(f"transcript line {n}: cannot read {line!r}")
    if pending:
        await client.send(b"".join(pending))

"""COMPRESS=DEFLATE (RFC 4978) with a raw client (pipelined compressed input right after the
command, IDLE, a broken stream) and with Python's imaplib behind a small deflate wrapper. mbsync
(isync), which turns it on by itself, is in tests/e2e/test_imap_real_clients.py."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import asyncio
import imaplib
import zlib

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    TIMEOUT,
    USER,
    directory,
    server,
    start_server,
    tls_files,
)

from carteiro.servers.imap.compress import INFLATE_CHUNK, Deflate

MSG = b"From: a@example.test\r\nSubject: squeeze\r\n\r\n" + b"all work and no play " * 500 + b"\r\n"


class Stream:
    """A client's two deflate streams over an asyncio connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.out = zlib.compressobj(9, zlib.DEFLATED, -15)
        self.inn = zlib.decompressobj(-15)
        self.buf = b""

    def pack(self, data: bytes) -> bytes:
        return self.out.compress(data) + self.out.flush(zlib.Z_SYNC_FLUSH)

    async def send(self, data: bytes) -> None:
        self.writer.write(self.pack(data))
        await self.writer.drain()

    async def until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += self.inn.decompress(chunk)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out


async def test_compress_deflate_session(server):
    await server.deliver(MSG)
    c = await server.connect(login=True)
    assert "COMPRESS=DEFLATE" in " ".join(await c.cmd("CAPABILITY"))
    assert (await c.cmd("COMPRESS FOO"))[-1].split()[1] == "BAD"
    z = Stream(c.reader, c.writer)
    # the compressed stream starts right after the command's CRLF: pipeline into it
    c.writer.write(b"a1 COMPRESS DEFLATE\r\n" + z.pack(b"a2 SELECT INBOX\r\n"))
    assert await c.line() == "a1 OK DEFLATE active"  # the last uncompressed line
    out = await z.until(b"a2 OK [READ-WRITE] Select completed.\r\n")
    assert b"* 1 EXISTS\r\n" in out
    await z.send(b"a3 FETCH 1 (BODY.PEEK[])\r\n")
    out = await z.until(b"a3 OK Fetch completed.\r\n")
    assert MSG in out
    await z.send(b"a4 COMPRESS DEFLATE\r\n")
    assert await z.until(b"\r\n") == b"a4 NO [COMPRESSIONACTIVE] Compression is already active\r\n"
    await z.send(b"a5 IDLE\r\n")
    assert await z.until(b"\r\n") == b"+ idling\r\n"
    await server.deliver(MSG)
    assert await z.until(b"\r\n") == b"* 2 EXISTS\r\n"
    await z.send(b"DONE\r\na6 LOGOUT\r\n")
    out = await z.until(b"a6 OK Logout completed.\r\n")
    assert b"a5 OK Idle completed.\r\n" in out and b"* BYE" in out


async def test_broken_compressed_stream_ends_the_session(server):
    c = await server.connect(login=True)
    z = Stream(c.reader, c.writer)
    await c.send(b"a1 COMPRESS DEFLATE\r\n")
    assert await c.line() == "a1 OK DEFLATE active"
    c.writer.write(b"\xff\xfe not deflate at all")
    out = await z.until(b"\r\n")
    assert out == b"* BYE Invalid compressed data\r\n"
    assert await c.eof()


def test_inflate_is_bounded_per_read():
    """A small input that inflates to 64 MiB comes out a bounded chunk at a time."""
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(b"a" * (64 << 20)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    assert len(data) < 100_000
    d = Deflate()
    first = d.decompress(data)
    assert len(first) == INFLATE_CHUNK and d.pending
    total = len(first)
    while d.pending:
        total += len(d.decompress(b""))
    assert total == 64 << 20


# imaplib checks a command's state against its own table, which predates RFC 4978
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class CompressedIMAP4(imaplib.IMAP4):
    """imaplib has no COMPRESS: after its OK, deflate what goes out and inflate what comes in."""

    _z: tuple[zlib._Compress, zlib._Decompress] | None = None
    _pending = b""

    def compress(self) -> str:
        typ, _ = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            self._z = (zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15))
        return typ

    def send(self, data: bytes) -> None:
        if self._z is not None:
            data = self._z[0].compress(data) + self._z[0].flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise self.abort("socket closed")
        assert self._z is not None
        self._pending += self._z[1].decompress(chunk)

    def read(self, size: int) -> bytes:
        if self._z is None:
            return super().read(size)
        while len(self._pending) < size:
            self._more()
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def readline(self) -> bytes:
        if self._z is None:
            return super().readline()
        while b"\n" not in self._pending:
            self._more()
        i = self._pending.index(b"\n") + 1
        out, self._pending = self._pending[:i], self._pending[i:]
        return out


def _imaplib_compressed(port: int) -> dict[str, object]:
    m = CompressedIMAP4("127.0.0.1", port)
    m.login(USER, PASSWORD)
    out: dict[str, object] = {"compress": m.compress()}
    out["append"] = m.append("INBOX", None, None, MSG)
    out["select"] = m.select("INBOX")
    out["fetch"] = m.fetch("1", "(BODY.PEEK[] RFC822.SIZE)")
    out["search"] = m.search(None, "BODY", "play")
    out["logout"] = m.logout()
    return out


async def test_imaplib_with_a_deflate_wrapper(server):
    out = await asyncio.wait_for(asyncio.to_thread(_imaplib_compressed, server.port), 20)
    assert out["compress"] == "OK"
    assert out["append"][0] == "OK"
    assert out["select"] == ("OK", [b"1"])
    typ, data = out["fetch"]
    assert typ == "OK" and data[0][1] == MSG
    assert out["search"] == ("OK", [b"1"])
    assert out["logout"][0] == "BYE"

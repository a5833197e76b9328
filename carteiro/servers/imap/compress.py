"""COMPRESS=DEFLATE (RFC 4978): the command, and the raw deflate stream (RFC 1951) it turns on.

After the tagged OK both directions are compressed: the server's output from the octet after that
OK's CRLF, the client's from the octet after its command's CRLF (so what it pipelined is already
compressed). Each flush ends in a sync flush, so the client can decode every response at once.
Inflating is bounded per read (a tiny input cannot expand into unbounded memory); a broken stream
ends the connection.
"""

from __future__ import annotations

import zlib

from carteiro.proto.imap import commands as c
from carteiro.servers.imap.session import (
    ANSWERED,
    Result,
    Session,
    bad,
    command,
    no,
    ok,
)

# Output of one inflate call: the receiver's own limits apply to it, as to plain input.
INFLATE_CHUNK = 256 * 1024
LEVEL = 6  # as Dovecot's imap_compress_deflate_level


class Deflate:
    """One connection's deflate streams; never does I/O."""

    __slots__ = ("_in", "_out")

    def __init__(self, level: int = LEVEL) -> None:
        self._out = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._in = zlib.decompressobj(-15)

    def compress(self, data: bytes) -> bytes:
        """`data` compressed and sync-flushed: the peer can decode all of it now."""
        return self._out.compress(data) + self._out.flush(zlib.Z_SYNC_FLUSH)

    @property
    def pending(self) -> bool:
        """Input already received whose output did not fit the last call."""
        return bool(self._in.unconsumed_tail)

    def decompress(self, data: bytes) -> bytes:
        """Up to INFLATE_CHUNK octets of what `data` (after any pending input) inflates to.
        Raises zlib.error for a broken stream, EOFError for data after its end."""
        tail = self._in.unconsumed_tail
        out = self._in.decompress(tail + data if tail else data, INFLATE_CHUNK)
        if self._in.eof:
            raise EOFError("deflate stream ended")  # RFC 4978 has no end: the client broke it
        return out


@command(c.Compress)
async def compress(s: Session, tag: str, req: c.Compress) -> Result:
    if req.mechanism != "DEFLATE":
        return bad("Unknown compression mechanism")  # RFC 4978 3
    if s.deflate is not None:
        return no("Compression is already active", "COMPRESSIONACTIVE")
    s.tagged(tag, ok("DEFLATE active"))
    await s.flush()  # the last octets sent uncompressed
    s.deflate = Deflate()
    pipelined = s.rx.take_unread()
    if pipelined:
        s.rx.feed(s.inflate(pipelined))  # (more of it, if any, comes with the next read)
    return ANSWERED

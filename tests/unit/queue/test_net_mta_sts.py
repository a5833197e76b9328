"""MTA-STS's HTTPS fetch (RFC 8461 3.3) against a local TLS server: only a 200 text/plain body
from a server whose certificate verifies for mta-sts.<domain> counts."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from carteiro.net.mta_sts import PATH, fetch_policy
from carteiro.net.tls import make_self_signed, server_context
from carteiro.queue.routing import AddressAnswer

POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx.b.test\r\nmax_age: 86400\r\n"


def response(body: bytes, status: str = "200 OK", ctype: str = "text/plain") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


class Web:
    def __init__(self) -> None:
        self.reply: Callable[[bytes], bytes] = lambda _req: response(POLICY.encode())
        self.requests: list[bytes] = []
        self.port = 0
        self.stall = False


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[tuple[Web, str]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key, "mta-sts.b.test")
    ctx = server_context(cert, key)
    w = Web()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = await reader.readuntil(b"\r\n\r\n")
            w.requests.append(req)
            if w.stall:
                await asyncio.sleep(10)
            writer.write(w.reply(req))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    w.port = server.sockets[0].getsockname()[1]
    async with server:
        yield w, str(cert)
        server.close()


async def local(host: str) -> AddressAnswer:
    return (
        AddressAnswer("ok", ("127.0.0.1",))
        if host == "mta-sts.b.test"
        else AddressAnswer("nxdomain")
    )


async def test_fetches_the_policy_with_sni_and_host(web: tuple[Web, str]) -> None:
    w, ca = web
    assert await fetch_policy("b.test", local, w.port, ca) == POLICY
    req = w.requests[0].decode()
    assert req.startswith(f"GET {PATH} HTTP/1.1\r\n")
    assert "host: mta-sts.b.test" in req.lower()


async def test_chunked_body(web: tuple[Web, str]) -> None:
    w, ca = web
    body = POLICY.encode()
    w.reply = lambda _r: (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + f"{len(body[:10]):x}\r\n".encode()
        + body[:10]
        + b"\r\n"
        + f"{len(body[10:]):x}\r\n".encode()
        + body[10:]
        + b"\r\n0\r\n\r\n"
    )
    assert await fetch_policy("b.test", local, w.port, ca) == POLICY


async def test_redirect_is_not_followed(web: tuple[Web, str]) -> None:
    w, ca = web
    w.reply = lambda _r: (
        b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.test/\r\nContent-Length: 0\r\n\r\n"
    )
    with pytest.raises(OSError, match="HTTP 301"):
        await fetch_policy("b.test", local, w.port, ca)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (response(b"<html></html>", ctype="text/html"), "not text/plain"),
        (response(b"x" * (64 * 1024 + 1)), "over 65536"),
        (response(b"\xff\xfe bad"), "utf-8"),
        (b"SMTP/1.0 nonsense\r\n\r\n", "bad HTTP"),
        (b"HTTP/1.1 200 OK\r\nX-Junk: " + b"a" * 100_000 + b"\r\n\r\n", "bad HTTP"),
    ],
)
async def test_bodies_that_are_refused(web: tuple[Web, str], reply: bytes, error: str) -> None:
    w, ca = web
    w.reply = lambda _r: reply
    with pytest.raises(ValueError, match=error):
        await fetch_policy("b.test", local, w.port, ca)


async def test_certificate_must_verify(web: tuple[Web, str], tmp_path: Path) -> None:
    w, _ca = web
    with pytest.raises(ssl.SSLCertVerificationError):  # not trusted: no CA given
        await fetch_policy("b.test", local, w.port, "")
    # trusted, but for another name: mta-sts.c.test resolves to the same server
    other = tmp_path / "other.pem"
    make_self_signed(other, tmp_path / "other.key", "mta-sts.c.test")

    async def anywhere(host: str) -> AddressAnswer:
        return AddressAnswer("ok", ("127.0.0.1",))

    with pytest.raises(ssl.SSLCertVerificationError):
        await fetch_policy("c.test", anywhere, w.port, str(other))


async def test_no_address_and_timeout(web: tuple[Web, str]) -> None:
    w, ca = web
    with pytest.raises(OSError, match="no address"):
        await fetch_policy("nowhere.test", local, w.port, ca)
    w.stall = True
    with pytest.raises(TimeoutError):
        await fetch_policy("b.test", local, w.port, ca, timeout=0.3)

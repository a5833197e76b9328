"""One HTTPS request and its response, for the few places the mail system speaks HTTP as a client:
MTA-STS policy fetches (RFC 8461 3.3) and TLS reports posted to a domain (RFC 8460 5.3.2).

HTTP is parsed by h11 (sans-IO) over an asyncio TLS stream; the certificate must verify for the
host name (SNI sent); redirects are never followed (a 3xx is the caller's failure); the response
body is capped and the whole exchange bounded by a timeout. The host is resolved by the caller's
resolver (the queue's DNS), and its addresses are tried in turn.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11

from carteiro.queue.routing import AddressAnswer

READ_SIZE = 16384
MAX_ADDRESSES = 4  # addresses of the host tried in turn


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]  # names lowercased; a repeated field: its last value
    body: bytes

    def media_type(self) -> bytes:
        return self.headers.get(b"content-type", b"").split(b";")[0].strip().lower()


async def request(
    host: str,
    addresses: Callable[[str], Awaitable[AddressAnswer]],
    ctx: ssl.SSLContext,
    method: str,
    target: str,
    *,
    port: int = 443,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    max_body: int = 65536,
    timeout: float = 60.0,
) -> Response:
    """`method target` to https://host:port, each address of `host` in turn until one answers.
    Raises OSError (no address, network, TLS, the connection closed early) or ValueError (a bad
    HTTP response, or a body over `max_body` octets)."""
    ans = await addresses(host)
    if ans.status != "ok" or not ans.addresses:
        raise OSError(f"{host} has no address ({ans.error or ans.status})")
    fields = [("Host", host if port == 443 else f"{host}:{port}"), ("Connection", "close")]
    fields += headers or []
    if method != "GET" or body:
        fields.append(("Content-Length", str(len(body))))
    last: Exception = OSError(f"{host}: no address tried")
    async with asyncio.timeout(timeout):
        for address in ans.addresses[:MAX_ADDRESSES]:
            try:
                return await _exchange(
                    address, port, host, ctx, method, target, fields, body, max_body
                )
            except OSError as e:  # (ssl.SSLError too) the next address may do
                last = e
    raise last


async def _exchange(
    address: str,
    port: int,
    host: str,
    ctx: ssl.SSLContext,
    method: str,
    target: str,
    fields: list[tuple[str, str]],
    body: bytes,
    max_body: int,
) -> Response:
    reader, writer = await asyncio.open_connection(address, port, ssl=ctx, server_hostname=host)
    url = f"https://{host}{'' if port == 443 else f':{port}'}{target}"
    try:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=READ_SIZE)
        out = conn.send(h11.Request(method=method, target=target, headers=fields))
        if body:
            out += conn.send(h11.Data(data=body)) or b""
        writer.write(out + (conn.send(h11.EndOfMessage()) or b""))
        await writer.drain()
        status = 0
        got: dict[bytes, bytes] = {}
        data = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                raise ValueError(f"{url}: bad HTTP response: {e}") from None
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(READ_SIZE))
            elif isinstance(event, h11.Response):
                status = event.status_code
                got = {bytes(k).lower(): bytes(v) for k, v in event.headers}
            elif isinstance(event, h11.Data):
                data += event.data
                if len(data) > max_body:
                    raise ValueError(f"{url}: response over {max_body} octets")
            elif isinstance(event, h11.EndOfMessage):
                return Response(status, got, bytes(data))
            elif isinstance(event, h11.ConnectionClosed):
                raise OSError(f"{url}: closed before the end of the response")
    finally:
        writer.close()

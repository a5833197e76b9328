"""MTA-STS's network half (RFC 8461 3.3): the `_mta-sts` TXT lookup and the HTTPS fetch of a
recipient domain's policy, for carteiro/queue/mta_sts.py.

The fetch goes to `https://mta-sts.<domain>/.well-known/mta-sts.txt`, resolved through the queue's
own resolver (the same DNS as the MX lookup), with a certificate that must verify for that name
(SNI sent). Only a 200 with a text/plain body counts: redirects are not followed and nothing is
cached by HTTP's rules (3.3). The body is capped at 64 KB and the whole fetch at a timeout. HTTP is
parsed by h11 (sans-IO), over an asyncio TLS stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import h11

from carteiro.mailauth.lookup import Answer
from carteiro.net.tls import client_context
from carteiro.queue.mta_sts import MAX_POLICY_OCTETS
from carteiro.queue.routing import AddressAnswer

PATH = "/.well-known/mta-sts.txt"
FETCH_TIMEOUT = 60.0  # seconds for the whole fetch (RFC 8461 3.3 suggests a minute)
MAX_ADDRESSES = 4  # addresses of mta-sts.<domain> tried in turn
READ_SIZE = 16384


async def fetch_policy(
    domain: str,
    addresses: Callable[[str], Awaitable[AddressAnswer]],
    port: int = 443,
    cafile: str = "",
    timeout: float = FETCH_TIMEOUT,
) -> str:
    """The policy text of `domain` (A-label form). Raises OSError (network, TLS, HTTP status)
    or ValueError (not text/plain, too large, not UTF-8, bad HTTP)."""
    host = f"mta-sts.{domain}"
    ans = await addresses(host)
    if ans.status != "ok" or not ans.addresses:
        raise OSError(f"{host} has no address ({ans.error or ans.status})")
    ctx = client_context(verify=True, cafile=cafile or None)
    last: Exception = OSError(f"{host}: no address tried")
    async with asyncio.timeout(timeout):
        for address in ans.addresses[:MAX_ADDRESSES]:
            try:
                return await _get(address, port, host, ctx)
            except OSError as e:  # (ssl.SSLError too) the next address may do
                last = e
    raise last


async def _get(address: str, port: int, host: str, ctx: object) -> str:
    reader, writer = await asyncio.open_connection(
        address,
        port,
        ssl=ctx,  # type: ignore[arg-type]
        server_hostname=host,
    )
    try:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=READ_SIZE)
        request = h11.Request(
            method="GET",
            target=PATH,
            headers=[
                ("Host", host),
                ("User-Agent", "carteiro (MTA-STS)"),
                ("Accept", "text/plain"),
                ("Connection", "close"),
            ],
        )
        writer.write(conn.send(request) + (conn.send(h11.EndOfMessage()) or b""))
        await writer.drain()
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                raise ValueError(f"https://{host}{PATH}: bad HTTP response: {e}") from None
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(READ_SIZE))
            elif isinstance(event, h11.Response):
                if event.status_code != 200:  # 3xx included: never followed (RFC 8461 3.3)
                    raise OSError(f"https://{host}{PATH}: HTTP {event.status_code}")
                media = dict(event.headers).get(b"content-type", b"")
                if media.split(b";")[0].strip().lower() != b"text/plain":
                    raise ValueError(
                        f"https://{host}{PATH}: Content-Type {media[:60].decode('latin-1')!r},"
                        " not text/plain"
                    )
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_POLICY_OCTETS:
                    raise ValueError(f"https://{host}{PATH}: over {MAX_POLICY_OCTETS} octets")
            elif isinstance(event, h11.EndOfMessage):
                return body.decode("utf-8")  # (UnicodeDecodeError is a ValueError)
            elif isinstance(event, h11.ConnectionClosed):
                raise OSError(f"https://{host}{PATH}: closed before the end of the response")
    finally:
        writer.close()


def txt_lookup(
    lookup: Callable[[str, str], Awaitable[Answer]],
) -> Callable[[str], Awaitable[tuple[str, list[str]]]]:
    """queue.mta_sts's TXT lookup from a DNSResolver's `lookup`: each record's strings joined."""

    async def txt(name: str) -> tuple[str, list[str]]:
        ans = await lookup(name, "TXT")
        records = [
            b"".join(v).decode("ascii", "replace")  # type: ignore[arg-type]
            for v in ans.values
            if isinstance(v, tuple)
        ]
        return ans.status, records

    return txt

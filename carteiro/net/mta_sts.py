"""MTA-STS's network half (RFC 8461 3.3): the `_mta-sts` TXT lookup and the HTTPS fetch of a
recipient domain's policy, for carteiro/queue/mta_sts.py.

The fetch goes to `https://mta-sts.<domain>/.well-known/mta-sts.txt`, resolved through the queue's
own resolver (the same DNS as the MX lookup), with a certificate that must verify for that name
(SNI sent). Only a 200 with a text/plain body counts: redirects are not followed and nothing is
cached by HTTP's rules (3.3). The body is capped at 64 KB and the whole fetch at a timeout
(net/https.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from carteiro.mailauth.lookup import Answer
from carteiro.net import https
from carteiro.net.tls import client_context
from carteiro.queue.mta_sts import MAX_POLICY_OCTETS
from carteiro.queue.routing import AddressAnswer

PATH = "/.well-known/mta-sts.txt"
FETCH_TIMEOUT = 60.0  # seconds for the whole fetch (RFC 8461 3.3 suggests a minute)


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
    url = f"https://{host}{PATH}"
    resp = await https.request(
        host,
        addresses,
        client_context(verify=True, cafile=cafile or None),
        "GET",
        PATH,
        port=port,
        headers=[("User-Agent", "carteiro (MTA-STS)"), ("Accept", "text/plain")],
        max_body=MAX_POLICY_OCTETS,
        timeout=timeout,
    )
    if resp.status != 200:  # 3xx included: never followed (RFC 8461 3.3)
        raise OSError(f"{url}: HTTP {resp.status}")
    if resp.media_type() != b"text/plain":
        media = resp.headers.get(b"content-type", b"")
        raise ValueError(f"{url}: Content-Type {media[:60].decode('latin-1')!r}, not text/plain")
    return resp.body.decode("utf-8")  # (UnicodeDecodeError is a ValueError)


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

"""DNS blocklists (RFC 5782): is the client address listed in a configured zone?

Only an answer in 127.0.0.0/8 means listed (RFC 5782 2.1; other answers are the list's errors).
A zone that cannot be asked now counts as not listed, as Postfix does: a list's outage must not
stop mail. No zones are configured by default.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from carteiro.mailauth.lookup import Resolver


@dataclass(frozen=True, slots=True)
class Listing:
    zone: str
    answer: str
    reason: str = ""


def query_name(ip: str, zone: str) -> str:
    """RFC 5782 2.1 (IPv4: reversed octets) and 2.4 (IPv6: reversed nibbles)."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    rev = addr.reverse_pointer.rsplit(".", 2)[0]  # without in-addr.arpa / ip6.arpa
    return f"{rev}.{zone.strip('.')}"


async def check(resolver: Resolver, ip: str, zones: Sequence[str]) -> Listing | None:
    """The first zone (in configured order) that lists `ip`, with its TXT reason."""
    if not zones:
        return None
    try:
        names = [query_name(ip, z) for z in zones]
    except ValueError:
        return None
    answers = await asyncio.gather(*(resolver.lookup(n, "A") for n in names))
    for zone, name, answer in zip(zones, names, answers, strict=True):
        listed = [
            str(v) for v in answer.values if answer.status == "ok" and str(v).startswith("127.")
        ]
        if listed:
            txt = await resolver.lookup(name, "TXT")
            reason = b" ".join(
                b"".join(x for x in v if isinstance(x, bytes))
                for v in txt.values
                if isinstance(v, tuple)
            ).decode("ascii", "replace")[:200]
            return Listing(zone, listed[0], reason)
    return None

"""iprev (RFC 8601 3): the client address's reverse DNS, confirmed forward.

pass: a PTR name resolves back to the address; fail: PTR names exist but none resolves back (or
they do not resolve); permerror: no PTR at all; temperror: a lookup failed for now.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import Literal

from carteiro.mailauth.lookup import Resolver

Result = Literal["pass", "fail", "temperror", "permerror"]
MAX_NAMES = 10  # as RFC 7208 4.6.4 limits PTR names for SPF


@dataclass(frozen=True, slots=True)
class IPRevResult:
    result: Result
    ip: str
    name: str = ""  # the confirmed name (pass) or the first PTR name
    reason: str = ""


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


async def check(resolver: Resolver, ip: str) -> IPRevResult:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return IPRevResult("permerror", ip, reason="not an IP address")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    ptr = await resolver.lookup(addr.reverse_pointer, "PTR")
    if ptr.temporary:
        return IPRevResult("temperror", ip, reason=ptr.error)
    names = [str(v).lower() for v in ptr.values][:MAX_NAMES]
    if not names:
        return IPRevResult("permerror", ip, reason="no PTR record")
    rdtype = "AAAA" if addr.version == 6 else "A"
    answers = await asyncio.gather(*(resolver.lookup(n, rdtype) for n in names))
    temp = False
    for name, answer in zip(names, answers, strict=True):
        if answer.temporary:
            temp = True
            continue
        for value in answer.values:
            try:
                if ipaddress.ip_address(str(value)) == addr:
                    return IPRevResult("pass", ip, name)
            except ValueError:
                continue
    if temp:
        return IPRevResult("temperror", ip, names[0], "forward lookup failed")
    return IPRevResult("fail", ip, names[0], "the PTR name does not resolve back")

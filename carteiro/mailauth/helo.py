"""The HELO/EHLO name (RFC 5321 4.1.1.1): its syntax, and whether it names the client.

RFC 5321 4.1.4 lets a server check that the name corresponds to the client's address but not
refuse mail because it does not; receivers act on it anyway as local policy (Postfix's
reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, reject_unknown_helo_hostname;
Stalwart's non-FQDN check). So the result is always recorded and refuses only when configured
(`[mailauth] require_helo`, inbound.Checker.helo_refusal).

Results (recorded as `x-helo`, the kind in policy.helo):
  pass       "literal" (an address literal of the client's own address) or "confirmed" (an
             A/AAAA record of the name is the client's address)
  fail       "ours" (this server's own host name or one of its domains, from a client the name
             does not resolve to: a forgery, the kind Postfix admins refuse with
             check_helo_access), "literal-mismatch" (a literal of another address), "mismatch" (the name exists,
             with A/AAAA or MX records, none of them the client's address), "unknown" (no
             A, AAAA or MX record: Postfix's "Host not found")
  permerror  "invalid" (not a host name nor an address literal), "non-fqdn" (one label)
  temperror  "dns" (a lookup failed for now: never a verdict on missing evidence)
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from carteiro.mailauth.lookup import Resolver

Result = Literal["pass", "fail", "permerror", "temperror"]
Kind = Literal[
    "literal",
    "confirmed",
    "ours",
    "literal-mismatch",
    "mismatch",
    "unknown",
    "invalid",
    "non-fqdn",
    "dns",
]
Syntax = Literal["fqdn", "non-fqdn", "literal", "invalid"]

_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class HeloResult:
    result: Result
    kind: Kind
    name: str  # as the client sent it
    reason: str = ""


def _ascii_name(name: str) -> str | None:
    """The name in ASCII (A-labels for a U-label name, RFC 6531), lowercased, without the final
    dot; None when it cannot be one."""
    name = name[:-1] if name.endswith(".") else name
    if not name or len(name) > 253:
        return None
    if name.isascii():
        return name.lower()
    try:
        return name.encode("idna").decode("ascii").lower()
    except (UnicodeError, ValueError):
        return None


def _literal_address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    inner = name[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return ipaddress.IPv6Address(inner[5:])
        return ipaddress.IPv4Address(inner)
    except ValueError:
        return None


def syntax(name: str) -> Syntax:
    """A host name of two labels or more ("fqdn"), of one ("non-fqdn"), an IPv4/IPv6 address
    literal ("literal"), or none of these ("invalid": bad characters, a bare address, a numeric
    top-level label, a general address literal, which names no address of the client)."""
    if name.startswith("[") and name.endswith("]"):
        return "literal" if _literal_address(name) is not None else "invalid"
    ascii_name = _ascii_name(name)
    if ascii_name is None:
        return "invalid"
    labels = ascii_name.split(".")
    for label in labels:
        if not label or len(label) > 63 or not set(label) <= _LDH:
            return "invalid"
        if label[0] == "-" or label[-1] == "-":
            return "invalid"
    if labels[-1].isdigit():
        return "invalid"  # "192.0.2.1": an address is written as a literal, [192.0.2.1]
    return "fqdn" if len(labels) > 1 else "non-fqdn"


def _same(
    a: ipaddress.IPv4Address | ipaddress.IPv6Address,
    b: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> bool:
    return _plain(a) == _plain(b)


def _plain(
    a: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


async def check(
    resolver: Resolver, name: str, ip: str, ours: Callable[[str], bool] | None = None
) -> HeloResult:
    """The HELO name `name` of a client at `ip`. At most three lookups (A, AAAA, then MX only
    when the name has no address), through the shared resolver and its cache. `ours(name)`
    tells this server's own names (its host name, its domains): claimed by a client the name
    does not resolve to, and not on loopback (this host's own programs), that is a forgery."""
    result = await _check(resolver, name, ip)
    if ours is None or result.kind in ("confirmed", "literal", "invalid", "non-fqdn"):
        return result
    host = _ascii_name(name)
    if host is None or not ours(host):
        return result
    try:
        if _plain(ipaddress.ip_address(ip)).is_loopback:
            return result
    except ValueError:
        return result
    return HeloResult("fail", "ours", name, "that is this server's name, not the client's")


async def _check(resolver: Resolver, name: str, ip: str) -> HeloResult:
    kind = syntax(name)
    if kind == "invalid":
        return HeloResult("permerror", "invalid", name, "not a host name or address literal")
    if kind == "non-fqdn":
        return HeloResult("permerror", "non-fqdn", name, "not a fully-qualified host name")
    try:
        client = _plain(ipaddress.ip_address(ip))
    except ValueError:
        return HeloResult("permerror", "invalid", name, "client address unknown")
    if kind == "literal":
        literal = _literal_address(name)
        if literal is not None and _same(literal, client):
            return HeloResult("pass", "literal", name)
        return HeloResult("fail", "literal-mismatch", name, f"not the client's address {ip}")
    host = _ascii_name(name) or name
    a, aaaa = await asyncio.gather(resolver.lookup(host, "A"), resolver.lookup(host, "AAAA"))
    found = False
    for answer in (a, aaaa):
        for value in answer.values:
            found = True
            try:
                if _same(ipaddress.ip_address(str(value)), client):
                    return HeloResult("pass", "confirmed", name)
            except ValueError:
                continue
    # the family the client uses must have answered for a "does not resolve to" verdict
    own = a if client.version == 4 else aaaa
    if own.temporary:
        return HeloResult("temperror", "dns", name, own.error)
    if found:
        return HeloResult("fail", "mismatch", name, f"does not resolve to {ip}")
    if a.temporary or aaaa.temporary:
        return HeloResult("temperror", "dns", name, a.error or aaaa.error)
    mx = await resolver.lookup(host, "MX")
    if mx.temporary:
        return HeloResult("temperror", "dns", name, mx.error)
    if mx.values:
        return HeloResult("fail", "mismatch", name, f"has no address record for {ip}")
    return HeloResult("fail", "unknown", name, "no A, AAAA or MX record")

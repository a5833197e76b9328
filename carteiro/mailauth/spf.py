"""SPF (RFC 7208) check_host() for the MAIL FROM and HELO identities, on pyspf's evaluator.

pyspf does the record parsing, macro expansion and the processing limits (RFC 7208 4.6.4: ten
DNS-querying terms, two void lookups); its own DNS code is blocking, so it runs here against
answers fetched beforehand through our async resolver: an evaluation that needs a name not yet
fetched stops, the name is fetched, and the evaluation starts again (each round is microseconds;
a record can need at most ~30 names). It never blocks the event loop and never uses the network
itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from functools import reduce
from typing import Any, Literal

import spf as pyspf

from carteiro.mailauth.lookup import Answer, Resolver

Result = Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
RESULTS: tuple[Result, ...] = (
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "temperror",
    "permerror",
)
MAX_ROUNDS = 64  # lookups an evaluation may trigger (limits: 10 terms x 10 MX/PTR names + voids)
TIMEOUT = 20.0  # RFC 7208 4.6.4: at least 20 seconds for the whole evaluation


@dataclass(frozen=True, slots=True)
class SPFResult:
    result: Result
    identity: Literal["mailfrom", "helo"]
    domain: str  # the domain checked (of the MAIL FROM address, or the HELO name)
    explanation: str = ""  # the reason (or the domain's exp= text for a fail)

    @property
    def ok(self) -> bool:
        return self.result == "pass"


class _Need(Exception):
    def __init__(self, name: str, qtype: str) -> None:
        super().__init__(name, qtype)
        self.key = (name, qtype)


class _Query(pyspf.query):  # type: ignore[misc]
    """pyspf's evaluator with its DNS replaced by answers fetched beforehand."""

    answers: dict[tuple[str, str], Answer]
    need: tuple[str, str] | None

    def dns(
        self, name: Any, qtype: str, cnames: Any = None, ignore_void: bool = False
    ) -> list[Any]:
        if not name:
            raise pyspf.PermError("Invalid query")
        name = str(name).rstrip(".").lower()
        # RFC 7208 4.3: labels of 1-63 octets; other names are no query and no result
        if not reduce(lambda ok, label: ok and 0 < len(label) < 64, name.split("."), True):
            return []
        key = (name, qtype)
        answer = self.answers.get(key)
        if answer is None:
            # pyspf swallows every exception around exp= lookups: remember what was needed
            self.need = key
            raise _Need(name, qtype)
        if answer.status == "temp":
            raise pyspf.TempError(f"DNS {answer.error or 'lookup failed'}")
        result: list[Any]
        if qtype == "TXT":
            result = [list(v) for v in answer.values if isinstance(v, tuple)]
        else:
            result = list(answer.values)
        if not result and not ignore_void:
            # RFC 7208 4.6.4: more than two lookups with no answer (NXDOMAIN or NODATA)
            self.void_lookups += 1
            if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:
                raise pyspf.PermError(f"Void lookup limit of {pyspf.MAX_VOID_LOOKUPS} exceeded")
        return result


def _valid_ip(ip: str) -> bool:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True


async def check_host(
    resolver: Resolver,
    ip: str,
    sender: str,
    helo: str,
    receiver: str = "unknown",
    timeout: float = TIMEOUT,
) -> SPFResult:
    """RFC 7208 2.4/2.3: the SPF result for `sender` (the MAIL FROM address; "" for the null
    reverse-path, then the HELO identity "postmaster@HELO" is checked) sent from `ip`."""
    identity: Literal["mailfrom", "helo"] = "mailfrom" if sender else "helo"
    domain = sender.rpartition("@")[2] if sender else helo
    domain = domain.rstrip(".").lower()
    if not domain or not _valid_ip(ip):
        return SPFResult("none", identity, domain, "no domain to check")
    if identity == "helo" and (helo.startswith("[") or "." not in helo):
        # RFC 7208 2.3: an address literal or a name that is no FQDN has no SPF record
        return SPFResult("none", identity, domain, "HELO name is no domain")
    answers: dict[tuple[str, str], Answer] = {}
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_ROUNDS):
                q = _Query(ip, sender or "", helo, receiver=receiver)
                q.answers = answers
                q.need = None
                try:
                    result, _code, text = q.check()
                except _Need:
                    result, text = "", ""
                if q.need is None:
                    return SPFResult(_result(result), identity, domain, _text(text))
                name, qtype = q.need
                answers[q.need] = await resolver.lookup(name, qtype)
    except TimeoutError:
        return SPFResult("temperror", identity, domain, "DNS lookups took too long")
    return SPFResult("permerror", identity, domain, "too many DNS lookups")


def _result(value: str) -> Result:
    for r in RESULTS:
        if r == value:
            return r
    return "permerror"


def _text(text: str) -> str:
    # shown in Authentication-Results comments and SMTP replies: one printable line
    return "".join(c if c.isprintable() else " " for c in text)[:200]


async def check_helo(
    resolver: Resolver, ip: str, helo: str, receiver: str = "unknown"
) -> SPFResult:
    """RFC 7208 2.3: the HELO identity, checked on its own (recommended, reported as
    smtp.helo in Authentication-Results)."""
    return await check_host(resolver, ip, "", helo, receiver)

"""The DNS interface the mail-authentication checks use (SPF, DKIM, DMARC, ARC, iprev, DNSBL).

A check never talks to the network itself: it is given a `Resolver` (carteiro.net.dns implements
it over dnspython; tests serve records from their own DNS server). Failures are values: "temp"
(timeout, SERVFAIL, no resolver) must become a temperror, never a pass or a fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Status = Literal["ok", "nxdomain", "nodata", "temp"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One lookup's outcome. values: A/AAAA -> address text; MX -> (preference, exchange);
    PTR -> target name (no final dot); TXT -> the record's character-strings (bytes)."""

    status: Status
    values: tuple[object, ...] = ()
    error: str = ""

    @property
    def temporary(self) -> bool:
        return self.status == "temp"


class Resolver(Protocol):
    async def lookup(self, name: str, rdtype: str) -> Answer: ...


class NoResolver:
    """What the checks get when no resolver is configured or reachable: every answer is a
    temporary failure, so mail is deferred (4xx), never judged on missing evidence."""

    async def lookup(self, name: str, rdtype: str) -> Answer:
        return Answer("temp", (), "no DNS resolver")


def txt_strings(answer: Answer) -> list[bytes]:
    """Each TXT record of `answer` with its character-strings joined (RFC 7208 3.3, RFC 6376
    3.6.2.2: a long record is several strings that are concatenated without spaces)."""
    out: list[bytes] = []
    for v in answer.values:
        if isinstance(v, tuple):
            out.append(b"".join(x for x in v if isinstance(x, bytes)))
    return out

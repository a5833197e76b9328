"""DMARC (RFC 7489): policy discovery, identifier alignment and the policy to apply.

The organizational domain comes from the Public Suffix List bundled with publicsuffixlist (read
once, never fetched at run time). A DNS failure anywhere that could change the outcome makes the
result temperror, so the caller defers (4xx) instead of rejecting or passing on half the evidence.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from publicsuffixlist import PublicSuffixList

from carteiro.mailauth.dkim_verify import Signature
from carteiro.mailauth.lookup import Resolver, txt_strings
from carteiro.mailauth.spf import SPFResult

Result = Literal["pass", "fail", "none", "temperror", "permerror"]
Policy = Literal["none", "quarantine", "reject"]
_POLICIES: tuple[Policy, ...] = ("none", "quarantine", "reject")


MAX_AUTHORS = 5  # author domains evaluated per message


def author_domains(fields: Sequence[tuple[bytes, bytes]]) -> list[str]:
    """RFC 7489 3.1 / 6.6.1: the domains of the RFC5322.From addresses (lower-cased, no final
    dot, each once, in order; at most MAX_AUTHORS)."""
    values = [v.decode("utf-8", "replace") for n, v in fields if n.lower() == b"from"]
    out: list[str] = []
    for _name, addr in email.utils.getaddresses(values):
        domain = addr.rpartition("@")[2].strip().rstrip(".").lower()
        if "@" in addr and domain and domain not in out:
            out.append(domain)
    return out[:MAX_AUTHORS]


def author_domain(fields: Sequence[tuple[bytes, bytes]]) -> str | None:
    domains = author_domains(fields)
    return domains[0] if domains else None


_SEVERITY = {"none": 0, "quarantine": 1, "reject": 2}


def strictest(evaluations: Sequence[Evaluation]) -> Evaluation:
    """RFC 7489 6.6.1: with several author domains, the strictest outcome among them: a
    temperror first (the verdict cannot be known), then the failing one with the strictest
    disposition, else the first."""
    for ev in evaluations:
        if ev.result == "temperror":
            return ev
    fails = [ev for ev in evaluations if ev.result == "fail"]
    if fails:
        return max(fails, key=lambda ev: _SEVERITY[ev.disposition])
    return evaluations[0]


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped with the package: no network


def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label; a public suffix itself stays as it is."""
    d = domain.lower().rstrip(".")
    org = _psl().privatesuffix(d)
    return str(org) if org else d


def aligned(a: str, b: str, mode: str) -> bool:
    """RFC 7489 3.1.1/3.1.2: strict is the same name, relaxed the same organizational domain."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


@dataclass(frozen=True, slots=True)
class Record:
    """A parsed DMARC record (RFC 7489 6.3); defaults per the RFC."""

    p: Policy
    sp: Policy | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: str = "0"
    ri: int = 86400
    text: str = ""


def parse_record(text: str) -> Record | None:
    """None when `text` is not a DMARC record (RFC 7489 6.6.3: such records are ignored).
    Unknown tags are ignored; invalid values of known tags fall back to defaults (6.3)."""
    parts = [p.strip() for p in text.split(";")]
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        return None
    tags: dict[str, str] = {}
    for part in parts[1:]:
        name, eq, value = part.partition("=")
        if eq:
            tags.setdefault(name.strip().lower(), value.strip())

    def policy(value: str | None) -> Policy | None:
        v = (value or "").lower()
        for p in _POLICIES:
            if p == v:
                return p
        return None

    p = policy(tags.get("p"))
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip())
    if p is None:
        # RFC 7489 6.6.3: no valid p= but a valid rua: treat as p=none; otherwise no record
        if rua:
            p = "none"
        else:
            return None
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    try:
        ri = max(3600, int(tags.get("ri", "86400")))
    except ValueError:
        ri = 86400
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    return Record(
        p=p,
        sp=policy(tags.get("sp")),
        adkim=adkim if adkim in ("r", "s") else "r",
        aspf=aspf if aspf in ("r", "s") else "r",
        pct=pct,
        rua=rua,
        ruf=tuple(u.strip() for u in tags.get("ruf", "").split(",") if u.strip()),
        fo=tags.get("fo", "0"),
        ri=ri,
        text=text,
    )


@dataclass(frozen=True, slots=True)
class Lookup:
    status: Literal["ok", "none", "temperror", "permerror"]
    record: Record | None = None
    domain: str = ""  # where the record was found
    reason: str = ""


async def lookup(resolver: Resolver, from_domain: str) -> Lookup:
    """RFC 7489 6.6.3: _dmarc.FROM, then _dmarc.ORGDOMAIN."""
    org = organizational_domain(from_domain)
    candidates = [from_domain] if org == from_domain else [from_domain, org]
    for domain in candidates:
        answer = await resolver.lookup(f"_dmarc.{domain}", "TXT")
        if answer.temporary:
            return Lookup("temperror", None, domain, f"_dmarc.{domain}: {answer.error}")
        records = [r for r in (parse_record(_ascii(t)) for t in txt_strings(answer)) if r]
        if len(records) > 1:
            # RFC 7489 6.6.3 step 5: more than one record: no policy
            return Lookup("none", None, domain, "more than one DMARC record")
        if records:
            return Lookup("ok", records[0], domain)
    return Lookup("none", None, from_domain, "no DMARC record")


def _ascii(b: bytes) -> str:
    return b.decode("ascii", "replace")


@dataclass(frozen=True, slots=True)
class Evaluation:
    result: Result
    from_domain: str
    policy: Policy = "none"  # the record's policy for this domain (p= or sp=)
    disposition: Policy = "none"  # what to do with the message (after pct=)
    record: Record | None = None
    record_domain: str = ""
    spf_aligned: bool = False
    dkim_aligned: bool = False
    reason: str = ""
    dkim_domains: tuple[str, ...] = field(default=())


def evaluate(
    found: Lookup,
    from_domain: str,
    spf: SPFResult | None,
    signatures: Sequence[Signature],
    sample: Callable[[], float] = random.random,
) -> Evaluation:
    """RFC 7489 6.6.2 and 6.6.4: pass when SPF or DKIM passes for an aligned domain."""
    if found.status == "temperror":
        return Evaluation("temperror", from_domain, reason=found.reason)
    record = found.record
    if found.status != "ok" or record is None:
        return Evaluation("none", from_domain, reason=found.reason)
    # RFC 7489 6.3 sp=: the policy for subdomains, when the record is the organizational one
    pol: Policy = record.p
    if found.domain != from_domain and record.sp is not None:
        pol = record.sp
    spf_ok = (
        spf is not None
        and spf.result == "pass"
        and spf.identity == "mailfrom"
        and aligned(spf.domain, from_domain, record.aspf)
    )
    dkim_ok = [s.domain for s in signatures if s.result == "pass"]
    dkim_aligned = any(aligned(d, from_domain, record.adkim) for d in dkim_ok)
    base = Evaluation(
        "fail",
        from_domain,
        policy=pol,
        record=record,
        record_domain=found.domain,
        spf_aligned=spf_ok,
        dkim_aligned=dkim_aligned,
        dkim_domains=tuple(dkim_ok),
    )
    if spf_ok or dkim_aligned:
        return dataclasses.replace(base, result="pass")
    # A check that failed temporarily might have passed aligned: defer, do not fail (RFC 7489
    # 6.6.2 ends the evaluation with temperror when the underlying checks could not complete).
    spf_temp = spf is not None and spf.result == "temperror"
    dkim_temp = any(
        s.result == "temperror" and aligned(s.domain, from_domain, record.adkim) for s in signatures
    )
    if spf_temp or dkim_temp:
        what = "SPF" if spf_temp else "DKIM"
        return dataclasses.replace(base, result="temperror", reason=f"{what} lookup failed")
    disposition = pol
    if pol != "none" and record.pct < 100 and sample() * 100 >= record.pct:
        # RFC 7489 6.6.4: outside the sampled percentage, the next less strict policy
        disposition = "quarantine" if pol == "reject" else "none"
    return dataclasses.replace(base, disposition=disposition, reason="no aligned SPF or DKIM pass")

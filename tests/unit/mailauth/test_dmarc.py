"""DMARC (RFC 7489): record parsing, organizational domains from the bundled Public Suffix List,
strict/relaxed alignment, discovery (From domain, then org domain), sp=, pct=, temperror."""

from __future__ import annotations

import pytest

from carteiro.mailauth.dkim_verify import Signature
from carteiro.mailauth.dmarc import aligned, evaluate, lookup, organizational_domain, parse_record
from carteiro.mailauth.spf import SPFResult
from carteiro.testing.dns import StaticResolver


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),
        ("mail.sub.example.com", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),  # a public suffix stays itself
        ("x.a.test", "a.test"),
        ("Example.COM.", "example.com"),
    ],
)
def test_organizational_domain(domain: str, org: str) -> None:
    assert organizational_domain(domain) == org


def test_alignment() -> None:
    assert aligned("example.com", "example.com", "s")
    assert not aligned("mail.example.com", "example.com", "s")
    assert aligned("mail.example.com", "example.com", "r")
    assert aligned("bounce.example.co.uk", "news.example.co.uk", "r")
    assert not aligned("example.co.uk", "other.co.uk", "r")  # different orgs under one suffix


def test_parse_record() -> None:
    r = parse_record("v=DMARC1; p=reject; sp=none; adkim=s; pct=50; rua=mailto:a@x.test,mailto:b@y")
    assert r is not None
    assert (r.p, r.sp, r.adkim, r.aspf, r.pct) == ("reject", "none", "s", "r", 50)
    assert r.rua == ("mailto:a@x.test", "mailto:b@y")
    assert parse_record("v=spf1 -all") is None
    assert parse_record("p=reject; v=DMARC1") is None  # v= must come first (6.4)
    assert parse_record("v=DMARC1; p=bogus") is None
    # RFC 7489 6.6.3: no valid p= but a rua: p=none
    none = parse_record("v=DMARC1; rua=mailto:r@x.test")
    assert none is not None and none.p == "none"


def spf_pass(domain: str) -> SPFResult:
    return SPFResult("pass", "mailfrom", domain)


def dkim_pass(domain: str, result: str = "pass") -> Signature:
    return Signature(result, domain, "s", "rsa-sha256")  # type: ignore[arg-type]


ZONE = """
_dmarc.example.com. 60 IN TXT "v=DMARC1; p=reject; sp=quarantine"
_dmarc.strict.test. 60 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
_dmarc.half.test. 60 IN TXT "v=DMARC1; p=reject; pct=50"
_dmarc.q.test. 60 IN TXT "v=DMARC1; p=quarantine; pct=0"
_dmarc.two.test. 60 IN TXT "v=DMARC1; p=reject"
_dmarc.two.test. 60 IN TXT "v=DMARC1; p=none"
"""


async def test_discovery_falls_back_to_the_org_domain() -> None:
    dns = StaticResolver(ZONE)
    found = await lookup(dns, "news.example.com")
    assert found.status == "ok" and found.domain == "example.com"
    ev = evaluate(found, "news.example.com", None, [])
    assert ev.result == "fail" and ev.policy == "quarantine"  # sp= for a subdomain
    ev = evaluate(await lookup(dns, "example.com"), "example.com", None, [])
    assert ev.policy == "reject" and ev.disposition == "reject"
    assert (await lookup(dns, "none.test")).status == "none"
    assert (await lookup(dns, "two.test")).status == "none"  # 6.6.3: several records


async def test_pass_needs_an_aligned_identifier() -> None:
    found = await lookup(StaticResolver(ZONE), "example.com")
    assert evaluate(found, "example.com", spf_pass("bounce.example.com"), []).result == "pass"
    assert evaluate(found, "example.com", None, [dkim_pass("example.com")]).result == "pass"
    assert evaluate(found, "example.com", spf_pass("evil.test"), []).result == "fail"
    assert evaluate(found, "example.com", None, [dkim_pass("evil.test")]).result == "fail"
    assert evaluate(found, "example.com", None, [dkim_pass("example.com", "fail")]).result == "fail"
    # a HELO pass is no MAIL FROM identity
    helo = SPFResult("pass", "helo", "example.com")
    assert evaluate(found, "example.com", helo, []).result == "fail"


async def test_strict_alignment() -> None:
    found = await lookup(StaticResolver(ZONE), "strict.test")
    assert evaluate(found, "strict.test", spf_pass("mail.strict.test"), []).result == "fail"
    assert evaluate(found, "strict.test", None, [dkim_pass("strict.test")]).result == "pass"


async def test_pct_samples_the_policy() -> None:
    found = await lookup(StaticResolver(ZONE), "half.test")
    assert evaluate(found, "half.test", None, [], sample=lambda: 0.2).disposition == "reject"
    # RFC 7489 6.6.4: outside the sample, the next less strict policy
    assert evaluate(found, "half.test", None, [], sample=lambda: 0.7).disposition == "quarantine"
    q = await lookup(StaticResolver(ZONE), "q.test")
    assert evaluate(q, "q.test", None, [], sample=lambda: 0.0).disposition == "none"


async def test_dns_failure_is_temperror() -> None:
    dns = StaticResolver(ZONE, servfail=("_dmarc.down.test",))
    found = await lookup(dns, "down.test")
    assert found.status == "temperror"
    assert evaluate(found, "down.test", spf_pass("down.test"), []).result == "temperror"
    # a failed SPF lookup that could have aligned: temperror, not fail
    found = await lookup(StaticResolver(ZONE), "example.com")
    temp = SPFResult("temperror", "mailfrom", "example.com")
    assert evaluate(found, "example.com", temp, []).result == "temperror"
    # ... but an aligned DKIM pass settles it
    assert evaluate(found, "example.com", temp, [dkim_pass("example.com")]).result == "pass"

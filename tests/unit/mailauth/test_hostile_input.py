"""Hostile input never crashes a check: random signatures, records, reports and headers give a
result (permerror, fail, none), not an exception."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carteiro.mailauth import arc, dkim_verify, dmarc_reports, helo
from carteiro.mailauth.dmarc import parse_record
from carteiro.mailauth.spf import check_host
from carteiro.testing.dns import StaticResolver

TAGS = st.lists(
    st.tuples(
        st.sampled_from(["v", "a", "b", "bh", "c", "d", "h", "i", "l", "q", "s", "t", "x", "cv"]),
        st.text(alphabet="abcdefghij0123456789=+/.-:;@ \t", max_size=30),
    ),
    max_size=12,
)
BODY = b"From: <a@a.test>\r\nSubject: x\r\n\r\nhello\r\n"
KEYS = StaticResolver(
    's._domainkey.a.test. 60 IN TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"\n'
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(TAGS, st.sampled_from([b"DKIM-Signature", b"ARC-Seal", b"ARC-Message-Signature"]))
def test_random_signature_fields(tags: list[tuple[str, str]], name: bytes) -> None:
    value = "; ".join(f"{k}={v}" for k, v in tags).encode()
    message = name + b": " + value + b"\r\n" + BODY
    for r in asyncio.run(dkim_verify.verify(KEYS, message)):
        assert r.result in ("fail", "permerror", "temperror", "policy", "neutral")
    assert asyncio.run(arc.verify(KEYS, message)).result in ("none", "fail", "temperror")


@FAST
@given(st.binary(max_size=400))
def test_random_messages(data: bytes) -> None:
    asyncio.run(dkim_verify.verify(KEYS, b"DKIM-Signature: d=a.test; s=s\r\n" + data))
    asyncio.run(arc.verify(KEYS, b"ARC-Seal: i=1; d=a.test; s=s\r\n" + data))
    dmarc_reports.parse_report(data)


@FAST
@given(st.text(max_size=120))
def test_random_dmarc_records(text: str) -> None:
    rec = parse_record("v=DMARC1; " + text)
    assert rec is None or rec.p in ("none", "quarantine", "reject")


@FAST
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:./-+~?%{}_ ", max_size=80))
def test_random_spf_records(record: str) -> None:
    zone = StaticResolver(f'r.test. 60 IN TXT "v=spf1 {record}"\n')
    r = asyncio.run(check_host(zone, "192.0.2.1", "a@r.test", "h.test", timeout=5))
    assert r.result in ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")


HELO_ZONE = StaticResolver("h.test. 60 IN A 192.0.2.1\n")


@FAST
@given(st.text(max_size=300))
def test_random_helo_names(name: str) -> None:
    r = asyncio.run(helo.check(HELO_ZONE, name, "192.0.2.1"))
    assert r.result in ("pass", "fail", "permerror", "temperror")
    assert (r.result == "permerror") == (helo.syntax(name) in ("invalid", "non-fqdn"))

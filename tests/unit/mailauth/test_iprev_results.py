"""iprev (RFC 8601 3) and the Authentication-Results field (RFC 8601 2): rendering that parses
with authres, hostile values quoted, forged fields under our authserv-id found and removed."""

from __future__ import annotations

import authres
from hypothesis import given
from hypothesis import strategies as st

from carteiro.mailauth.iprev import check
from carteiro.mailauth.lookup import NoResolver
from carteiro.mailauth.results_header import MethodResult, authserv_id_of, render, strip_ours
from carteiro.testing.dns import StaticResolver

ZONE = """
2.2.0.192.in-addr.arpa. 60 IN PTR mx.a.test.
mx.a.test. 60 IN A 192.0.2.2
3.2.0.192.in-addr.arpa. 60 IN PTR liar.test.
liar.test. 60 IN A 192.0.2.99
4.2.0.192.in-addr.arpa. 60 IN PTR slow.test.
8.b.d.0.1.0.0.2.ip6.arpa. 60 IN PTR x.test.
"""
V6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
ZONE6 = f"{V6} 60 IN PTR six.test.\nsix.test. 60 IN AAAA 2001:db8::1\n"


async def test_iprev_results() -> None:
    dns = StaticResolver(ZONE + ZONE6, servfail=("slow.test",))
    r = await check(dns, "192.0.2.2")
    assert (r.result, r.name) == ("pass", "mx.a.test")
    assert (await check(dns, "192.0.2.3")).result == "fail"
    assert (await check(dns, "192.0.2.5")).result == "permerror"  # no PTR
    assert (await check(dns, "192.0.2.4")).result == "temperror"
    assert (await check(dns, "2001:db8::1")).result == "pass"
    assert (await check(dns, "::ffff:192.0.2.2")).result == "pass"  # v4-mapped
    assert (await check(NoResolver(), "192.0.2.2")).result == "temperror"


def test_render_parses_with_authres() -> None:
    field = render(
        "mx.b.test",
        [
            MethodResult("iprev", "pass", "mx.a.test", (("policy.iprev", "192.0.2.2"),)),
            MethodResult("spf", "pass", "a.test: ok", (("smtp.mailfrom", "alice@a.test"),)),
            MethodResult("dkim", "pass", "", (("header.d", "a.test"), ("header.s", "sel"))),
            MethodResult("dmarc", "pass", "p=reject dis=none", (("header.from", "a.test"),)),
        ],
    )
    assert field.endswith(b"\r\n")
    parsed = authres.AuthenticationResultsHeader.parse(field.decode().replace("\r\n", ""))
    assert parsed.authserv_id == "mx.b.test"
    assert [(r.method, r.result) for r in parsed.results] == [
        ("iprev", "pass"),
        ("spf", "pass"),
        ("dkim", "pass"),
        ("dmarc", "pass"),
    ]
    assert render("mx.b.test", []) == b"Authentication-Results: mx.b.test; none\r\n"


def test_hostile_values_cannot_inject_results() -> None:
    evil = 'x"; dkim=pass header.d=bank.test; ("@evil.test'
    field = render("mx.b.test", [MethodResult("spf", "fail", ")(", (("smtp.mailfrom", evil),))])
    text = field.decode().replace("\r\n", "")
    parsed = authres.AuthenticationResultsHeader.parse(text)
    assert [(r.method, r.result) for r in parsed.results] == [("spf", "fail")]


def test_authserv_id_of() -> None:
    assert authserv_id_of(b" mx.b.test; spf=pass") == "mx.b.test"
    assert authserv_id_of(b" (comment (nested)) MX.B.TEST. 1; none") == "mx.b.test"
    assert authserv_id_of(b"\r\n\tmx.b.test;\r\n\tdkim=pass") == "mx.b.test"
    assert authserv_id_of(b"") == ""


def test_strip_ours_removes_forged_fields_only() -> None:
    head = (
        b"Authentication-Results: mx.b.test;\r\n\tdmarc=pass header.from=bank.test\r\n"
        b"Received: from x\r\n"
        b"Authentication-Results: other.test; spf=pass\r\n"
        b"authentication-results: (c) MX.B.test; dkim=pass\r\n"
        b"Subject: hi\r\n"
    )
    out, n = strip_ours(head, "mx.b.test")
    assert n == 2
    assert out == (
        b"Received: from x\r\nAuthentication-Results: other.test; spf=pass\r\nSubject: hi\r\n"
    )


@given(st.binary(max_size=300))
def test_strip_never_crashes_and_keeps_other_fields(data: bytes) -> None:
    out, n = strip_ours(data, "mx.b.test")
    assert n >= 0 and len(out) <= len(data)
    authserv_id_of(data)

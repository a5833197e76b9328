"""DMARC failure reports (RFC 7489 7.3, RFC 6591): which fo= options ask for one, what the
report says (an ARF auth-failure report with the header section, never the body), and the
hourly allowance per domain."""

from __future__ import annotations

import email
import email.policy

import authres
import pytest

from carteiro.mailauth import dmarc_failures as df
from carteiro.mailauth.dkim_verify import Signature
from carteiro.mailauth.dmarc import Lookup, evaluate, parse_record
from carteiro.mailauth.spf import SPFResult


def ev(fo: str, spf: SPFResult | None, sigs: list[Signature], ruf: str = "mailto:f@a.test"):  # type: ignore[no-untyped-def]
    record = parse_record(f"v=DMARC1; p=reject; ruf={ruf}; fo={fo}")
    assert record is not None
    return evaluate(Lookup("ok", record, "a.test"), "a.test", spf, sigs)


SPF_PASS = SPFResult("pass", "mailfrom", "a.test")
SPF_FAIL = SPFResult("fail", "mailfrom", "a.test")
SPF_OTHER = SPFResult("pass", "mailfrom", "bounces.other.test")
DKIM_PASS = Signature("pass", "a.test", "s", "rsa-sha256")
DKIM_FAIL = Signature("fail", "other.test", "s", "rsa-sha256")


@pytest.mark.parametrize(
    ("fo", "spf", "sigs", "expected"),
    [
        ("0", SPF_FAIL, [], True),  # DMARC fails: no aligned pass at all
        ("0", SPF_PASS, [], False),  # DMARC passes on SPF
        ("1", SPF_PASS, [], True),  # DKIM gave no aligned pass
        ("1", SPF_PASS, [DKIM_PASS], False),
        ("d", SPF_PASS, [DKIM_FAIL], True),  # a signature failed, whatever its domain
        ("d", SPF_PASS, [DKIM_PASS], False),
        ("s", SPF_FAIL, [DKIM_PASS], True),  # SPF failed though DKIM aligned
        ("s", SPF_OTHER, [DKIM_PASS], False),
        ("d:s", SPF_FAIL, [DKIM_PASS], True),
    ],
)
def test_fo_options(fo: str, spf: SPFResult, sigs: list[Signature], expected: bool) -> None:
    assert df.wanted(ev(fo, spf, sigs), spf, sigs) is expected


def test_no_ruf_no_report() -> None:
    record = parse_record("v=DMARC1; p=reject")
    assert record is not None
    e = evaluate(Lookup("ok", record, "a.test"), "a.test", None, [])
    assert not df.wanted(e, None, [])


HEADER = (
    b"From: <ceo@a.test>\r\nTo: <bob@b.test>\r\nSubject: wire the money\r\n"
    b"Message-ID: <x1@evil.test>\r\n"
)
RESULTS = (
    b"Authentication-Results: mx.b.test;\r\n\tspf=fail smtp.mailfrom=ceo@a.test;\r\n"
    b"\tdmarc=fail (p=reject dis=reject) header.from=a.test\r\n"
)


def test_the_report_is_an_arf_auth_failure_report_with_headers_only() -> None:
    e = ev("0", SPF_FAIL, [])
    case = df.case_of(
        e,
        source_ip="192.0.2.66",
        mail_from="ceo@a.test\r\nBcc: x@y",  # hostile: must stay on one line
        results_field=RESULTS,
        header=HEADER,
        action="reject",
        now=1_800_000_000,
    )
    raw = df.compose(case, "mx.b.test", "postmaster@b.test", ["f@a.test"], "mx.b.test")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "feedback-report"
    text, report, original = msg.get_payload()  # type: ignore[misc]
    assert text.get_content_type() == "text/plain"
    assert report.get_content_type() == "message/feedback-report"
    assert original.get_content_type() == "text/rfc822-headers"
    (fields,) = report.get_payload()  # message/*: the fields parse as a message's header
    assert fields["Feedback-Type"] == "auth-failure"
    assert fields["Auth-Failure"] == "dmarc"
    assert fields["Source-IP"] == "192.0.2.66"
    assert fields["Reported-Domain"] == "a.test"
    assert fields["Identity-Alignment"] == "none"
    assert fields["Delivery-Result"] == "reject"
    assert fields["Bcc"] is None and "Bcc: x@y" in fields["Original-Mail-From"]
    parsed = authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + fields["Authentication-Results"]
    )
    assert [r.method for r in parsed.results] == ["spf", "dmarc"]
    assert b"Subject: wire the money" in raw and b"\r\n\r\nHello" not in raw


def test_allowance_per_domain_and_hour() -> None:
    now = [3600.0 * 100]
    box = df.Outbox(clock=lambda: now[0])
    assert [box.allow("a.test") for _ in range(df.RATE_PER_HOUR + 2)].count(True) == 10
    assert box.allow("other.test")
    now[0] += 3600
    assert box.allow("a.test")
    assert box.dropped == 2

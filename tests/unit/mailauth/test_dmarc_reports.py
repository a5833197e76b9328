"""DMARC aggregate reports (RFC 7489 7.2, Appendix C): results recorded, a report composed when
its period ends (gzip XML attachment, the RFC's file name and subject), read back by the parser,
kept once per report id, summarised; rua size limits and external destination checks."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from carteiro.mailauth import dmarc_reports as dr
from carteiro.mailauth.dkim_verify import Signature
from carteiro.mailauth.dmarc import Lookup, evaluate, parse_record
from carteiro.mailauth.spf import SPFResult
from carteiro.testing.dns import StaticResolver


def seen(ip: str, ok: bool, now: float, rua: str = "mailto:dmarc@a.test") -> dr.Seen:
    record = parse_record(f"v=DMARC1; p=reject; rua={rua}")
    assert record is not None
    sigs = [Signature("pass" if ok else "fail", "a.test", "sel", "rsa-sha256")]
    spf = SPFResult("pass" if ok else "fail", "mailfrom", "a.test")
    ev = evaluate(Lookup("ok", record, "a.test"), "a.test", spf, sigs)
    out = dr.seen_from(ev, ip, "bounce@a.test", "mx.a.test", sigs, spf, now=now)
    assert out is not None
    return out


def test_record_report_parse_and_summarise(tmp_path: Path) -> None:
    rec = dr.Recorder(tmp_path)
    for _ in range(3):
        rec.record(seen("192.0.2.1", True, 1000))
    rec.record(seen("198.51.100.7", False, 1500))
    assert rec.flush() == 4
    assert (
        dr.due_reports(tmp_path, "mx.b.test", "postmaster@b.test", "mx.b.test", 86400, 2000) == []
    )
    (out,) = dr.due_reports(tmp_path, "mx.b.test", "postmaster@b.test", "mx.b.test", 600, 2000)
    assert out.recipients == ["dmarc@a.test"] and (out.begin, out.end) == (1000, 2000)
    msg = email.message_from_bytes(out.message, policy=email.policy.default)
    assert (
        msg["Subject"].strip().startswith("Report Domain: a.test Submitter: mx.b.test Report-ID: <")
    )
    (att,) = [p for p in msg.walk() if p.get_content_type() == "application/gzip"]
    assert att.get_filename() == "mx.b.test!a.test!1000!2000.xml.gz"
    report = dr.parse_report(out.message)
    assert report is not None
    assert (report.org, report.domain, report.begin, report.end) == (
        "mx.b.test", "a.test", 1000, 2000,
    )  # fmt: skip
    assert report.policy["p"] == "reject"
    rows = {r["source_ip"]: r for r in report.rows}
    assert rows["192.0.2.1"]["count"] == 3 and rows["192.0.2.1"]["dkim"] == "pass"
    assert rows["198.51.100.7"]["disposition"] == "reject"
    dr.mark_sent(tmp_path, out)
    assert dr.due_reports(tmp_path, "mx.b.test", "p@b.test", "mx.b.test", 600, 2100) == []
    assert dr.store_received(tmp_path, [report]) == 1
    assert dr.store_received(tmp_path, [report]) == 0  # the same report twice counts once
    lines = dr.summary(tmp_path)
    assert lines[0].startswith("a.test: mx.b.test (")
    assert "4 messages, 3 pass DMARC, 1 fail" in lines[0]
    assert "fail: 1 from 198.51.100.7" in lines[1]


def test_no_rua_no_record() -> None:
    record = parse_record("v=DMARC1; p=none")
    assert record is not None
    ev = evaluate(Lookup("ok", record, "a.test"), "a.test", None, [])
    assert dr.seen_from(ev, "192.0.2.1", "x@a.test", "h", [], None) is None


def test_mailto_size_limits() -> None:
    assert dr._mailto("mailto:d@a.test!10m") == ("d@a.test", 10 << 20)
    assert dr._mailto("mailto:d@a.test") == ("d@a.test", 0)
    assert dr._mailto("https://a.test/") is None


async def test_external_destination_needs_authorization() -> None:
    dns = StaticResolver('a.test._report._dmarc.reports.test. 60 IN TXT "v=DMARC1"\n')
    assert await dr.authorized(dns, "a.test", "x@mail.a.test")  # same organization
    assert await dr.authorized(dns, "a.test", "agg@reports.test")
    assert not await dr.authorized(dns, "a.test", "agg@elsewhere.test")


def test_parser_refuses_garbage() -> None:
    assert dr.parse_report(b"Subject: hi\r\n\r\nno report\r\n") is None
    bomb = (
        b"Content-Type: text/xml\r\n\r\n<?xml version='1.0'?><!DOCTYPE f ["
        b"<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
        b"<feedback>&b;</feedback>"
    )
    assert dr.parse_report(bomb) is None


def test_summary_counts_in_english(tmp_path: Path) -> None:
    one = dr.Received("r1", "mx.b.test", "a.test", 1000, 2000, {"p": "none"},
                      [{"source_ip": "192.0.2.1", "count": 1, "dkim": "pass", "spf": "pass"}])  # fmt: skip
    dr.store_received(tmp_path, [one])
    (line,) = dr.summary(tmp_path)
    assert "1 message, 1 pass DMARC, 0 fail" in line

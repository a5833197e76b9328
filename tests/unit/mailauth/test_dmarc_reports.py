"""DMARC aggregate reports (RFC 7489 7.2, Appendix C): results recorded, a report composed when
its period ends (gzip XML attachment, the RFC's file name and subject), read back by the parser,
kept once per report id, summarised; rua size limits and external destination checks."""

from __future__ import annotations

import calendar
import email
import email.policy
import time
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
    # 10-minute periods from the epoch: 600-1199 holds the three passes, 1200-1799 the fail
    out, other = dr.due_reports(tmp_path, "mx.b.test", "postmaster@b.test", "mx.b.test", 600, 2000)
    assert out.recipients == ["dmarc@a.test"] and (out.begin, out.end) == (600, 1199)
    assert (other.begin, other.end, other.rows) == (1200, 1799, 1)
    msg = email.message_from_bytes(out.message, policy=email.policy.default)
    assert (
        msg["Subject"].strip().startswith("Report Domain: a.test Submitter: mx.b.test Report-ID: <")
    )
    (att,) = [p for p in msg.walk() if p.get_content_type() == "application/gzip"]
    assert att.get_filename() == "mx.b.test!a.test!600!1199.xml.gz"
    report = dr.parse_report(out.message)
    assert report is not None
    assert (report.org, report.domain, report.begin, report.end) == (
        "mx.b.test", "a.test", 600, 1199,
    )  # fmt: skip
    assert report.policy["p"] == "reject"
    (row,) = report.rows
    assert (row["source_ip"], row["count"], row["dkim"]) == ("192.0.2.1", 3, "pass")
    second = dr.parse_report(other.message)
    assert second is not None
    (row,) = second.rows
    assert (row["source_ip"], row["disposition"]) == ("198.51.100.7", "reject")
    dr.mark_sent(tmp_path, out)
    dr.mark_sent(tmp_path, other)
    assert dr.due_reports(tmp_path, "mx.b.test", "p@b.test", "mx.b.test", 600, 2100) == []
    assert dr.store_received(tmp_path, [report, second]) == 2
    assert dr.store_received(tmp_path, [report]) == 0  # the same report twice counts once
    text = "\n".join(dr.summary(tmp_path))
    assert "a.test: mx.b.test (1970-01-01 00:10 - 1970-01-01 00:19 UTC" in text
    assert "3 messages, 3 pass DMARC, 0 fail" in text
    assert "1 message, 0 pass DMARC, 1 fail" in text  # one message: singular
    assert "fail: 1 from 198.51.100.7" in text


def test_no_rua_no_record() -> None:
    record = parse_record("v=DMARC1; p=none")
    assert record is not None
    ev = evaluate(Lookup("ok", record, "a.test"), "a.test", None, [])
    assert dr.seen_from(ev, "192.0.2.1", "x@a.test", "h", [], None) is None


def test_mailto_size_limits() -> None:
    assert dr.parse_mailto("mailto:d@a.test!10m") == ("d@a.test", 10 << 20)
    assert dr.parse_mailto("mailto:d@a.test") == ("d@a.test", 0)
    assert dr.parse_mailto("https://a.test/") is None


async def test_external_destination_needs_authorization() -> None:
    dns = StaticResolver('a.test._report._dmarc.reports.test. 60 IN TXT "v=DMARC1"\n')
    assert await dr.authorized(dns, "a.test", "x@mail.a.test")  # same organization
    assert await dr.authorized(dns, "a.test", "agg@reports.test")
    assert await dr.authorized(dns, "a.test", "agg@elsewhere.test") is False
    # a lookup that failed for now is no verdict: the report waits for the next round
    down = StaticResolver("", servfail=("a.test._report._dmarc.reports.test",))
    assert await dr.authorized(down, "a.test", "agg@reports.test") is None


def test_parser_refuses_garbage() -> None:
    assert dr.parse_report(b"Subject: hi\r\n\r\nno report\r\n") is None
    bomb = (
        b"Content-Type: text/xml\r\n\r\n<?xml version='1.0'?><!DOCTYPE f ["
        b"<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
        b"<feedback>&b;</feedback>"
    )
    assert dr.parse_report(bomb) is None


def utc(text: str) -> int:
    return int(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")))


def seen_at(ts: int, ip: str = "192.0.2.1", ri: str = "") -> dr.Seen:
    record = parse_record(f"v=DMARC1; p=none; rua=mailto:dmarc@a.test{ri}")
    assert record is not None
    spf = SPFResult("pass", "mailfrom", "a.test")
    ev = evaluate(Lookup("ok", record, "a.test"), "a.test", spf, [])
    out = dr.seen_from(ev, ip, "bounce@a.test", "mx.a.test", [], spf, now=ts)
    assert out is not None
    return out


def due(data: Path, now: int, interval: float = 86400) -> list[dr.Outgoing]:
    return dr.due_reports(data, "mx.b.test", "postmaster@b.test", "mx.b.test", interval, now)


def test_daily_reports_cover_whole_utc_days(tmp_path: Path) -> None:
    """RFC 7489 7.2: a 24-hour period begins at 00:00 UTC, whenever the server started or the
    first message came; the clock is injected."""
    rec = dr.Recorder(tmp_path)
    rec.record(seen_at(utc("2026-12-06 09:15:00"), "192.0.2.1"))
    rec.record(seen_at(utc("2026-12-06 23:59:59"), "192.0.2.2"))
    rec.record(seen_at(utc("2026-12-07 00:00:00"), "192.0.2.3"))
    rec.flush()
    # the day is not over at 23:59:59
    assert due(tmp_path, utc("2026-12-06 23:59:59")) == []
    (report,) = due(tmp_path, utc("2026-12-07 12:00:00"))
    assert (report.begin, report.end) == (utc("2026-12-06 00:00:00"), utc("2026-12-06 23:59:59"))
    parsed = dr.parse_report(report.message)
    assert parsed is not None and {r["source_ip"] for r in parsed.rows} == {
        "192.0.2.1",
        "192.0.2.2",
    }
    dr.mark_sent(tmp_path, report)
    assert due(tmp_path, utc("2026-12-07 23:00:00")) == []
    # a result of the 6th that reaches the database only now is not reported a second time
    rec.record(seen_at(utc("2026-12-06 23:59:58"), "192.0.2.9"))
    rec.flush()
    (report,) = due(tmp_path, utc("2026-12-08 00:00:30"))
    assert (report.begin, report.end) == (utc("2026-12-07 00:00:00"), utc("2026-12-07 23:59:59"))
    parsed = dr.parse_report(report.message)
    assert parsed is not None and [r["source_ip"] for r in parsed.rows] == ["192.0.2.3"]
    dr.mark_sent(tmp_path, report)
    assert due(tmp_path, utc("2026-12-09 00:00:30")) == []


def test_ri_asks_for_shorter_periods_on_hour_boundaries(tmp_path: Path) -> None:
    rec = dr.Recorder(tmp_path)
    # ri=3600: hourly; the days after a server was down are caught up, one report per hour
    rec.record(seen_at(utc("2026-12-07 10:59:59"), ri="; ri=3600"))
    rec.record(seen_at(utc("2026-12-07 11:30:00"), ri="; ri=3600"))
    rec.flush()
    first, second = due(tmp_path, utc("2026-12-07 13:05:00"))
    assert (first.begin, first.end) == (utc("2026-12-07 10:00:00"), utc("2026-12-07 10:59:59"))
    assert (second.begin, second.end) == (utc("2026-12-07 11:00:00"), utc("2026-12-07 11:59:59"))
    assert [dr.period_of(ri, 86400) for ri in (3600, 7000, 4 * 3600 + 5, 86400, 604800)] == [
        3600,
        3600,  # within reason: whole hours that divide a day
        4 * 3600,
        86400,
        86400,  # at most a day
    ]
    # the configured interval caps the period; the RFC minimum of an hour holds for ri
    assert dr.period_of(86400, 3600) == 3600
    record = parse_record("v=DMARC1; p=none; ri=60")
    assert record is not None and record.ri == 3600

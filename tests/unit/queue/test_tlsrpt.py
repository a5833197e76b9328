"""SMTP TLS Reporting (RFC 8460): result types, the domain's record, counting sessions, the JSON
report and its message, and the queue counting its MX sessions."""

from __future__ import annotations

import email
import email.message
import email.policy
import gzip
import json
from pathlib import Path

import pytest
from queue_fakes import MESSAGE, FakeResolver, FakeTransport, env, make_queue, until

from carteiro.queue.mta_sts import Policy
from carteiro.queue.routing import Destination, Route
from carteiro.queue.tlsrpt import (
    DAY,
    RESULT_TYPES,
    Recorder,
    classify,
    compose,
    due_reports,
    forget,
    mailto_addresses,
    parse_received,
    parse_record,
    summary,
)
from carteiro.queue.transport import Hop, Reply, SendResult, Transaction

T = 1_765_000_000 // DAY * DAY + 3600  # 01:00 UTC of some day
STS = Policy("id1", "enforce", ("mx.b.test", "*.b.test"), 86400, 0.0)


@pytest.mark.parametrize(
    ("status", "text", "want"),
    [
        ("4.7.4", "TLS is required, but was not offered by mx[1.2.3.4]:25", "starttls-not-supported"),
        ("4.7.5", "TLS with h failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, certificate is not valid for 'mx.d.test'. (_ssl.c:1006)", "certificate-host-mismatch"),
        ("4.7.5", "TLS with h failed: certificate verify failed: certificate has expired", "certificate-expired"),
        ("4.7.5", "TLS with h failed: certificate verify failed: self-signed certificate", "certificate-not-trusted"),
        ("4.7.5", "TLS with h failed: certificate verify failed: unable to get local issuer certificate", "certificate-not-trusted"),
        ("4.7.5", "TLS with h failed: [SSL: WRONG_VERSION_NUMBER] wrong version number", "validation-failure"),
        ("4.4.1", "connect to h: Connection refused", ""),
        ("4.2.1", "mailbox busy", ""),
    ],
)  # fmt: skip
def test_result_types(status: str, text: str, want: str) -> None:
    assert classify(status, text) == want
    assert want == "" or want in RESULT_TYPES


def test_the_domains_record() -> None:
    assert parse_record(["v=TLSRPTv1; rua=mailto:tls@b.test"]) == ["mailto:tls@b.test"]
    assert parse_record(["v=TLSRPTv1;rua=mailto:a@b.test,https://r.b.test/tls"]) == [
        "mailto:a@b.test",
        "https://r.b.test/tls",
    ]
    for bad in ([], ["v=spf1 -all"], ["v=TLSRPTv1;"], ["v=TLSRPTv1; rua=a", "v=TLSRPTv1; rua=b"]):
        assert parse_record(bad) is None, bad
    assert mailto_addresses(
        ["mailto:a@b.test", "https://r.b.test/", "mailto:c@d.test?subject=x", "mailto:nobody"]
    ) == ["a@b.test", "c@d.test"]


def recorder(tmp_path: Path, now: list[float]) -> Recorder:
    return Recorder(tmp_path / "tlsrpt.sqlite", clock=lambda: now[0])


def test_counts_become_one_report_per_domain_and_day(tmp_path: Path) -> None:
    now = [float(T)]
    rec = recorder(tmp_path, now)
    for _ in range(3):
        rec.session("B.test", STS, "success", "MX.b.test", "192.0.2.1")
    rec.session("b.test", STS, "certificate-expired", "mx2.b.test", "192.0.2.2", "198.51.100.7")
    rec.session("b.test", None, "starttls-not-supported", "mx.b.test", "192.0.2.1", "198.51.100.7")
    rec.session("c.test", None, "success", "mx.c.test", "192.0.2.3")
    assert rec.flush() == 4
    rec.session("b.test", STS, "success", "mx.b.test", "192.0.2.1")  # merged into the same row
    rec.flush()
    # not due while the day lasts
    assert due_reports(rec.path, "mx.a.test", "postmaster@a.test", now=T + 100) == []
    reports = {
        r.domain: r for r in due_reports(rec.path, "mx.a.test", "postmaster@a.test", now=T + DAY)
    }
    assert set(reports) == {"b.test", "c.test"}
    b = reports["b.test"]
    doc = json.loads(b.body)
    assert doc["organization-name"] == "mx.a.test"
    assert doc["contact-info"] == "postmaster@a.test"
    assert doc["date-range"]["start-datetime"].endswith("T00:00:00Z")
    assert doc["date-range"]["end-datetime"].endswith("T23:59:59Z")
    assert doc["report-id"] == b.report_id
    by_type = {p["policy"]["policy-type"]: p for p in doc["policies"]}
    sts = by_type["sts"]
    assert sts["policy"] == {
        "policy-type": "sts",
        "policy-domain": "b.test",
        "policy-string": ["version: STSv1", "mode: enforce", "mx: mx.b.test", "mx: *.b.test",
                          "max_age: 86400"],
        "mx-host": ["mx.b.test", "*.b.test"],
    }  # fmt: skip
    assert sts["summary"] == {"total-successful-session-count": 4, "total-failure-session-count": 1}
    assert sts["failure-details"] == [
        {
            "result-type": "certificate-expired",
            "sending-mta-ip": "198.51.100.7",
            "receiving-mx-hostname": "mx2.b.test",
            "receiving-ip": "192.0.2.2",
            "failed-session-count": 1,
        }
    ]
    none = by_type["no-policy-found"]
    assert none["policy"] == {"policy-type": "no-policy-found", "policy-domain": "b.test"}
    assert none["summary"]["total-failure-session-count"] == 1
    assert b.sessions == 6
    # once sent (or not wanted), the period is forgotten
    forget(rec.path, b)
    left = due_reports(rec.path, "mx.a.test", "postmaster@a.test", now=T + DAY)
    assert [r.domain for r in left] == ["c.test"]


def test_a_failed_flush_keeps_the_counts(tmp_path: Path) -> None:
    now = [float(T)]
    rec = Recorder(tmp_path / "missing-dir" / "sub" / "x.sqlite", clock=lambda: now[0])
    (tmp_path / "missing-dir").write_text("a file where the directory should be")
    rec.session("b.test", None, "success")
    with pytest.raises(OSError):
        rec.flush()
    (tmp_path / "missing-dir").unlink()
    assert rec.flush() == 1


def test_report_message(tmp_path: Path) -> None:
    now = [float(T)]
    rec = recorder(tmp_path, now)
    rec.session("b.test", STS, "success", "mx.b.test", "192.0.2.1")
    rec.flush()
    (report,) = due_reports(rec.path, "mx.a.test", "postmaster@a.test", now=T + DAY)
    raw = compose("mx.a.test", "postmaster@a.test", ["tls@b.test"], report, "mx.a.test")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == "b.test"
    assert msg["TLS-Report-Submitter"] == "mx.a.test"
    assert msg["Subject"] == (
        f"Report Domain: b.test Submitter: mx.a.test Report-ID: <{report.report_id}>"
    )
    parts = list(msg.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    att = parts[1]
    assert att.get_content_type() == "application/tlsrpt+gzip"
    name = att.get_filename()
    assert name.startswith(f"mx.a.test!b.test!{report.begin}!{report.begin + DAY}!")
    assert name.endswith(".json.gz")
    assert json.loads(gzip.decompress(att.get_content())) == json.loads(report.body)


async def test_the_queue_counts_its_mx_sessions(tmp_path: Path) -> None:
    """New sessions only (a kept connection's transactions are not new sessions); a greeting
    refused before STARTTLS negotiated nothing; local mail is not counted."""
    outcomes = iter(
        [
            SendResult(recipients=(Reply(250, "2.0.0", "ok"),), tls="TLSv1.3"),
            SendResult(recipients=(Reply(250, "2.0.0", "ok"),), tls="TLSv1.3", reused=True),
            SendResult(
                Reply(
                    451, "4.7.5", "TLS with x failed: certificate verify failed: Hostname mismatch"
                ),
                try_next=True,
                local_ip="127.0.0.9",
            ),
            SendResult(Reply(421, "4.3.2", "busy"), try_next=True, remote_said=True),
            SendResult(recipients=(Reply(250, "2.0.0", "ok"),), local_ip="127.0.0.9"),
        ]
    )

    def handler(hop: Hop, txn: Transaction) -> SendResult:
        return next(outcomes)

    resolver = FakeResolver()
    resolver.mx_for("b.test", (10, "mx1.b.test"), (20, "mx2.b.test"))
    resolver.host("mx1.b.test", "192.0.2.1")
    resolver.host("mx2.b.test", "192.0.2.2")
    transport = FakeTransport(handler=handler)
    q = await make_queue(tmp_path / "q", transport=transport, resolver=resolver)
    rec = Recorder(tmp_path / "tlsrpt.sqlite", clock=q.clock)
    q.worker.tls_report = rec
    try:
        for n in (1, 2, 4, 5):  # (the third: mx1 fails TLS, mx2 says 421: deferred)
            await q.spool.enqueue(env("bob@b.test"), MESSAGE)
            await until(lambda n=n: len(transport.calls) == n)  # type: ignore[misc]
        qid = await q.spool.enqueue(env("carol@a.test"), MESSAGE)  # local: not an MX session
        await until(lambda: qid not in q.spool.messages)
    finally:
        await q.stop()
    counts = {(k[1], k[3], k[4], k[5]): n for k, n in rec._counts.items()}
    assert counts == {
        ("b.test", "success", "", "mx1.b.test"): 1,
        ("b.test", "certificate-host-mismatch", "127.0.0.9", "mx1.b.test"): 1,
        ("b.test", "starttls-not-supported", "127.0.0.9", "mx1.b.test"): 1,
    }


# ---- reports we receive -------------------------------------------------------------------------


def test_a_report_we_sent_reads_back(tmp_path: Path) -> None:
    now = [float(T)]
    rec = recorder(tmp_path, now)
    for _ in range(4):
        rec.session("b.test", STS, "success", "mx.b.test", "192.0.2.1")
    rec.session("b.test", STS, "certificate-expired", "mx2.b.test", "192.0.2.2", "198.51.100.7")
    rec.flush()
    (report,) = due_reports(rec.path, "mx.a.test", "postmaster@a.test", now=T + DAY)
    raw = compose("mx.a.test", "postmaster@a.test", ["tls@b.test"], report, "mx.a.test")
    got = parse_received(raw)
    assert got is not None
    assert (got.org, got.report_id) == ("mx.a.test", report.report_id)
    assert got.policies == (
        ("sts", "b.test", 4, 1, (("certificate-expired", "mx2.b.test", "198.51.100.7", 1),)),
    )
    lines = summary([got, got])  # delivered twice: told once
    assert lines == [
        f"b.test: mx.a.test ({got.begin} - {got.end}, sts): 4 sessions with TLS, 1 failed",
        "  certificate-expired: 1 at mx2.b.test from 198.51.100.7",
    ]


def _mail(part: bytes, ctype: str = "application/tlsrpt+gzip") -> bytes:
    msg = email.message.EmailMessage()
    msg["Subject"] = "Report Domain: b.test"
    msg.set_content("report")
    main, sub = ctype.split("/")
    name = "x!b.test!1!2.json" + (".gz" if sub.endswith("gzip") else "")
    msg.add_attachment(part, maintype=main, subtype=sub, filename=name)
    return msg.as_bytes()


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@b\r\n\r\nno report here\r\n",
        _mail(b"not gzip at all"),
        _mail(gzip.compress(b"not json")),
        _mail(gzip.compress(b"[1, 2, 3]")),
        _mail(gzip.compress(b'{"policies": 5}')),
        _mail(gzip.compress(b"[" * 100_000 + b"]" * 100_000)),  # nesting past the recursion limit
        _mail(gzip.compress(b" " * (11 * 1024 * 1024))),  # over 10 MiB once inflated
    ],
)
def test_hostile_reports_are_ignored(raw: bytes) -> None:
    assert parse_received(raw) is None


def test_odd_but_readable_reports() -> None:
    doc = {
        "organization-name": "x" * 1000,
        "policies": [
            "junk",
            {"policy": "junk", "summary": {"total-successful-session-count": True}},
            {"failure-details": 7},
            {"failure-details": [{"failed-session-count": "9"}, "junk"]},
        ],
    }
    got = parse_received(_mail(json.dumps(doc).encode(), "application/tlsrpt+json"))
    assert got is not None and len(got.org) == 255
    assert got.policies == (
        ("?", "?", 0, 0, ()),
        ("?", "?", 0, 0, ()),
        ("?", "?", 0, 0, (("?", "", "", 0),)),
    )


async def test_a_failed_tlsa_lookup_is_reported_as_dnssec_invalid(tmp_path: Path) -> None:
    q = await make_queue(tmp_path / "q")
    rec = Recorder(tmp_path / "tlsrpt.sqlite", clock=q.clock)
    q.worker.tls_report = rec

    async def route(dest: Destination) -> Route:
        return Route(
            error=Reply(451, "4.7.5", "DANE: TLSA lookup failed"), dnssec_failed=("mx.b.test",)
        )

    q.worker.router.route = route  # type: ignore[method-assign]
    try:
        qid = await q.spool.enqueue(env("bob@b.test"), MESSAGE)
        await until(lambda: q.spool.messages[qid].recipients[0].attempts == 1)
    finally:
        await q.stop()
    assert {(k[1], k[3], k[5]): n for k, n in rec._counts.items()} == {
        ("b.test", "dnssec-invalid", "mx.b.test"): 1
    }

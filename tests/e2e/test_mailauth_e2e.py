"""Two carteiro servers and the test DNS, as on the Internet: mail from A to B passes SPF, DKIM and
DMARC and says so in B's Authentication-Results; a forged sender whose domain publishes p=reject
is refused at the end of DATA; p=quarantine lands in Junk.

A serves a.test on 127.0.0.2, B serves b.test on 127.0.0.3; A publishes its real DKIM key (made by
`carteiro init`), SPF and DMARC in a dnslib server in this process. Forgeries come from 127.0.0.5.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import re
import smtplib
from collections.abc import Iterator

import authres
import pytest
from test_relay import need_addresses, pop_messages, serve_pair, submit, unverified, wait_for

from carteiro.mailauth import dkim_keys
from carteiro.mailauth.dkim import key_path, txt_record
from carteiro.testing.dns import ZoneServer
from carteiro.testing.server import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mailauth-e2e")]

A_IP, B_IP, EVIL_IP = "127.0.0.2", "127.0.0.3", "127.0.0.5"
ALICE, BOB = ("alice@a.test", "alice-pw"), ("bob@b.test", "bob-pw")
REPORTS = ("dmarc@a.test", "dmarc-pw")


def txt(name: str, value: str) -> str:
    chunks = " ".join(f'"{value[i : i + 200]}"' for i in range(0, len(value), 200))
    return f"{name}. 60 IN TXT {chunks}\n"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    need_addresses(A_IP, B_IP, EVIL_IP)
    root = tmp_path_factory.mktemp("mailauth")
    dns_port = free_port()
    b = ServerProcess(
        root / "b",
        domains=["b.test"],
        hostname="mx.b.test",
        users=dict([BOB]),
        host=B_IP,
        services=("smtp", "pop3", "imap"),
        extra_config=f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n'
        # reports every 2 s instead of daily, so the test sees one
        "[mailauth]\nignore_networks = []\ndmarc_report_interval = 2.0\n"
        "dmarc_failure_reports = true\n",
    )
    b.init()
    a = ServerProcess(
        root / "a",
        domains=["a.test"],
        hostname="mx.a.test",
        users=dict([ALICE, REPORTS]),
        host=A_IP,
        services=("smtp", "submission", "pop3"),
        extra_config=f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n'
        # A checks what B forwards back to it (B connects from loopback)
        "[mailauth]\nignore_networks = []\n"
        f"[queue]\nremote_port = {b.ports['smtp']}\nretry_schedule = [1.0, 1.0, 2.0]\n",
    )
    a.init()
    # B's reports to a.test go to A's MX port (the test's servers do not listen on 25)
    with (b.data / "carteiro.toml").open("a") as f:
        f.write(f'[transport]\n"a.test" = "{A_IP}:{a.ports["smtp"]}"\n')
    # a forwarding alias at B: what reaches it goes back to alice at A, ARC-sealed by B
    b.cli("alias", "add", "fwd@b.test", ALICE[0])
    # every key A and B sign with: `carteiro init` made an RSA and an Ed25519 one each
    dkim_zone = "".join(
        txt(f"{e.selector}._domainkey.{dom}", txt_record(key_path(srv.data, dom, e.selector)))
        for srv, dom in ((a, "a.test"), (b, "b.test"))
        for e in dkim_keys.entries(srv.data, dom, "carteiro")
    )
    # A's mail leaves from whichever loopback address the kernel picks: both are A's
    zone = (
        f"""
a.test.      60 IN MX 10 mx.a.test.
mx.a.test.   60 IN A {A_IP}
b.test.      60 IN MX 10 mx.b.test.
mx.b.test.   60 IN A {B_IP}
a.test.      60 IN TXT "v=spf1 ip4:127.0.0.1 ip4:{A_IP} -all"
_dmarc.a.test. 60 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@a.test"
bank.test.   60 IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.bank.test. 60 IN TXT "v=DMARC1; p=reject"
shop.test.   60 IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.shop.test. 60 IN TXT "v=DMARC1; p=quarantine; ruf=mailto:dmarc@a.test"
shop.test._report._dmarc.a.test. 60 IN TXT "v=DMARC1"
1.0.0.127.in-addr.arpa. 60 IN PTR out.a.test.
out.a.test.  60 IN A 127.0.0.1
2.0.0.127.in-addr.arpa. 60 IN PTR mx.a.test.
"""
        + dkim_zone
    )
    dns = ZoneServer(zone, port=dns_port).start()
    yield from serve_pair(a, b, dns.stop)


def results_of(msg: email.message.Message, authserv_id: str) -> dict[str, list[str]]:
    fields = msg.get_all("Authentication-Results") or []
    # the authserv-id is what comes before the first ";" (another's field may name our host)
    (ours,) = [v for v in fields if str(v).split(";")[0].strip() == authserv_id]
    parsed = authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + " ".join(str(ours).split())
    )
    assert parsed.authserv_id == authserv_id
    out: dict[str, list[str]] = {}
    for r in parsed.results:
        out.setdefault(r.method, []).append(r.result)
    return out


def test_a_to_b_passes_spf_dkim_dmarc(net: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = net
    submit(a, [BOB[0]], "authenticated hello")
    wait_for(
        lambda: any(m["Subject"] == "authenticated hello" for m in pop_messages(b, *BOB)),
        what="bob's copy",
    )
    (msg,) = [m for m in pop_messages(b, *BOB) if m["Subject"] == "authenticated hello"]
    got = results_of(msg, "mx.b.test")
    # both of A's signatures (RSA and Ed25519) verify
    assert got["spf"] == ["pass"] and got["dkim"] == ["pass", "pass"], got
    assert got["dmarc"] == ["pass"], got
    assert got["iprev"][0] in ("pass", "fail")  # depends on the source address the kernel picked
    # A greets as mx.a.test (A 127.0.0.2): confirmed when the kernel picked that address
    assert got["x-helo"][0] in ("pass", "fail"), got
    assert "smtp.helo=mx.a.test" in " ".join(str(msg["Authentication-Results"]).split())
    assert "header.d=a.test" in str(msg["Authentication-Results"])


def forge(b: ServerProcess, author: str, extra: str = "") -> None:
    text = (
        f"{extra}From: <{author}>\r\nTo: <{BOB[0]}>\r\nSubject: forged {author}\r\n"
        f"Message-ID: <forged.{author}>\r\n\r\nPay this invoice.\r\n"
    )
    with smtplib.SMTP(b.host, b.ports["smtp"], timeout=30, source_address=(EVIL_IP, 0)) as s:
        s.ehlo("mx.evil.test")
        s.sendmail(author, [BOB[0]], text.encode())


def test_forged_p_reject_is_refused(net: tuple[ServerProcess, ServerProcess]) -> None:
    _a, b = net
    with pytest.raises(smtplib.SMTPDataError) as e:
        forge(b, "ceo@bank.test")
    assert e.value.smtp_code == 550 and b"5.7.1" in e.value.smtp_error


def test_forged_p_quarantine_lands_in_junk(net: tuple[ServerProcess, ServerProcess]) -> None:
    _a, b = net
    forged = "Authentication-Results: mx.b.test; dmarc=pass header.from=shop.test\r\n"
    forge(b, "sales@shop.test", forged)
    inbox = [str(m["Subject"]) for m in pop_messages(b, *BOB)]
    assert "forged sales@shop.test" not in inbox
    imap = imaplib.IMAP4(b.host, b.ports["imap"], timeout=30)
    try:
        imap.starttls(unverified())
        imap.login(*BOB)
        typ, _ = imap.select("Junk", readonly=True)
        assert typ == "OK"
        _typ, data = imap.search(None, "SUBJECT", '"forged sales@shop.test"')
        (num,) = data[0].split()
        _typ, fetched = imap.fetch(num, "(BODY.PEEK[HEADER])")
        raw = fetched[0][1]
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    finally:
        imap.logout()
    got = results_of(msg, "mx.b.test")  # one field of ours: the forged pass is gone
    assert got["dmarc"] == ["fail"] and got["spf"] == ["fail"], got


def test_b_sends_a_failure_report_for_a_forgery(net: tuple[ServerProcess, ServerProcess]) -> None:
    """RFC 7489 7.3: shop.test asks for failure reports (ruf=) at a.test, which accepts them
    for it (7.1); B, configured to send them, reports the forgery it quarantined."""
    a, b = net
    forge(b, "billing@shop.test")

    def reports() -> list[email.message.Message]:
        return [
            m
            for m in pop_messages(a, *REPORTS)
            if m.get_content_type() == "multipart/report" and "billing@shop.test" in m.as_string()
        ]

    wait_for(lambda: bool(reports()), what="B's failure report in A's mailbox")
    report = reports()[0]
    assert report.get_param("report-type") == "feedback-report"
    text = report.as_string()
    assert "Feedback-Type: auth-failure" in text and "Auth-Failure: dmarc" in text
    assert "Source-IP: 127.0.0.5" in text and "Delivery-Result: spam" in text
    assert "Subject: forged billing@shop.test" in text and "Pay this invoice" not in text


def test_b_reports_to_a_and_dmarc_report_reads_it(net: tuple[ServerProcess, ServerProcess]) -> None:
    a, _b = net
    submit(a, [BOB[0]], "for the report")  # B records the result for a.test's rua=

    def summary() -> str:
        out = a.cli("dmarc", "report", "--account", REPORTS[0]).stdout
        return out if "a.test: mx.b.test" in out else ""

    wait_for(lambda: bool(summary()), what="B's aggregate report in A's mailbox")
    out = summary()
    assert "pass DMARC, 0 fail" in out, out
    again = a.cli("dmarc", "report", "--account", REPORTS[0]).stdout

    def counts(text: str) -> tuple[int, int]:
        m = re.search(r"(\d+) reports? in .*\((\d+) new\)", text)
        assert m, text
        return int(m[1]), int(m[2])

    # what was read once is not new again (B may have sent its next period's report meanwhile)
    (seen, _), (total, new) = counts(out), counts(again)
    assert new == total - seen, (out, again)


def test_forward_through_b_keeps_arc(net: tuple[ServerProcess, ServerProcess]) -> None:
    a, _b = net
    submit(a, ["fwd@b.test"], "round trip")
    wait_for(
        lambda: any(m["Subject"] == "round trip" for m in pop_messages(a, *ALICE)),
        what="the forwarded copy back at A",
    )
    (msg,) = [m for m in pop_messages(a, *ALICE) if m["Subject"] == "round trip"]
    assert "d=b.test" in str(msg["ARC-Seal"]) and "i=1" in str(msg["ARC-Seal"])
    assert "mx.b.test" in str(msg["ARC-Authentication-Results"])
    got = results_of(msg, "mx.a.test")
    assert got["arc"] == ["pass"], got
    assert "pass" in got["dkim"] and got["dmarc"] == ["pass"], got

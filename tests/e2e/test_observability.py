"""Metrics, logs and health of a running server, checked against what the test itself did.

One server, real clients (smtplib, imaplib, poplib), a remote MTA played by aiosmtpd: every count
scraped from /metrics is the number of things this test caused; every JSON log line of a message
carries the queue id that ties its transaction to its delivery attempts; no password is logged.
"""

from __future__ import annotations

import base64
import imaplib
import json
import poplib
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prometheus_client.parser import text_string_to_metric_families

from carteiro.testing.server import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("observability-e2e")]

PASSWORD = "alice-s3cret-pw"
WRONG = "wrong-guess-pw"


class Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 2.0.0 OK sink"


def unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield handler, port
    finally:
        ctl.stop()


def test_metrics_logs_and_health_match_what_happened(tmp_path: Any, sink: tuple[Sink, int]) -> None:
    handler, sink_port = sink
    srv = ServerProcess(
        tmp_path,
        services=("smtp", "submission", "imap", "pop3", "metrics"),
        users={"alice@example.test": PASSWORD},
        trace=["smtp", "imap", "pop3"],
        extra_config=(
            f'[transport]\n"b.test" = "127.0.0.1:{sink_port}"\n'
            '[log]\nformat = "json"\n'
            "[imap]\nallow_plaintext_auth = true\n[pop3]\nallow_plaintext_auth = true\n"
        ),
    )
    with srv:
        mport = srv.ports["metrics"]
        # the start-up probes (ServerProcess connects to each port) are counted: a baseline
        before = scrape(mport)
        # 1. the MX role: a stranger's message for a local account
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
            s.sendmail(
                "carol@ext.test",
                ["alice@example.test"],
                b"From: carol@ext.test\r\nSubject: local\r\n\r\nhello\r\n",
            )
        # 2. submission: STARTTLS, a wrong password, the right one, mail for a remote domain
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as s:
            s.starttls(context=unverified())
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.login("alice@example.test", WRONG)
            s.login("alice@example.test", PASSWORD)
            s.sendmail(
                "alice@example.test",
                ["bob@b.test"],
                b"From: alice@example.test\r\nSubject: remote\r\n\r\nhi bob\r\n",
            )
        # 3. IMAP and POP3 sessions reading the local message
        imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
        imap.login("alice@example.test", PASSWORD)
        imap.select("INBOX")
        imap.fetch("1", "(FLAGS)")
        imap.logout()
        pop = poplib.POP3("127.0.0.1", srv.ports["pop3"])
        pop.user("alice@example.test")
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == 1
        pop.quit()

        wait_for(lambda: len(handler.messages) == 1, "the remote delivery")
        wait_for(
            lambda: (
                value(scrape(mport), "carteiro_deliveries_total", status="sent", route="remote")
                == 1
            ),
            "the queue to record the delivery",
        )
        after = scrape(mport)
        m = {k: v - before.get(k, 0.0) for k, v in after.items()}
        assert value(m, "carteiro_messages_received_total", service="smtp") == 1
        assert value(m, "carteiro_messages_received_total", service="submission") == 1
        assert value(m, "carteiro_deliveries_total", status="sent", route="local") == 1
        assert value(m, "carteiro_deliveries_total", status="deferred", route="remote") == 0
        assert value(m, "carteiro_delivery_seconds_count", route="local") == 1
        assert value(m, "carteiro_delivery_seconds_count", route="remote") == 1
        assert value(m, "carteiro_store_commit_seconds_count") == 1
        assert value(m, "carteiro_store_commits_total") >= 1
        # smtplib tries the next mechanism after a 535: PLAIN, then LOGIN, both wrong
        assert value(m, "carteiro_auth_failures_total", protocol="smtp") == 2
        assert value(m, "carteiro_auth_failures_total", protocol="imap") == 0
        for proto, service in (
            ("smtp", "smtp"),
            ("smtp", "submission"),
            ("imap", "imap"),
            ("pop3", "pop3"),
        ):
            assert value(m, "carteiro_connections_total", protocol=proto, service=service) == 1
        assert value(m, "carteiro_tls_connections_total", protocol="smtp", version="TLSv1.3") == 1
        assert value(m, "carteiro_replies_total", protocol="smtp", code="535") == 2
        assert value(m, "carteiro_replies_total", protocol="smtp", code="235") == 1
        assert value(m, "carteiro_replies_total", protocol="smtp", code="354") == 2
        assert value(m, "carteiro_replies_total", protocol="smtp", code="220") == 3  # 2 + STARTTLS
        assert value(m, "carteiro_commands_total", protocol="smtp", command="STARTTLS") == 1
        assert value(m, "carteiro_commands_total", protocol="smtp", command="MAIL") == 2
        assert value(m, "carteiro_commands_total", protocol="imap", command="SELECT") == 1
        assert value(m, "carteiro_commands_total", protocol="imap", command="LOGIN") == 1
        assert value(m, "carteiro_replies_total", protocol="imap", code="NO") == 0
        assert value(m, "carteiro_commands_total", protocol="pop3", command="STAT") == 1
        assert value(m, "carteiro_replies_total", protocol="pop3", code="-ERR") == 0
        assert value(after, "carteiro_queue_messages") == 0
        assert value(after, "carteiro_connections_active", service="imap") == 0

        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/healthz", timeout=10) as r:
            health = json.loads(r.read())
        assert health["ok"] is True and health["problems"] == []
        assert health["store"]["answering"] is True
        assert health["listeners"]["smtp"]["serving"] is True
        assert health["certificate"]["days_left"] > 100
        r = srv.cli("status", check=False)
        assert r.returncode == 0, r.stdout
        assert r.stdout.startswith(f"server: running (pid {srv.proc.pid}")  # type: ignore[union-attr]
        assert f"smtp         127.0.0.1:{srv.ports['smtp']}" in r.stdout
        assert "NOT ACCEPTING" not in r.stdout and "queue: 0 messages" in r.stdout
        assert "certificate: mail.example.test" in r.stdout
        status = json.loads(srv.cli("status", "--json").stdout)
        assert status["health"]["ok"] is True
        assert set(status["listeners"]) == {"smtp", "submission", "imap", "pop3", "metrics"}
        with pytest.raises(urllib.error.HTTPError) as nf:
            urllib.request.urlopen(f"http://127.0.0.1:{mport}/nothing", timeout=10)
        assert nf.value.code == 404

    r = srv.cli("status", check=False)
    assert r.returncode == 3 and r.stdout.startswith("server: not running")
    lines = [json.loads(x) for x in srv.log().splitlines() if x.startswith("{")]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)
    accepted = [x for x in lines if x.get("event") == "smtp.accepted"]
    assert [(x["service"], x["nrcpt"], x["local"]) for x in accepted] == [
        ("smtp", 1, 1),
        ("submission", 1, 0),
    ]
    assert accepted[0]["queue_id"] == "" and accepted[0]["from"] == "carol@ext.test"
    assert accepted[1]["auth"] == "alice@example.test" and accepted[1]["tls"] == "TLSv1.3"
    qid = accepted[1]["queue_id"]
    assert qid and f"queued as {qid}" in accepted[1]["msg"]
    attempts = [x for x in lines if x.get("event") == "queue.attempt"]
    assert [(x["queue_id"], x["to"], x["status"]) for x in attempts] == [
        (qid, "bob@b.test", "sent")
    ]
    assert attempts[0]["relay"].endswith(f":{sink_port}") or "127.0.0.1" in attempts[0]["relay"]
    # secrets: never, in any form, though every session was traced
    raw = srv.log()
    assert "C: " in raw  # the transcripts were on
    for secret in (PASSWORD, WRONG):
        assert secret not in raw
        for user in ("alice@example.test", ""):
            b64 = base64.b64encode(f"\0{user}\0{secret}".encode()).decode()
            assert b64 not in raw
        assert base64.b64encode(secret.encode()).decode() not in raw

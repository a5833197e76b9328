"""carteiro fetching from a real Dovecot (a private instance) over POP3 and IMAP, fetchmail's role:
keep and delete, new mail picked up at the next poll, a restart fetching nothing twice, and a
server killed (SIGKILL) in the middle of a big fetch and restarted: every message exactly once."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.testing import dovecot
from carteiro.testing.server import ServerProcess, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fetch-e2e")]

ALICE = "alice@example.test"  # fetches alice.isp over POP3, deleting
BOB = "bob@example.test"  # fetches bob.isp over IMAP, keeping


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def subjects(s: ServerProcess, account: str) -> list[str]:
    async def read() -> list[str]:
        store = SqliteMaildirStore(s.data)
        try:
            acct = await store.account(account)
            box = await acct.get_mailbox("INBOX")
            out = []
            for m in await acct.list_messages(box.id):
                data = await acct.read_message(box.id, m.uid)
                out.append(data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode())
            return out
        finally:
            await store.close()

    return asyncio.run(read())


def msg(subject: str) -> bytes:
    return (
        f"Return-Path: <sender@isp.test>\r\nFrom: sender@isp.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@isp.test>\r\n\r\nbody of {subject}\r\n"
    ).encode()


@pytest.fixture
def dc(tmp_path: Path):  # type: ignore[no-untyped-def]
    reason = dovecot.available()
    if reason is not None:
        pytest.skip(reason)
    with dovecot.DovecotInstance(tmp_path, {"alice.isp": "a-secret", "bob.isp": "b-secret"}) as d:
        yield d


def make_server(
    tmp_path: Path,
    d: dovecot.DovecotInstance,
    interval: str = "1s",
    imap_interval: str = "1s",
    imap_keep: bool = True,
) -> ServerProcess:
    s = ServerProcess(tmp_path, users={ALICE: "pw", BOB: "pw"}, services=("smtp",))
    s.extra_config = f"""
[[fetch]]
account = "{ALICE}"
server = "127.0.0.1:{d.pop3_port}"
protocol = "pop3"
tls = "none"
user = "alice.isp"
password_file = "secrets/alice-isp"
keep = false
interval = "{interval}"

[[fetch]]
account = "{BOB}"
server = "127.0.0.1:{d.imap_port}"
protocol = "imap"
tls = "none"
user = "bob.isp"
password_file = "secrets/bob-isp"
folders = ["INBOX"]
keep = {"true" if imap_keep else "false"}
interval = "{imap_interval}"
"""
    s.init()
    (s.data / "secrets").mkdir(mode=0o700)
    (s.data / "secrets" / "alice-isp").write_text("a-secret\n")
    (s.data / "secrets" / "bob-isp").write_text("b-secret\n")
    return s


def status(s: ServerProcess) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(run_cli(s.data, "fetch", "status", "--json").stdout)
    return out


def test_pop3_delete_and_imap_keep_and_restart(tmp_path: Path, dc: dovecot.DovecotInstance) -> None:
    for i in range(3):
        dc.deliver("alice.isp", msg(f"a{i}"))
        dc.deliver("bob.isp", msg(f"b{i}"))
    s = make_server(tmp_path, dc)
    with s:
        wait_for(lambda: len(subjects(s, ALICE)) == 3, what="POP3 fetch")
        wait_for(lambda: len(subjects(s, BOB)) == 3, what="IMAP fetch")
        wait_for(lambda: dc.count("alice.isp") == 0, what="POP3 deletions")
        assert dc.count("bob.isp") == 3  # keep = true
        dc.deliver("alice.isp", msg("a3"))
        dc.deliver("bob.isp", msg("b3"))
        wait_for(lambda: len(subjects(s, ALICE)) == 4 and len(subjects(s, BOB)) == 4)
        rows = {r["account"]: r for r in status(s)}
        assert rows[ALICE]["fetched"] == 4 and rows[BOB]["fetched"] == 4
        assert rows[ALICE]["failures"] == 0 and rows[ALICE]["last_ok"]
    with s:  # a restart fetches nothing twice (bob's are all still on the server)
        polls = {r["account"]: r["last_poll"] for r in status(s)}
        wait_for(
            lambda: all(r["last_poll"] != polls[r["account"]] for r in status(s)),
            what="a poll after the restart",
        )
        assert sorted(subjects(s, BOB)) == ["b0", "b1", "b2", "b3"]
        assert sorted(subjects(s, ALICE)) == ["a0", "a1", "a2", "a3"]
        # fetched mail carries our Received: for the hop
        text = run_cli(s.data, "fetch", "status").stdout
        assert f"{ALICE}  <-  pop3://127.0.0.1:{dc.pop3_port}" in text


def test_wrong_password_backs_off_and_shows(tmp_path: Path, dc: dovecot.DovecotInstance) -> None:
    s = make_server(tmp_path, dc)
    (s.data / "secrets" / "alice-isp").write_text("wrong\n")
    with s:
        wait_for(
            lambda: any(r["failures"] for r in status(s) if r["account"] == ALICE),
            what="the failure to show",
        )
        (row,) = [r for r in status(s) if r["account"] == ALICE]
        assert "login" in str(row["last_error"]).lower()
        assert run_cli(s.data, "fetch", "status", check=False).returncode == 1


def test_killed_mid_fetch_then_restarted_each_message_once(
    tmp_path: Path, dc: dovecot.DovecotInstance
) -> None:
    total = 120
    for i in range(total):
        dc.deliver("alice.isp", msg(f"m{i:03d}"))
        dc.deliver("bob.isp", msg(f"n{i:03d}"))
    s = make_server(tmp_path, dc)
    s.start()
    try:
        wait_for(lambda: len(subjects(s, ALICE)) >= 15, what="part of the fetch")
        s.kill()  # SIGKILL in the middle: some delivered, some marked, none deleted yet
        got_before = len(subjects(s, ALICE))
        assert got_before < total, "the fetch finished before the kill: make it bigger"
        s.start()
        wait_for(lambda: len(subjects(s, ALICE)) >= total, timeout=120, what="the rest")
        wait_for(lambda: len(subjects(s, BOB)) >= total, timeout=120, what="bob's")
        wait_for(lambda: dc.count("alice.isp") == 0, what="POP3 deletions after the restart")
        for account, prefix in ((ALICE, "m"), (BOB, "n")):
            counts = Counter(subjects(s, account))
            assert counts == Counter(f"{prefix}{i:03d}" for i in range(total)), account
    finally:
        s.stop()


def test_imap_idle_brings_new_mail_without_waiting_for_the_interval(
    tmp_path: Path, dc: dovecot.DovecotInstance
) -> None:
    dc.deliver("bob.isp", msg("first"))
    s = make_server(tmp_path, dc, imap_interval="10m")
    with s:
        wait_for(lambda: subjects(s, BOB) == ["first"], what="the first poll")
        wait_for(
            lambda: any(r["idle"] for r in status(s) if r["account"] == BOB),
            what="IDLE to start",
        )
        dc.deliver("bob.isp", msg("second"))
        # well before the 10 minutes of the interval: Dovecot's IDLE said EXISTS
        wait_for(lambda: len(subjects(s, BOB)) == 2, timeout=30, what="delivery through IDLE")


def test_tls_implicit_and_starttls_with_certificate_checks(tmp_path: Path) -> None:
    reason = dovecot.available()
    if reason is not None:
        pytest.skip(reason)
    with dovecot.DovecotInstance(
        tmp_path, {"alice.isp": "a-secret", "bob.isp": "b-secret"}, tls=True
    ) as d:
        d.deliver("alice.isp", msg("over pop3s"))
        d.deliver("bob.isp", msg("over imap starttls"))
        s = ServerProcess(tmp_path, users={ALICE: "pw", BOB: "pw"}, services=("smtp",))
        s.extra_config = f"""
[[fetch]]
account = "{ALICE}"
server = "localhost:{d.pop3s_port}"
protocol = "pop3"
tls = "implicit"
user = "alice.isp"
password_file = "secrets/alice-isp"
tls_cafile = "isp-ca.pem"
interval = "1s"

[[fetch]]
account = "{BOB}"
server = "127.0.0.1:{d.imap_port}"
protocol = "imap"
tls = "starttls"
user = "bob.isp"
password_file = "secrets/bob-isp"
interval = "1s"
"""
        s.init()
        (s.data / "secrets").mkdir(mode=0o700)
        (s.data / "secrets" / "alice-isp").write_text("a-secret\n")
        (s.data / "secrets" / "bob-isp").write_text("b-secret\n")
        (s.data / "isp-ca.pem").write_bytes(d.cert_path.read_bytes())
        with s:
            wait_for(lambda: subjects(s, ALICE) == ["over pop3s"], what="POP3 over TLS")
            # bob's entry trusts only the system CAs: the private certificate is refused
            wait_for(
                lambda: any(r["failures"] for r in status(s) if r["account"] == BOB),
                what="the certificate failure",
            )
            (row,) = [r for r in status(s) if r["account"] == BOB]
            assert "certificate" in str(row["last_error"]).lower()
            assert subjects(s, BOB) == []


def test_imap_delete(tmp_path: Path, dc: dovecot.DovecotInstance) -> None:
    for i in range(3):
        dc.deliver("bob.isp", msg(f"d{i}"))
    s = make_server(tmp_path, dc, imap_keep=False)
    with s:
        wait_for(lambda: sorted(subjects(s, BOB)) == ["d0", "d1", "d2"], what="IMAP fetch")
        wait_for(lambda: dc.count("bob.isp") == 0, what="UID EXPUNGE on the server")
        dc.deliver("bob.isp", msg("d3"))
        wait_for(lambda: len(subjects(s, BOB)) == 4, what="the next one")
        wait_for(lambda: dc.count("bob.isp") == 0, what="it expunged too")

"""Three more real clients against `carteiro serve`: msmtp (the SMTP submission client of
scripts, cron and mutt set-ups), mpop (its POP3 fetcher: UIDL tracking, keep and delete) and
imapfilter (Lua IMAP filtering: hierarchical CREATE, searches combined with OR and AND, flags,
MOVE, COPY, delete and expunge, header fetches, IDLE). Each checked by its effect."""

from __future__ import annotations

import imaplib
import os
import shutil
import ssl
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("msmtp-e2e")]

ALICE, ALICE_PW = "alice@example.test", "alice-password"
BOB, BOB_PW = "bob@example.test", "bob-password"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    missing = [c for c in ("msmtp", "mpop", "imapfilter") if shutil.which(c) is None]
    if missing:
        pytest.skip(f"not installed: {' '.join(missing)} (make apt-test)")
    with ServerProcess(tmp_path_factory.mktemp("msmtp"), users={ALICE: ALICE_PW, BOB: BOB_PW}) as s:
        yield s


def _rc(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)  # both refuse a configuration others can read
    return path


def msmtprc(srv: ServerProcess, tmp: Path, user: str, password: str) -> Path:
    p = srv.ports
    return _rc(
        tmp / "msmtprc",
        f"""
        defaults
        auth on
        tls on
        tls_certcheck off
        host 127.0.0.1
        user {user}
        password {password}
        from {user}
        account submission
        port {p["submission"]}
        tls_starttls on
        account submissions
        port {p["submissions"]}
        tls_starttls off
        """,
    )


def send(
    rc: Path, account: str, to: str, subject: str, sender: str
) -> subprocess.CompletedProcess[str]:
    msg = f"From: {sender}\nTo: {to}\nSubject: {subject}\n\nhello\n.a line with a dot\n"
    return subprocess.run(
        ["msmtp", "-C", str(rc), "-a", account, to],
        input=msg,
        capture_output=True,
        text=True,
        timeout=60,
    )


def inbox_count(srv: ServerProcess, account: str, password: str) -> int:
    with imaplib.IMAP4("127.0.0.1", srv.ports["imap"]) as c:
        c.starttls(ssl._create_unverified_context())
        c.login(account, password)
        _typ, data = c.select("INBOX", readonly=True)
        return int(data[0] or 0)


def wait_count(srv: ServerProcess, account: str, password: str, n: int) -> int:
    deadline = time.monotonic() + 15
    while (got := inbox_count(srv, account, password)) != n and time.monotonic() < deadline:
        time.sleep(0.2)
    return got


def test_msmtp_then_mpop(srv: ServerProcess, tmp_path: Path) -> None:
    rc = msmtprc(srv, tmp_path, ALICE, ALICE_PW)
    for account in ("submission", "submissions"):
        for i in range(2):
            r = send(rc, account, BOB, f"{account} {i}", ALICE)
            assert r.returncode == 0, r.stderr
    # a From: that is not the sender's: refused, and msmtp says why (sysexits EX_UNAVAILABLE)
    r = send(rc, "submission", BOB, "forged", BOB)
    assert r.returncode == 69 and "550 5.7.1" in r.stderr, r.stderr
    bad = msmtprc(srv, tmp_path, ALICE, "wrong")
    r = send(bad, "submission", BOB, "x", ALICE)
    assert r.returncode != 0 and "535" in r.stderr, r.stderr
    assert wait_count(srv, BOB, BOB_PW, 4) == 4

    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    p = srv.ports
    mrc = _rc(
        tmp_path / "mpoprc",
        f"""
        defaults
        tls on
        tls_certcheck off
        host 127.0.0.1
        user {BOB}
        password {BOB_PW}
        uidls_file {tmp_path}/uidls
        delivery maildir {maildir}
        account keep
        port {p["pop3"]}
        tls_starttls on
        keep on
        account take
        port {p["pop3s"]}
        tls_starttls off
        keep off
        only_new off
        """,
    )

    def mpop(account: str) -> str:
        r = subprocess.run(
            ["mpop", "-C", str(mrc), "-q", account], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    mpop("keep")
    got = sorted(os.listdir(maildir / "new"))
    assert len(got) == 4
    texts = [(maildir / "new" / n).read_text() for n in got]
    assert all(t.endswith("hello\n.a line with a dot\n") for t in texts), texts
    assert sorted(t.split("Subject: ")[1].split("\n")[0] for t in texts) == [
        "submission 0",
        "submission 1",
        "submissions 0",
        "submissions 1",
    ]
    mpop("keep")  # UIDL: nothing new
    assert len(os.listdir(maildir / "new")) == 4
    assert inbox_count(srv, BOB, BOB_PW) == 4  # kept on the server
    mpop("take")  # all of them again, deleted on the server this time
    assert len(os.listdir(maildir / "new")) == 8
    assert wait_count(srv, BOB, BOB_PW, 0) == 0


def test_imapfilter(srv: ServerProcess, tmp_path: Path) -> None:
    rc = msmtprc(srv, tmp_path, ALICE, ALICE_PW)
    for i in range(3):
        assert send(rc, "submission", ALICE, f"report {i}", ALICE).returncode == 0
    for i in range(2):
        assert send(rc, "submissions", ALICE, f"invoice {i}", ALICE).returncode == 0
    assert wait_count(srv, ALICE, ALICE_PW, 5) == 5
    config = _rc(
        tmp_path / "config.lua",
        f"""
        options.timeout = 30
        options.certificates = false
        options.hostnames = false
        options.cafile = '{srv.data}/tls/cert.pem'
        options.expunge = true
        acc = IMAP {{ server = '127.0.0.1', port = {srv.ports["imaps"]},
                      username = '{ALICE}', password = '{ALICE_PW}', ssl = 'auto' }}
        local exist, recent, unseen, uidnext = acc.INBOX:check_status()
        print('status', exist, unseen, uidnext)
        acc:create_mailbox('Archive/2026')
        local boxes = acc:list_all('', '*')
        print('boxes', table.concat(boxes, ','))
        acc.INBOX:contain_subject('report'):mark_flagged()
        print('flagged', #acc.INBOX:is_flagged())
        print('or', #(acc.INBOX:contain_subject('report 1') + acc.INBOX:contain_subject('invoice')))
        local both = acc.INBOX:contain_body('hello') * acc.INBOX:is_flagged()
        print('and', #both)
        both:move_messages(acc['Archive/2026'])
        print('moved', #acc.INBOX:select_all(), #acc['Archive/2026']:select_all())
        acc['Archive/2026']:contain_subject('report 2'):copy_messages(acc.INBOX)
        print('copied', #acc.INBOX:select_all())
        acc.INBOX:contain_field('Subject', 'invoice 1'):delete_messages()
        for _, m in ipairs(acc.INBOX:select_all()) do
            local box, uid = table.unpack(m)
            print('message', uid, box[uid]:fetch_field('subject'), box[uid]:fetch_size())
        end
        print('small', #(acc.INBOX:is_smaller(100000) * acc.INBOX:is_newer(1)))
        acc.INBOX:select_all():mark_seen()
        print('unseen', #acc.INBOX:is_unseen())
        acc.INBOX:check_status()
        io.stdout:flush()
        print('idle', tostring(acc.INBOX:enter_idle()))
        print('after idle', #acc.INBOX:contain_subject('late'))
        """,
    )
    # a message while imapfilter waits in IDLE (sent once it is there: see below)
    late = threading.Timer(3.0, lambda: send(rc, "submission", ALICE, "late", ALICE))
    late.start()
    try:
        r = subprocess.run(
            ["imapfilter", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": str(tmp_path)},
        )
    finally:
        late.join()
    assert r.returncode == 0, r.stderr
    lines = [line.split("\t") for line in r.stdout.splitlines() if "\t" in line]
    said = {fields[0]: fields[1:] for fields in lines if fields[0] != "message"}
    assert said["status"] == ["5", "5", "6"]
    assert said["boxes"][0].split(",")[:3] == ["INBOX", "Archive", "Archive/2026"]
    assert said["flagged"] == ["3"]
    assert said["or"] == ["3"]
    assert said["and"] == ["3"]
    assert said["moved"] == ["2", "3"]
    assert said["copied"] == ["3"]
    messages = [fields[1:] for fields in lines if fields[0] == "message"]
    assert [m[1] for m in messages] == ["Subject: invoice 0", "Subject: report 2"]
    assert messages[1][0] == "6"  # COPY gave the copy the next UID (UIDPLUS)
    assert said["small"] == ["2"]
    assert said["unseen"] == ["0"]
    assert said["idle"] == ["true"]  # the server's EXISTS ended the IDLE
    assert said["after idle"] == ["1"]

"""Moving an account between carteiro and Dovecot (a private instance) with the tools people use:
- off carteiro, Dovecot's own migration tool `doveadm backup -R imapc:` (dsync through Dovecot's
  IMAP client) copies every folder, message, flag, keyword and internal date; run again after
  changes on carteiro, it brings only those;
- onto carteiro, mbsync with Dovecot as the far store and carteiro as the near one (IMAP to IMAP,
  as imapsync would): every folder, message, standard flag and internal date.

imapc is one of the most demanding IMAP clients there is (pipelined UID FETCH of headers and
bodies, STATUS, LIST-EXTENDED, ENABLE, MODSEQ, STARTTLS); what it reads back through Dovecot's
own IMAP server must be what carteiro holds, octet for octet."""

from __future__ import annotations

import email.utils
import imaplib
import os
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from carteiro.testing import dovecot
from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dovecot-e2e")]

ALICE = "alice@example.test"
# Dovecot's Maildir++ layout keeps "." for itself: folder names here avoid it
FOLDERS = ["Work", "Work/Deep", "Stra&AN8-e", "Sent"]
FLAGS = ["(\\Seen)", "(\\Flagged $Important)", "()", "(\\Answered \\Seen custom1)"]
DATES = ['"01-Feb-2024 12:00:00 +0300"', '"29-Feb-2024 23:59:59 -0800"', None]


def message(i: int) -> bytes:
    head = (
        f"From: Bob {i} <bob{i}@example.org>\r\nTo: alice@example.test\r\n"
        f"Subject: =?utf-8?q?message_{i}_=C3=A9?=\r\nMessage-ID: <m{i}@example.org>\r\n"
        f"Date: Mon, 1 Jan 2024 10:{i % 60:02d}:00 +0200\r\nMIME-Version: 1.0\r\n"
    )
    if i % 5 == 4:  # an attachment
        return (
            head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "caf\u00e9\r\n--b\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" + "QUJD" * 200 + "\r\n--b--\r\n"
        ).encode()
    return (head + f"\r\nbody {i}\r\n" + "x" * (i * 97) + "\r\n").encode()


def carteiro_imap(srv: ServerProcess) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context(cafile=str(srv.data / "tls" / "cert.pem"))
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=ctx)
    m.login(ALICE, "pw")
    return m


def folders(m: imaplib.IMAP4) -> set[str]:
    typ, lines = m.list()
    assert typ == "OK"
    out = set()
    for line in lines:
        assert isinstance(line, bytes)
        name = line.rsplit(b' "/" ', 1)[1].decode()
        out.add(name.strip('"'))
    return out


def contents(m: imaplib.IMAP4, folder: str) -> list[tuple[bytes, frozenset[str], float]]:
    """Each message of `folder`: its octets, its flags (without \\Recent), its internal date as
    an instant (servers may render another zone), in Message-ID order."""
    typ, data = m.select(f'"{folder}"', readonly=True)
    assert typ == "OK", (folder, data)
    if data[0] == b"0":
        return []
    typ, items = m.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK"
    out = []
    for item in items:
        if not isinstance(item, tuple):
            continue
        meta, body = item
        flags = re.search(rb"FLAGS \(([^)]*)\)", meta)
        date = re.search(rb'INTERNALDATE "([^"]+)"', meta)
        assert flags and date, meta
        kept = frozenset(f for f in flags.group(1).decode().split() if f != "\\Recent")
        when = imaplib.Internaldate2tuple(b'INTERNALDATE "' + date.group(1) + b'"')
        assert when is not None
        out.append((body, kept, email.utils.mktime_tz((*when[:9], 0))))
    return sorted(out, key=lambda t: t[0])


def everything(m: imaplib.IMAP4) -> dict[str, list[tuple[bytes, frozenset[str], float]]]:
    return {f: contents(m, f) for f in sorted(folders(m))}


def test_doveadm_backup_through_imapc_copies_the_account(tmp_path: Path) -> None:
    reason = dovecot.available()
    if reason is not None:
        pytest.skip(reason)
    with ServerProcess(tmp_path / "c", users={ALICE: "pw"}) as srv:
        m = carteiro_imap(srv)
        for f in FOLDERS:
            m.create(f)  # Sent exists already (special-use): NO [ALREADYEXISTS], fine
        for i in range(24):
            date = DATES[i % 3]
            folder = FOLDERS[i % 4] if i % 6 else "INBOX"
            typ, data = m.append(folder, FLAGS[i % 4], date, message(i))  # type: ignore[arg-type]
            assert typ == "OK", data
        m.select("INBOX")
        m.store("1", "+FLAGS", "\\Deleted")
        m.expunge()
        before = everything(m)
        assert sum(len(v) for v in before.values()) == 23

        extra = (
            "namespace inbox {\n  prefix =\n  separator = /\n  inbox = yes\n}\n"
            f"imapc_host = 127.0.0.1\nimapc_port = {srv.ports['imap']}\n"
            f"imapc_user = {ALICE}\nimapc_password = pw\nimapc_ssl = starttls\n"
            "imapc_ssl_verify = no\nimapc_features = rfc822.size fetch-headers modseq\n"
        )
        with dovecot.DovecotInstance(tmp_path, {"alice": "pw"}, extra=extra) as dc:

            def backup() -> None:
                r = dc.doveadm("backup", "-R", "-u", "alice", "imapc:")
                assert r.returncode == 0, (r.stdout, r.stderr, dc.log())

            def dovecot_side() -> dict[str, list[tuple[bytes, frozenset[str], float]]]:
                d = imaplib.IMAP4("127.0.0.1", dc.imap_port)
                d.login("alice", "pw")
                try:
                    return everything(d)
                finally:
                    d.logout()

            backup()
            assert dovecot_side() == before

            # changes on carteiro, then an incremental run: a new message, a flag set, one
            # message expunged, a folder made
            m.select('"Work"')
            m.store("1", "+FLAGS", "(\\Seen later)")
            m.store("2", "+FLAGS", "\\Deleted")
            m.expunge()
            m.append("INBOX", "(\\Draft)", None, message(99))  # type: ignore[arg-type]
            m.create("Later")
            after = everything(m)
            assert after != before
            backup()
            assert dovecot_side() == after
        m.logout()


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync (mbsync) is not installed")
def test_mbsync_moves_an_account_from_dovecot_onto_carteiro(tmp_path: Path) -> None:
    reason = dovecot.available()
    if reason is not None:
        pytest.skip(reason)
    extra = "namespace inbox {\n  prefix =\n  separator = /\n  inbox = yes\n}\n"
    with (
        dovecot.DovecotInstance(tmp_path, {"alice": "pw"}, extra=extra) as dc,
        ServerProcess(tmp_path / "c", users={ALICE: "pw"}) as srv,
    ):
        d = imaplib.IMAP4("127.0.0.1", dc.imap_port)
        d.login("alice", "pw")
        for f in FOLDERS:
            d.create(f'"{f}"')
        standard = ["(\\Seen)", "(\\Flagged \\Answered)", "()", "(\\Draft \\Seen)"]
        for i in range(20):
            folder = FOLDERS[i % 4] if i % 5 else "INBOX"
            typ, data = d.append(f'"{folder}"', standard[i % 4], DATES[i % 3], message(i))
            assert typ == "OK", data
        source = everything(d)
        d.logout()

        cfg = tmp_path / "mbsyncrc"
        cfg.write_text(
            f"""IMAPAccount dovecot
Host 127.0.0.1
Port {dc.imap_port}
User alice
Pass pw
SSLType None
AuthMechs LOGIN

IMAPStore old
Account dovecot

IMAPAccount carteiro
Host localhost
Port {srv.ports["imaps"]}
User {ALICE}
Pass pw
SSLType IMAPS
CertificateFile {srv.data / "tls" / "cert.pem"}

IMAPStore new
Account carteiro

Channel move
Far :old:
Near :new:
Patterns INBOX Work Work/* Str* Sent
Create Near
Sync Pull
CopyArrivalDate yes
SyncState {tmp_path}/state/
"""
        )
        (tmp_path / "state").mkdir()
        run = [shutil.which("mbsync") or "mbsync", "-c", str(cfg), "-a"]
        env = {**os.environ, "HOME": str(tmp_path)}
        r = subprocess.run(run, capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        m = carteiro_imap(srv)
        got = everything(m)
        m.logout()
        # mbsync carries octets, standard flags and (CopyArrivalDate) internal dates, and adds
        # its own X-TUID line to every message it copies, to find it again after a crash
        for f, msgs in source.items():
            moved = [
                (re.sub(rb"X-TUID: [^\r]*\r\n", b"", b, count=1), fl, w) for b, fl, w in got[f]
            ]
            assert sorted(moved, key=lambda t: t[0]) == msgs, f

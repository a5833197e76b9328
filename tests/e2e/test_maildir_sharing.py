"""Issue 12, Found 5: a user reads the account's Maildir directly on the host (mutt, another
delivery agent) while IMAP clients use the server. What one does, the other sees: a flag set by a
rename is FETCHed, a later STORE keeps it, a deleted file is an EXPUNGE (not NO forever), and a
file dropped into new/ is a new message. Driven with Python's mailbox.Maildir and renames as
mutt does them, against the real `carteiro serve`."""

from __future__ import annotations

import imaplib
import mailbox
import os
import smtplib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from carteiro.testing.server import ServerProcess

T = TypeVar("T")


def _until(what: str, probe: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Poll as a client does (NOOP); a change within one clock tick of the server's last look
    is seen once that look has settled (2 s), so allow a few seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen before the deadline: {what}")
        time.sleep(0.1)


def _unsolicited(imap: imaplib.IMAP4, kind: str) -> list[bytes]:
    imap.noop()
    _typ, data = imap.response(kind)
    return [d for d in data if d is not None]


def test_a_maildir_shared_with_a_local_mail_program(tmp_path: Path) -> None:
    srv = ServerProcess(
        tmp_path,
        services=("smtp", "imap"),
        users={"alice@example.test": "pw"},
        extra_config="[imap]\nallow_plaintext_auth = true\n",
    )
    with srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
            for i in range(1, 4):
                s.sendmail(
                    "x@ext.test",
                    ["alice@example.test"],
                    f"Subject: m{i}\r\nMessage-ID: <{i}@ext.test>\r\n\r\nbody {i}\r\n".encode(),
                )
        home = srv.data / "mail" / "example.test" / "alice" / "Maildir"
        cur = home / "cur"
        _until("three files", lambda: len(os.listdir(cur)) == 3 or None)
        # LF line ends on disk, as mutt expects (no ^M)
        for name in os.listdir(cur):
            assert b"\r" not in (cur / name).read_bytes()
        imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
        imap.login("alice@example.test", "pw")
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data == [b"3"]

        def file_of(uid: int) -> str:
            return next(n for n in os.listdir(cur) if f",U={uid}:2," in n)

        # mutt flags message 2: renames its file to ...:2,F
        name = file_of(2)
        os.rename(cur / name, cur / (name.rpartition(":2,")[0] + ":2,F"))
        fetched = _until(
            "the \\Flagged set by mutt, as an unsolicited FETCH",
            lambda: [f for f in _unsolicited(imap, "FETCH") if b"\\Flagged" in f],
        )
        assert fetched[0].startswith(b"2 (")
        typ, data = imap.fetch("2", "(FLAGS)")
        assert typ == "OK" and b"\\Flagged" in data[0]

        # a later STORE from IMAP keeps mutt's flag, in the index and in the file name
        typ, data = imap.store("2", "+FLAGS", "(\\Seen)")
        assert typ == "OK" and b"\\Flagged" in data[0] and b"\\Seen" in data[0]
        md = mailbox.Maildir(home, factory=None, create=False)
        _until(
            "the file name carries F and S",
            lambda: any(md.get_message(k).get_flags() == "FS" for k in md.iterkeys()) or None,
        )

        # mutt deletes message 1: the FETCH that meets it may say NO once, then EXPUNGE comes
        key1 = next(k for k in md.iterkeys() if k.endswith(",U=1"))
        md.remove(key1)
        typ, _data = imap.fetch("1:*", "(BODY.PEEK[])")  # the read finds the file gone
        assert typ in ("OK", "NO")  # NO [EXPUNGEISSUED] for the one message, once
        imap.untagged_responses.pop("FETCH", None)  # (imaplib keeps a NO's data)
        expunged = _until("EXPUNGE 1", lambda: _unsolicited(imap, "EXPUNGE"))
        assert expunged == [b"1"]
        typ, data = imap.fetch("1:*", "(UID BODY.PEEK[])")
        assert typ == "OK"
        assert [d[0].split()[2] for d in data if isinstance(d, tuple)] == [b"2", b"3"]

        # another delivery agent drops a message into new/, LF line ends as such agents write
        dropped = b"Subject: from procmail\r\nMessage-ID: <p@ext.test>\r\n\r\nhello\r\n"
        md.add(dropped.replace(b"\r\n", b"\n"))
        exists = _until("EXISTS 3", lambda: _unsolicited(imap, "EXISTS"))
        assert exists[-1] == b"3"
        typ, data = imap.fetch("3", "(UID RFC822.SIZE BODY.PEEK[])")
        assert typ == "OK" and isinstance(data[0], tuple)
        assert b"UID 4 " in data[0][0] and f"RFC822.SIZE {len(dropped)}".encode() in data[0][0]
        assert data[0][1] == dropped
        assert os.listdir(home / "new") == []  # moved to cur/ under the store's name form
        # BODY[1] and a partial range count CRLF octets, as the client was told
        typ, data = imap.fetch("3", "(BODY.PEEK[1] BODY.PEEK[]<0.24>)")
        assert typ == "OK"
        parts = [d[1] for d in data if isinstance(d, tuple)]
        assert parts == [b"hello\r\n", dropped[:24]]
        imap.logout()
        r = srv.cli("store", "check")
        assert r.returncode == 0 and "agree" in r.stdout, r.stdout


def test_store_check_reports_a_change_not_adopted_yet(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, services=("smtp",), users={"alice@example.test": "pw"})
    with srv:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
            s.sendmail("x@ext.test", ["alice@example.test"], b"Subject: a\r\n\r\nb\r\n")
        cur = srv.data / "mail" / "example.test" / "alice" / "Maildir" / "cur"
        _until("its file", lambda: os.listdir(cur) or None)
        [name] = os.listdir(cur)
        os.rename(cur / name, cur / (name.rpartition(":2,")[0] + ":2,S"))
        r = srv.cli("store", "check", check=False)
        assert r.returncode != 0
        assert "flags in the file name differ from the index: alice@example.test INBOX UID 1" in (
            r.stdout
        )
        assert "adopted by a running server" in r.stdout

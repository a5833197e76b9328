"""OBJECTID, SAVEDATE and MULTIAPPEND end to end with Python's imaplib (raw commands) against a
real `carteiro serve` (SQLite + Maildir store): a MULTIAPPEND of two messages, their EMAILIDs kept
by MOVE, MAILBOXID kept by RENAME, SAVEDATE fetched and searched, a UID REPLACE."""

from __future__ import annotations

import datetime as dt
import imaplib
import re
import ssl
from collections.abc import Iterator

import pytest

from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("imap-e2e")]

ALICE = "alice@example.test"
PASSWORD = "alice-password"
M1 = b"Subject: one\r\n\r\nfirst\r\n"
M2 = b"Subject: two\r\n\r\nsecond\r\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(
        tmp_path_factory.mktemp("objectide2e"), users={ALICE: PASSWORD}, services=("imaps",)
    )
    s.init()
    with s:
        yield s


def test_with_imaplib(srv: ServerProcess) -> None:
    ctx = ssl.create_default_context(cafile=str(srv.data / "tls" / "cert.pem"))
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=ctx)
    m.login(ALICE, PASSWORD)
    imaplib.Commands.setdefault("MOVE", ("SELECTED",))
    caps = m.capability()[1][0].split()
    assert {b"OBJECTID", b"SAVEDATE", b"MULTIAPPEND"} <= set(caps), caps
    typ, data = m.create("Work")
    assert typ == "OK"
    created = re.match(rb"\[MAILBOXID \(([A-Za-z0-9_-]+)\)\]", data[0])
    assert created is not None, data
    typ, data = m.status("Work", "(MAILBOXID)")
    work_id = created.group(1)
    assert data == [b"Work (MAILBOXID (" + work_id + b"))"], data
    # MULTIAPPEND: imaplib sends one literal per APPEND, so the second message is sent by hand
    tag = m._new_tag()
    m.send(
        tag
        + b" APPEND INBOX (\\Seen) {%d+}\r\n" % len(M1)
        + M1
        + b" {%d+}\r\n" % len(M2)
        + M2
        + b"\r\n"
    )
    typ, data = m._command_complete("APPEND", tag)
    assert typ == "OK", data
    assert re.match(rb"\[APPENDUID \d+ 1:2\]", data[0]), data
    m.select("INBOX")
    typ, data = m.fetch("1:2", "(EMAILID THREADID SAVEDATE)")
    text = b" ".join(d for d in data if isinstance(d, bytes))
    ids = re.findall(rb"EMAILID \((M[0-9a-f]+)\)", text)
    assert len(ids) == 2 and ids[0] != ids[1], text
    assert text.count(b"THREADID NIL") == 2 and text.count(b'SAVEDATE "') == 2, text
    today = dt.datetime.now(dt.UTC)
    typ, data = m.search(None, f"SAVEDON {today.day}-{today.strftime('%b')}-{today.year}")
    assert data == [b"1 2"]
    typ, data = m.search(None, "EMAILID", ids[1].decode())
    assert data == [b"2"]
    typ, _ = m._simple_command("MOVE", "2", "Work")
    assert typ == "OK"
    m.rename("Work", "Done")
    typ, data = m.status("Done", "(MAILBOXID)")
    assert work_id in data[0]
    m.select("Done")
    typ, data = m.fetch("1", "(EMAILID)")
    assert ids[1] in data[0], data
    # REPLACE (RFC 8508) of that message, by UID, into Drafts
    tag = m._new_tag()
    m.send(tag + b" UID REPLACE 1 Drafts (\\Draft) {%d+}\r\n" % len(M1) + M1 + b"\r\n")
    typ, data = m._command_complete("REPLACE", tag)
    assert typ == "OK", data
    assert m.untagged_responses.get("EXPUNGE") == [b"1"], m.untagged_responses
    typ, data = m.status("Done", "(MESSAGES)")
    assert data == [b"Done (MESSAGES 0)"], data
    typ, data = m.status("Drafts", "(MESSAGES)")
    assert data == [b"Drafts (MESSAGES 1)"], data
    m.logout()

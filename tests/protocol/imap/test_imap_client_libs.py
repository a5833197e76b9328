"""Real client libraries against the server: imaplib (stdlib) and imapclient, IDLE and MOVE."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import asyncio
import imaplib
import threading

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    server,
    start_server,
    tls_files,
)
from imapclient import IMAPClient

MSG = (
    b"From: Bob <bob@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: hello there\r\n"
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"\r\n"
    b"Hello Alice, this is the body.\r\n"
)


def _imaplib_session(port: int) -> dict[str, object]:
    out: dict[str, object] = {}
    m = imaplib.IMAP4("127.0.0.1", port)
    out["login"] = m.login(USER, PASSWORD)
    out["list"] = m.list()
    out["select"] = m.select("INBOX")
    out["append"] = m.append("INBOX", r"(\Flagged)", None, MSG)
    out["search"] = m.search(None, "SUBJECT", "hello")
    out["fetch"] = m.fetch("1", "(FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out["body"] = m.fetch("1", "(BODY[TEXT])")
    out["store"] = m.store("1", "+FLAGS", r"\Deleted")
    out["expunge"] = m.expunge()
    out["create"] = m.create("Work/2024")
    out["status"] = m.status("Work/2024", "(MESSAGES UIDNEXT UNSEEN)")
    out["logout"] = m.logout()
    return out


async def test_imaplib_round_trip(server):
    out = await asyncio.to_thread(_imaplib_session, server.port)
    assert out["login"][0] == "OK"
    assert out["select"][0] == "OK" and out["select"][1][0] == b"0"
    assert out["append"][0] == "OK" and b"APPENDUID" in out["append"][1][0]
    assert out["search"] == ("OK", [b"1"])
    typ, data = out["fetch"]
    assert typ == "OK"
    head = data[0][0]
    assert b"FLAGS (\\Flagged \\Recent)" in head and b"RFC822.SIZE %d" % len(MSG) in head
    assert b'"hello there"' in head
    assert data[0][1] == b"Subject: hello there\r\n\r\n"
    typ, data = out["body"]
    assert data[0][1] == b"Hello Alice, this is the body.\r\n"
    assert b"FLAGS (\\Seen \\Flagged)" in data[1] or b"\\Seen" in data[0][0] + data[1]
    assert out["expunge"] == ("OK", [b"1"])
    assert out["status"][0] == "OK"
    assert b"MESSAGES 0" in out["status"][1][0]


def _imapclient_idle_move(port: int, delivered: threading.Event, ready: threading.Event) -> dict:
    out: dict[str, object] = {}
    with IMAPClient("127.0.0.1", port=port, ssl=False) as c:
        c.login(USER, PASSWORD)
        out["caps"] = c.capabilities()
        c.select_folder("INBOX")
        c.idle()
        ready.set()
        out["idle"] = c.idle_check(timeout=5)
        c.idle_done()
        uids = c.search(["ALL"])
        out["moved"] = c.move(uids, "Archive")
        c.select_folder("Archive")
        out["archive"] = c.fetch(c.search(["ALL"]), ["UID", "FLAGS", "ENVELOPE"])
        out["folders"] = c.list_folders()
    return out


async def test_imapclient_idle_and_move(server):
    delivered, ready = threading.Event(), threading.Event()
    task = asyncio.create_task(
        asyncio.to_thread(_imapclient_idle_move, server.port, delivered, ready)
    )
    while not ready.is_set():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    await server.deliver(MSG)
    out = await asyncio.wait_for(task, 20)
    assert b"MOVE" in out["caps"] and b"IDLE" in out["caps"]
    assert (1, b"EXISTS") in out["idle"]
    ((_uid, data),) = out["archive"].items()
    assert data[b"ENVELOPE"].subject == b"hello there"
    names = {f[2]: f[0] for f in out["folders"]}
    assert b"\\Archive" in names["Archive"]

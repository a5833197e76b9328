"""Greeting, capabilities, authentication and the any-state commands (RFC 9051 6.1, 6.2)."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import asyncio
import time

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    make_config,
    play,
    server,
    start_server,
    tls_files,
)


async def test_capability_and_login(server):
    await play(
        server,
        f"""
S: * OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS AUTH=PLAIN] carteiro ready.
C: a1 CAPABILITY
S: * CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS AUTH=PLAIN
S: a1 OK Capability completed.
C: a2 NOOP
S: a2 OK NOOP completed.
C: a3 LOGIN {USER} "{PASSWORD}"
S: a3 OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES SORT SORT=DISPLAY ESORT CONTEXT=SEARCH CONTEXT=SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES I18NLEVEL=1 QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE WITHIN STATUS=SIZE OBJECTID SAVEDATE MULTIAPPEND REPLACE BINARY UTF8=ACCEPT CONDSTORE QRESYNC COMPRESS=DEFLATE CATENATE PREVIEW NOTIFY METADATA METADATA-SERVER APPENDLIMIT=67108864] Logged in
C: a4 LOGOUT
S: * BYE Logging out
S: a4 OK Logout completed.
""".replace("S: * OK [CAPABILITY", "S: * OK [CAPABILITY"),
    )


async def test_login_timeout(start_server):
    srv = await start_server(make_config(login_timeout=0.3))
    c = await srv.connect()
    t = time.monotonic()
    assert await c.line() == "* BYE Autologout; idle for too long"
    assert await asyncio.wait_for(c.reader.read(), 5) == b""
    assert 0.25 <= time.monotonic() - t < 5


async def test_idle_timeout_counts_from_the_last_read(start_server):
    """One lazy timer per session: activity pushes the deadline, silence ends the session."""
    srv = await start_server(make_config(idle_timeout=0.4))
    c = await srv.connect(login=True)
    for _ in range(6):  # 0.9 s of commands, more than twice the timeout
        await asyncio.sleep(0.15)
        assert (await c.cmd("NOOP"))[-1].endswith("OK NOOP completed.")
    t = time.monotonic()
    assert await c.line() == "* BYE Autologout; idle for too long"
    assert await asyncio.wait_for(c.reader.read(), 5) == b""
    assert 0.3 <= time.monotonic() - t < 5


async def test_idle_timeout_after_a_slow_login_timer(start_server):
    """A read whose deadline comes before the armed timer re-arms it."""
    srv = await start_server(make_config(login_timeout=30.0, idle_timeout=0.3))
    c = await srv.connect(login=True)
    assert await c.line(timeout=5) == "* BYE Autologout; idle for too long"


async def test_shared_parse_results_keep_tags_errors_and_utf8_apart(server):
    """Sessions share the parse of a repeated command line (SELECT INBOX, FETCH 1:* ...): the
    tag, errors and UTF-8 mailbox names must still be per command and per session."""
    await (await server.account()).create_mailbox("Entwürfe")
    a = await server.connect(login=True)
    b = await server.connect(login=True)
    for c in (a, b, a):
        lines = await c.cmd("SELECT INBOX")
        assert lines[-1].endswith("OK [READ-WRITE] Select completed."), lines
    for tag in ("x1", "x2"):
        assert (await a.cmd("FETCH 1:* (UID BOGUS)", tag=tag))[-1].startswith(f"{tag} BAD ")
        assert (await b.cmd("STORE 1 +FLAGS (\\Recent)", tag=tag))[-1].startswith(f"{tag} BAD ")
    # the same octets name "Entwürfe" only once UTF8=ACCEPT is on
    raw = 'SELECT "Entw\u00fcrfe"'
    before = (await a.cmd(raw))[-1].split()[1]
    assert before != "OK"
    assert (await b.cmd("ENABLE UTF8=ACCEPT"))[-1].split()[1] == "OK"
    assert (await b.cmd(raw))[-1].split()[1] == "OK"
    assert (await a.cmd(raw))[-1].split()[1] == before

"""OBJECTID (RFC 8474): MAILBOXID on CREATE, SELECT, STATUS and LIST-STATUS, kept by RENAME;
EMAILID in FETCH, the same after COPY and MOVE, and SEARCH EMAILID; THREADID NIL (threads are
not computed: SEARCH THREADID matches nothing). Both stores. After the RFC's section 8 examples."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import re

from imap_harness import (  # noqa: F401  (fixtures)
    directory,
    server,
    start_server,
    tls_files,
)

MSG = b"Subject: objectid\r\n\r\nhello\r\n"


def _one(pattern: str, lines: list[str]) -> str:
    found = [m.group(1) for line in lines if (m := re.search(pattern, line))]
    assert len(found) == 1, (pattern, lines)
    return found[0]


async def test_mailboxid(server):
    c = await server.connect(login=True)
    caps = await c.cmd("CAPABILITY")
    assert " OBJECTID" in caps[0]
    lines = await c.cmd("CREATE foo")
    assert re.fullmatch(r"t\d+ OK \[MAILBOXID \(F[0-9a-f]{32}\)\] Create completed\.", lines[-1])
    foo = _one(r"MAILBOXID \(([A-Za-z0-9_-]+)\)", lines)
    lines = await c.cmd("CREATE bar")
    assert _one(r"MAILBOXID \(([A-Za-z0-9_-]+)\)", lines) != foo
    lines = await c.cmd("STATUS foo (MAILBOXID UIDNEXT)")
    assert lines[0] == f"* STATUS foo (MAILBOXID ({foo}) UIDNEXT 1)"
    assert (await c.cmd("RENAME foo renamed"))[-1].split()[1] == "OK"
    lines = await c.cmd("STATUS renamed (MAILBOXID)")
    assert lines[0] == f"* STATUS renamed (MAILBOXID ({foo}))"
    lines = await c.cmd('LIST "" "renamed" RETURN (STATUS (MAILBOXID))')
    assert f"* STATUS renamed (MAILBOXID ({foo}))" in lines
    lines = await c.cmd("SELECT renamed")
    assert f"* OK [MAILBOXID ({foo})] Ok" in lines
    lines = await c.cmd("STATUS INBOX (MAILBOXID)")
    assert re.fullmatch(r"\* STATUS INBOX \(MAILBOXID \(F[0-9a-f]{32}\)\)", lines[0])


async def test_emailid_threadid(server):
    uid = await server.deliver(MSG)
    await server.deliver(MSG)  # the same content appended again: another message, another id
    c = await server.connect(login=True)
    assert (await c.cmd("CREATE foo"))[-1].split()[1] == "OK"
    assert (await c.cmd("CREATE bar"))[-1].split()[1] == "OK"
    await c.cmd("SELECT INBOX")
    lines = await c.cmd("FETCH 1:2 (EMAILID THREADID)")
    ids = re.findall(
        r"\* (\d) FETCH \(EMAILID \((M[0-9a-f]{24})\) THREADID NIL\)", "\n".join(lines)
    )
    assert len(ids) == 2 and ids[0][1] != ids[1][1], lines
    first = ids[0][1]
    lines = await c.cmd("UID FETCH 1 (FLAGS EMAILID)")
    assert lines[0] == f"* 1 FETCH (UID {uid} FLAGS (\\Recent) EMAILID ({first}))"
    assert (await c.cmd(f"SEARCH EMAILID {first}"))[0] == "* SEARCH 1"
    assert (await c.cmd(f"SEARCH NOT EMAILID {first}"))[0] == "* SEARCH 2"
    assert (await c.cmd("SEARCH THREADID T123"))[0] == "* SEARCH"
    assert (await c.cmd("SEARCH EMAILID M0"))[0] == "* SEARCH"
    assert (await c.cmd("SEARCH EMAILID (x)"))[-1].split()[1] == "BAD"
    assert (await c.cmd("SEARCH EMAILID " + "a" * 256))[-1].split()[1] == "BAD"
    # RFC 8474 5.1: the same EMAILID after COPY and MOVE
    assert (await c.cmd("COPY 1 foo"))[-1].split()[1] == "OK"
    assert (await c.cmd("MOVE 1 bar"))[-1].split()[1] == "OK"
    for box in ("foo", "bar"):
        await c.cmd(f"SELECT {box}")
        lines = await c.cmd("FETCH 1 (EMAILID)")
        assert lines[0] == f"* 1 FETCH (EMAILID ({first}))", (box, lines)
        lines = await c.cmd("FETCH 1 (EMAILID BODY.PEEK[HEADER.FIELDS (Subject)])")
        assert lines[0].startswith("* 1 FETCH (BODY[HEADER.FIELDS (Subject)] {"), lines
        assert lines[3] == f" EMAILID ({first}))", lines


async def test_savedate(server):
    """RFC 8514: FETCH SAVEDATE (NIL when unknown), SAVEDBEFORE/SAVEDON/SAVEDSINCE by UTC day,
    SAVEDATESUPPORTED; a COPY's save date is its own."""
    import datetime as dt
    import sqlite3

    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    await server.deliver(MSG)
    await server.deliver(MSG)
    c = await server.connect(login=True)
    assert (await c.cmd("CREATE foo"))[-1].split()[1] == "OK"
    await c.cmd("SELECT INBOX")
    today = dt.datetime.now(dt.UTC)
    lines = await c.cmd("FETCH 1:2 (SAVEDATE)")
    day = f"{today.day:02d}-{today.strftime('%b')}-{today.year}"
    assert re.fullmatch(rf'\* 1 FETCH \(SAVEDATE "{day} \d\d:\d\d:\d\d \+0000"\)', lines[0]), lines
    on = f"{today.day}-{today.strftime('%b')}-{today.year}"
    tomorrow = today + dt.timedelta(days=1)
    later = f"{tomorrow.day}-{tomorrow.strftime('%b')}-{tomorrow.year}"
    assert (await c.cmd(f"SEARCH SAVEDON {on}"))[0] == "* SEARCH 1 2"
    assert (await c.cmd(f"SEARCH SAVEDSINCE {on}"))[0] == "* SEARCH 1 2"
    assert (await c.cmd(f"SEARCH SAVEDBEFORE {on}"))[0] == "* SEARCH"
    assert (await c.cmd(f"SEARCH SAVEDBEFORE {later}"))[0] == "* SEARCH 1 2"
    assert (await c.cmd(f"SEARCH SAVEDSINCE {later}"))[0] == "* SEARCH"
    assert (await c.cmd("SEARCH SAVEDATESUPPORTED"))[0] == "* SEARCH 1 2"
    assert (await c.cmd("SEARCH SAVEDON 31-Foo-2020"))[-1].split()[1] == "BAD"
    assert (await c.cmd("COPY 1 foo"))[-1].split()[1] == "OK"
    await c.cmd("SELECT foo")
    assert (await c.cmd(f"SEARCH SAVEDON {on}"))[0] == "* SEARCH 1"
    if isinstance(server.store, SqliteMaildirStore):
        # a message stored before save dates were recorded (a migrated index): NIL
        conn = sqlite3.connect(server.store.index_path)
        conn.execute("UPDATE messages SET savedate = NULL WHERE uid = 1")
        conn.commit()
        conn.close()
        assert (await c.cmd("FETCH 1 (SAVEDATE)"))[0] == "* 1 FETCH (SAVEDATE NIL)"
        assert (await c.cmd(f"SEARCH SAVEDON {on}"))[0] == "* SEARCH"
        assert (await c.cmd(f"SEARCH NOT SAVEDON {on}"))[0] == "* SEARCH 1"

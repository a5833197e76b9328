"""INTERNALDATE keeps the zone it was given (RFC 3501 2.3.3, RFC 9051 2.3.3, 6.3.12): an APPEND
date-time FETCHes back as it was sent (same instant, same zone), after COPY and MOVE too, and
SEARCH BEFORE/ON/SINCE compare the date in that zone ("disregarding time and timezone", RFC 3501
6.4.4), not the UTC date. What Dovecot's imaptest script search-intdate checks. Both stores."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import asyncio
import re
import time

from imap_harness import (  # noqa: F401  (fixtures)
    Client,
    directory,
    server,
    start_server,
    tls_files,
)

MSG = b"Subject: zones\r\n\r\nhello\r\n"


async def _append(c: Client, box: str, date: str | None, msg: bytes = MSG) -> list[str]:
    when = f' "{date}"' if date is not None else ""
    c.n += 1
    await c.send(f"a{c.n} APPEND {box} (){when} {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
    raw = await c.raw_response(f"a{c.n}")
    lines = raw.decode().split("\r\n")[:-1]
    assert lines[-1].split()[1] == "OK", lines
    return lines


async def _dates(c: Client) -> list[str]:
    lines = await c.cmd("FETCH 1:* (INTERNALDATE)")
    return [m.group(1) for ln in lines if (m := re.search(r'INTERNALDATE "([^"]+)"', ln))]


def _shown(date: str) -> str:
    """How FETCH shows a date-time: the day as two digits ("07-Dec-...", as Dovecot does)."""
    return "0" + date[1:] if date.startswith(" ") else date


ZONED = [
    "25-Mar-2007 01:30:00 +0300",
    " 1-Jan-2020 23:30:00 -0200",
    " 2-Jan-2020 00:30:00 +0200",
    "31-Dec-1999 23:59:59 -0830",
    "15-Jul-2021 12:00:00 +1400",
    " 3-Feb-2010 10:11:12 +0000",
]


async def test_append_keeps_the_zone(server):
    c = await server.connect(login=True)
    for d in ZONED:
        await _append(c, "INBOX", d)
    await c.cmd("SELECT INBOX")
    assert await _dates(c) == [_shown(d) for d in ZONED]
    # another session (a listing built afresh) sees the same
    c2 = await server.connect(login=True)
    await c2.cmd("EXAMINE INBOX")
    assert await _dates(c2) == [_shown(d) for d in ZONED]


async def test_search_uses_the_date_in_its_zone(server):
    c = await server.connect(login=True)
    # 1: 1-Jan in its zone, 2-Jan 01:30 UTC; 2: 2-Jan in its zone, 1-Jan 22:30 UTC
    await _append(c, "INBOX", " 1-Jan-2020 23:30:00 -0200")
    await _append(c, "INBOX", " 2-Jan-2020 00:30:00 +0200")
    await c.cmd("SELECT INBOX")
    assert (await c.cmd("SEARCH ON 1-Jan-2020"))[0] == "* SEARCH 1"
    assert (await c.cmd("SEARCH ON 2-Jan-2020"))[0] == "* SEARCH 2"
    assert (await c.cmd("SEARCH BEFORE 2-Jan-2020"))[0] == "* SEARCH 1"
    assert (await c.cmd("SEARCH SINCE 2-Jan-2020"))[0] == "* SEARCH 2"
    assert (await c.cmd("SEARCH SINCE 1-Jan-2020 BEFORE 3-Jan-2020"))[0] == "* SEARCH 1 2"
    assert (await c.cmd("SEARCH ON 31-Dec-2019"))[0] == "* SEARCH"
    assert (await c.cmd("SEARCH ON 3-Jan-2020"))[0] == "* SEARCH"
    # no Date: field: SENT* take INTERNALDATE's date in its zone too, from the message and
    # from the sqlite store's search index alike
    for _ in range(2):
        assert (await c.cmd("SEARCH SENTON 1-Jan-2020"))[0] == "* SEARCH 1"
        assert (await c.cmd("SEARCH SENTBEFORE 2-Jan-2020"))[0] == "* SEARCH 1"
        assert (await c.cmd("SEARCH SENTSINCE 2-Jan-2020"))[0] == "* SEARCH 2"
        wait = getattr(server.store, "wait_search_indexed", None)
        if wait is not None:
            assert await asyncio.get_running_loop().run_in_executor(None, wait)


async def test_copy_move_multiappend_keep_the_zone(server):
    c = await server.connect(login=True)
    assert (await c.cmd("CREATE copies"))[-1].split()[1] == "OK"
    assert (await c.cmd("CREATE moved"))[-1].split()[1] == "OK"
    # MULTIAPPEND: each message its own zone
    c.n += 1
    tag = f"a{c.n}"
    await c.send(
        f'{tag} APPEND INBOX () "{ZONED[0]}" {{{len(MSG)}+}}\r\n'.encode()
        + MSG
        + f' () "{ZONED[3]}" {{{len(MSG)}+}}\r\n'.encode()
        + MSG
        + b"\r\n"
    )
    lines = (await c.raw_response(tag)).decode().split("\r\n")[:-1]
    assert lines[-1].split()[1] == "OK", lines
    await c.cmd("SELECT INBOX")
    assert await _dates(c) == [ZONED[0], ZONED[3]]
    assert (await c.cmd("COPY 1:2 copies"))[-1].split()[1] == "OK"
    assert (await c.cmd("MOVE 2 moved"))[-1].split()[1] == "OK"
    await c.cmd("SELECT copies")
    assert await _dates(c) == [ZONED[0], ZONED[3]]
    await c.cmd("SELECT moved")
    assert await _dates(c) == [ZONED[3]]


async def test_replace_and_catenate_keep_the_zone(server):
    c = await server.connect(login=True)
    await _append(c, "INBOX", ZONED[1])
    await c.cmd("SELECT INBOX")
    c.n += 1
    tag = f"a{c.n}"
    await c.send(f'{tag} REPLACE 1 INBOX () "{ZONED[4]}" {{{len(MSG)}+}}\r\n'.encode() + MSG)
    await c.send(b"\r\n")
    lines = (await c.raw_response(tag)).decode().split("\r\n")[:-1]
    assert lines[-1].split()[1] == "OK", lines
    assert await _dates(c) == [ZONED[4]]  # (two-digit days)
    caps = (await c.cmd("CAPABILITY"))[0]
    if " CATENATE" in caps:
        c.n += 1
        tag = f"a{c.n}"
        await c.send(
            f'{tag} APPEND INBOX () "{ZONED[2]}" CATENATE (TEXT {{{len(MSG)}+}}\r\n'.encode()
            + MSG
            + b")\r\n"
        )
        lines = (await c.raw_response(tag)).decode().split("\r\n")[:-1]
        assert lines[-1].split()[1] == "OK", lines
        await c.cmd("NOOP")
        assert await _dates(c) == [ZONED[4], _shown(ZONED[2])]


async def test_no_date_takes_the_local_zone(server, kolkata):
    c = await server.connect(login=True)
    await _append(c, "INBOX", None)
    await server.deliver(MSG)
    await c.cmd("SELECT INBOX")
    dates = await _dates(c)
    assert len(dates) == 2 and all(d.endswith(" +0530") for d in dates), dates
    # the date shown is the local date of the instant in that zone
    now = time.localtime()
    assert dates[0][:11] == f"{now.tm_mday:02d}-{time.strftime('%b', now)}-{now.tm_year}", dates

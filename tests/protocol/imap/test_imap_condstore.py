"""CONDSTORE and QRESYNC (RFC 7162), after the RFC's examples, over both store backends.

MODSEQ values are the store's own (read from it before each transcript), so the transcripts
compare them exactly. The two-session tests end by checking the resynchronising client's state
against the server's, message by message.
"""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import re

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    play,
    server,
    start_server,
    tls_files,
)

from carteiro.store.api import DELETED, FlagOp

LOGIN = f'LOGIN {USER} "{PASSWORD}"'


def msg(n: int) -> bytes:
    return f"From: a@example.test\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode()


async def fill(server, n: int) -> None:
    for i in range(1, n + 1):
        await server.deliver(msg(i))


async def modseqs(server) -> tuple[int, dict[int, int]]:
    """(HIGHESTMODSEQ, {uid: MODSEQ}) of INBOX as the store has them now."""
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")
    return box.highestmodseq, {m.uid: m.modseq for m in await acct.list_messages(box.id)}


async def inbox_state(server) -> tuple[int, dict[int, frozenset[str]]]:
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")
    return box.highestmodseq, {m.uid: m.flags for m in await acct.list_messages(box.id)}


SELECT_HEAD = """S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * {n} EXISTS
S: * {recent} RECENT
S: <...>"""


async def test_select_condstore_fetch_and_conditional_store(server):
    """RFC 7162 3.1.2 (HIGHESTMODSEQ on SELECT), 3.1.4 (FETCH MODSEQ), 3.1.3 (STORE
    UNCHANGEDSINCE: the example with [MODIFIED 7,9], .SILENT still reporting MODSEQ; a value of
    0 always fails), 3.1.4.1 (CHANGEDSINCE)."""
    await fill(server, 3)
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")
    await acct.set_flags(box.id, [2], FlagOp.ADD, ["$Work"])  # message 2 changed last
    hi, ms = await modseqs(server)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX (CONDSTORE)
S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)
S: * OK [PERMANENTFLAGS <...>
S: * 3 EXISTS
S: * 3 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 4] Predicted next UID
S: * OK [HIGHESTMODSEQ {hi}] Highest
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 FETCH 1:3 (MODSEQ)
S: * 1 FETCH (MODSEQ ({ms[1]}))
S: * 2 FETCH (MODSEQ ({ms[2]}))
S: * 3 FETCH (MODSEQ ({ms[3]}))
S: a3 OK Fetch completed.
C: a4 STORE 1:3 (UNCHANGEDSINCE {ms[2] - 1}) +FLAGS.SILENT (\\Deleted)
S: * 1 FETCH (MODSEQ ({hi + 1}))
S: * 3 FETCH (MODSEQ ({hi + 1}))
S: a4 OK [MODIFIED 2] Conditional STORE failed
C: a5 UID STORE 2 (UNCHANGEDSINCE {ms[2]}) -FLAGS ($Work)
S: * 2 FETCH (UID 2 FLAGS (\\Recent) MODSEQ ({hi + 2}))
S: a5 OK Store completed.
C: a6 STORE 1 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)
S: a6 OK [MODIFIED 1] Conditional STORE failed
C: a7 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {hi + 1})
S: * 2 FETCH (UID 2 FLAGS (\\Recent) MODSEQ ({hi + 2}))
S: a7 OK Fetch completed.
C: a8 FETCH 1:* (UID) (CHANGEDSINCE {hi})
S: * 1 FETCH (UID 1 MODSEQ ({hi + 1}))
S: * 2 FETCH (UID 2 MODSEQ ({hi + 2}))
S: * 3 FETCH (UID 3 MODSEQ ({hi + 1}))
S: a8 OK Fetch completed.
C: a9 STORE 3 -FLAGS (\\Deleted)
S: * 3 FETCH (FLAGS (\\Recent) MODSEQ ({hi + 3}))
S: a9 OK Store completed.
""",
    )
    _, after = await inbox_state(server)
    assert after == {1: frozenset({DELETED}), 2: frozenset(), 3: frozenset()}


async def test_search_modseq_and_esearch(server):
    """RFC 7162 3.1.5: SEARCH MODSEQ finds messages whose MODSEQ is at least the value and the
    answer carries the highest MODSEQ of what it returns (none when nothing matched); the
    entry-name form is accepted; with ESEARCH, MODSEQ follows the other return data."""
    await fill(server, 4)
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")
    await acct.set_flags(box.id, [2, 4], FlagOp.ADD, ["\\Draft"])
    hi, ms = await modseqs(server)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 EXAMINE INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS ()] Read-only mailbox.
S: * 4 EXISTS
S: * 4 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 5] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-ONLY] Examine completed.
C: a3 SEARCH MODSEQ "/flags/\\\\draft" all {hi}
S: * OK [HIGHESTMODSEQ {hi}] Highest
S: * SEARCH 2 4 (MODSEQ {hi})
S: a3 OK Search completed.
C: a4 UID SEARCH MODSEQ {hi + 1}
S: * SEARCH
S: a4 OK Search completed.
C: a5 SEARCH RETURN (MIN COUNT) MODSEQ {ms[1]}
S: * ESEARCH (TAG "a5") MIN 1 COUNT 4 MODSEQ {hi}
S: a5 OK Search completed.
C: a6 SEARCH RETURN (MIN) MODSEQ {ms[1]}
S: * ESEARCH (TAG "a6") MIN 1 MODSEQ {ms[1]}
S: a6 OK Search completed.
""",
    )


async def test_enable_while_selected_and_unsolicited_modseq(server):
    """RFC 7162 3.1: a CONDSTORE enabling command with a mailbox selected tells the client its
    HIGHESTMODSEQ; from then on every FETCH a flag change causes (another session's, or a FETCH
    that sets \\Seen) carries MODSEQ; STATUS HIGHESTMODSEQ (3.1.6) follows the mailbox."""
    await fill(server, 2)
    hi, _ = await modseqs(server)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 2 EXISTS
S: * 2 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 3] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 ENABLE CONDSTORE
S: * ENABLED CONDSTORE
S: * OK [HIGHESTMODSEQ {hi}] Highest
S: a3 OK Enabled.
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b2 STATUS INBOX (HIGHESTMODSEQ MESSAGES)
S2: * STATUS INBOX (HIGHESTMODSEQ {hi} MESSAGES 2)
S2: b2 OK Status completed.
C2: b3 SELECT INBOX
S2: * FLAGS <...>
S2: * OK [PERMANENTFLAGS <...>
S2: * 2 EXISTS
S2: * 0 RECENT
S2: * OK [UNSEEN 1] First unseen.
S2: * OK [UIDVALIDITY <...>] UIDs valid
S2: * OK [UIDNEXT 3] Predicted next UID
S2: * OK [HIGHESTMODSEQ {hi}] Highest
S2: * OK [MAILBOXID (<...>)] Ok
S2: b3 OK [READ-WRITE] Select completed.
C2: b4 STORE 2 +FLAGS.SILENT (\\Flagged)
S2: * 2 FETCH (MODSEQ ({hi + 1}))
S2: b4 OK Store completed.
C: a4 NOOP
S: * 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) MODSEQ ({hi + 1}))
S: a4 OK NOOP completed.
C: a5 FETCH 1 (BODY[TEXT])
S: * 1 FETCH (BODY[TEXT] {{8}}
S: body 1
S:  FLAGS (\\Seen \\Recent) MODSEQ ({hi + 2}))
S: a5 OK Fetch completed.
C2: b5 STATUS INBOX (HIGHESTMODSEQ)
S2: * STATUS INBOX (HIGHESTMODSEQ {hi + 2})
S2: * 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ ({hi + 2}))
S2: b5 OK Status completed.
""",
    )


async def test_qresync_select_and_vanished(server):
    """RFC 7162 3.2.5 (SELECT (QRESYNC ...): VANISHED (EARLIER), then the changed messages'
    flags), 3.2.6 (UID FETCH ... (CHANGEDSINCE n VANISHED)), 3.2.10 (VANISHED replaces EXPUNGE
    once QRESYNC is enabled, for EXPUNGE, UID EXPUNGE, MOVE and another session's expunges);
    a wrong UIDVALIDITY resynchronises nothing; CLOSED on reselect (3.2.11)."""
    await fill(server, 8)
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")
    old, _ = await modseqs(server)  # what the client knew
    await acct.set_flags(box.id, [3, 5], FlagOp.ADD, [DELETED])
    await acct.expunge(box.id)  # 3 and 5 vanish
    await acct.set_flags(box.id, [6], FlagOp.ADD, ["\\Answered"])
    await server.deliver(msg(9))  # UID 9
    hi, ms = await modseqs(server)
    uv = box.uidvalidity
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX (QRESYNC ({uv} {old} 1:8))
S: a2 BAD QRESYNC parameter needs ENABLE QRESYNC first
C: a3 ENABLE QRESYNC
S: * ENABLED QRESYNC
S: a3 OK Enabled.
C: a4 EXAMINE INBOX (QRESYNC ({uv} {old} 1:4,6:8))
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS ()] Read-only mailbox.
S: * 7 EXISTS
S: * 7 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY {uv}] UIDs valid
S: * OK [UIDNEXT 10] Predicted next UID
S: * OK [HIGHESTMODSEQ {hi}] Highest
S: * VANISHED (EARLIER) 3
S: * 4 FETCH (UID 6 FLAGS (\\Answered \\Recent) MODSEQ ({ms[6]}))
S: * OK [MAILBOXID (<...>)] Ok
S: a4 OK [READ-ONLY] Examine completed.
C: a5 SELECT INBOX (QRESYNC ({uv + 1} {old}))
S: * OK [CLOSED] Previous mailbox closed.
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 7 EXISTS
S: * 7 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY {uv}] UIDs valid
S: * OK [UIDNEXT 10] Predicted next UID
S: * OK [HIGHESTMODSEQ {hi}] Highest
S: * OK [MAILBOXID (<...>)] Ok
S: a5 OK [READ-WRITE] Select completed.
C: a6 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {old} VANISHED)
S: * VANISHED (EARLIER) 3,5
S: * 4 FETCH (UID 6 FLAGS (\\Answered \\Recent) MODSEQ ({ms[6]}))
S: * 7 FETCH (UID 9 FLAGS (\\Recent) MODSEQ ({ms[9]}))
S: a6 OK Fetch completed.
C: a7 UID FETCH 4:6 (FLAGS) (CHANGEDSINCE {old} VANISHED)
S: * VANISHED (EARLIER) 5
S: * 4 FETCH (UID 6 FLAGS (\\Answered \\Recent) MODSEQ ({ms[6]}))
S: a7 OK Fetch completed.
C: a8 FETCH 1:* (FLAGS) (CHANGEDSINCE {old} VANISHED)
S: a8 BAD <...>
C: a9 STORE 1,2 +FLAGS.SILENT (\\Deleted)
S: * 1 FETCH (UID 1 MODSEQ ({hi + 1}))
S: * 2 FETCH (UID 2 MODSEQ ({hi + 1}))
S: a9 OK Store completed.
C: a10 UID EXPUNGE 1
S: * VANISHED 1
S: a10 OK [HIGHESTMODSEQ {hi + 2}] Expunge completed.
C: a11 EXPUNGE
S: * VANISHED 2
S: a11 OK [HIGHESTMODSEQ {hi + 3}] Expunge completed.
C: a12 MOVE 1 Archive
S: * OK [COPYUID <...>] Moved UIDs.
S: * VANISHED 4
S: a12 OK Move completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b2 SELECT INBOX
S2: <...>
S2: <...>
S2: * 4 EXISTS
S2: * 0 RECENT
S2: <...>
S2: <...>
S2: <...>
S2: * OK [MAILBOXID (<...>)] Ok
S2: b2 OK [READ-WRITE] Select completed.
C2: b3 STORE 1,4 +FLAGS.SILENT (\\Deleted)
S2: b3 OK Store completed.
C2: b4 EXPUNGE
S2: * 1 EXPUNGE
S2: * 3 EXPUNGE
S2: b4 OK Expunge completed.
C: a13 FETCH 1 (UID)
S: * 1 FETCH (UID 6)
S: * 1 FETCH (UID 6 FLAGS (\\Answered \\Deleted \\Recent) MODSEQ (<...>))
S: * 4 FETCH (UID 9 FLAGS (\\Deleted \\Recent) MODSEQ (<...>))
S: a13 OK Fetch completed.
C: a14 NOOP
S: * VANISHED 6,9
S: a14 OK NOOP completed.
""",
    )


def _parse_numbers(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        a, _, b = part.partition(":")
        out.update(range(int(a), int(b or a) + 1))
    return out


async def _resync(client, uidvalidity: int, cache: dict[int, frozenset[str]], modseq: int) -> int:
    """What a QRESYNC client does on reconnection: SELECT (QRESYNC ...) with what it knows,
    apply VANISHED (EARLIER) and the FETCHes to its cache; returns the new HIGHESTMODSEQ."""
    known = ",".join(str(u) for u in sorted(cache)) or "1"
    lines = await client.cmd(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} {known}))")
    assert lines[-1].split()[1] == "OK", lines
    highest = modseq
    exists = None
    for line in lines:
        if m := re.fullmatch(r"\* OK \[HIGHESTMODSEQ (\d+)\].*", line):
            highest = int(m.group(1))
        elif m := re.fullmatch(r"\* VANISHED \(EARLIER\) (\S+)", line):
            for uid in _parse_numbers(m.group(1)):
                cache.pop(uid, None)
        elif m := re.fullmatch(
            r"\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\) MODSEQ \(\d+\)\)", line
        ):
            flags = frozenset(f for f in m.group(2).split() if f != "\\Recent")
            cache[int(m.group(1))] = flags
        elif m := re.fullmatch(r"\* (\d+) EXISTS", line):
            exists = int(m.group(1))
    # new messages: the client fetches what is above its highest known UID
    top = max(cache, default=0)
    lines = await client.cmd(f"UID FETCH {top + 1}:* (FLAGS)")
    for line in lines:
        m = re.fullmatch(r"\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\)\)", line)
        if m and int(m.group(1)) > top:
            cache[int(m.group(1))] = frozenset(f for f in m.group(2).split() if f != "\\Recent")
    assert exists == len(cache), (exists, cache)
    return highest


async def test_two_sessions_qresync_ends_with_the_servers_state(server):
    """One session changes flags, expunges and appends while the other is away; the other
    reconnects with QRESYNC (known UIDs, its last HIGHESTMODSEQ) and must hold exactly the
    server's messages and flags; a second round from the new HIGHESTMODSEQ too."""
    await fill(server, 30)
    uv = (await (await server.account()).get_mailbox("INBOX")).uidvalidity
    hi, cache = await inbox_state(server)
    for round_ in range(2):
        c1 = await server.connect(login=True)
        await c1.cmd("SELECT INBOX")
        base = 30 + round_ * 3
        await c1.cmd(f"UID STORE {base - 29}:{base - 20} +FLAGS (\\Seen)")
        await c1.cmd(f"UID STORE {base - 25}:{base - 15} +FLAGS ($Label{round_})")
        await c1.cmd(f"UID STORE {base - 10}:{base - 5} +FLAGS (\\Deleted)")
        await c1.cmd("EXPUNGE")
        for i in range(3):
            await c1.cmd(f"APPEND INBOX {{{len(msg(100 + i))}+}}\r\n{msg(100 + i).decode()}")
        await c1.cmd(f"UID STORE {base - 28} -FLAGS (\\Seen)")
        await c1.cmd("LOGOUT")
        c2 = await server.connect(login=True)
        await c2.cmd("ENABLE QRESYNC")
        hi = await _resync(c2, uv, cache, hi)
        await c2.cmd("LOGOUT")
        want_hi, want = await inbox_state(server)
        assert cache == want
        assert hi == want_hi


async def test_qresync_after_the_expunge_history_was_pruned(server):
    """When the store's expunge history no longer reaches back to the client's MODSEQ (pruned,
    docs/store.md), VANISHED (EARLIER) names every known UID the mailbox no longer holds; the
    message-sequence match data (RFC 7162 3.2.5.2) narrows it to the UIDs above the last pair
    that still matches."""
    await fill(server, 10)
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")
    old, _ = await modseqs(server)
    await acct.set_flags(box.id, [2, 7, 9], FlagOp.ADD, [DELETED])
    await acct.expunge(box.id)
    await _prune_history(server, box.id)
    uv = box.uidvalidity
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 ENABLE QRESYNC
S: * ENABLED QRESYNC
S: a2 OK Enabled.
C: a3 EXAMINE INBOX (QRESYNC ({uv} {old} 1:12))
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS ()] Read-only mailbox.
S: * 7 EXISTS
S: <...>
S: <...>
S: * OK [UIDVALIDITY {uv}] UIDs valid
S: * OK [UIDNEXT 11] Predicted next UID
S: * OK [HIGHESTMODSEQ <...>] Highest
S: * VANISHED (EARLIER) 2,7,9
S: * OK [MAILBOXID (<...>)] Ok
S: a3 OK [READ-ONLY] Examine completed.
C: a4 EXAMINE INBOX (QRESYNC ({uv} {old} 1:10 (1,2,5 1,3,6)))
S: * OK [CLOSED] Previous mailbox closed.
S: <...>
S: <...>
S: * 7 EXISTS
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * VANISHED (EARLIER) 7,9
S: * OK [MAILBOXID (<...>)] Ok
S: a4 OK [READ-ONLY] Examine completed.
C: a5 UID FETCH 5:* (FLAGS) (CHANGEDSINCE {old} VANISHED)
S: * VANISHED (EARLIER) 7,9
S: a5 OK Fetch completed.
""",
    )


async def _prune_history(server, mailbox_id: int) -> None:
    """Drop the mailbox's expunge history as the store's housekeeping does past its bound."""
    from carteiro.store.memory import MemoryMailStore

    store = server.store
    if isinstance(store, MemoryMailStore):
        (await server.account()).prune_expunge_history(mailbox_id)
        return
    from carteiro.store.index import prune_expunged

    await store.write(lambda tx: prune_expunged(tx.conn, 0, [mailbox_id]))


def _imapclient_condstore(port: int) -> dict:
    """imapclient's own CONDSTORE/QRESYNC calls: ENABLE, HIGHESTMODSEQ from SELECT, FETCH
    with a CHANGEDSINCE modifier, SEARCH MODSEQ, and the unsolicited VANISHED it parses."""
    from imapclient import IMAPClient

    out: dict[str, object] = {}
    with IMAPClient("127.0.0.1", port=port, ssl=False) as c:
        c.login(USER, PASSWORD)
        out["caps"] = c.capabilities()
        out["enabled"] = c.enable("QRESYNC")
        sel = c.select_folder("INBOX")
        hm = sel[b"HIGHESTMODSEQ"]
        out["select"] = sel
        c.add_flags([2], [b"\\Flagged"])
        out["changed"] = c.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {hm}"])
        out["search"] = c.search(["MODSEQ", str(hm + 1)])
        c.add_flags([1], [b"\\Deleted"])
        out["expunge"] = c.expunge()
    return out


async def test_imapclient_condstore_and_qresync(server):
    import asyncio

    await fill(server, 3)
    out = await asyncio.wait_for(asyncio.to_thread(_imapclient_condstore, server.port), 20)
    assert b"CONDSTORE" in out["caps"] and b"QRESYNC" in out["caps"]
    assert out["enabled"] == [b"QRESYNC"]
    flagged = out["select"][b"HIGHESTMODSEQ"] + 1
    ((uid, data),) = out["changed"].items()
    assert uid == 2 and data[b"FLAGS"] == (b"\\Flagged", b"\\Recent")
    assert data[b"MODSEQ"] == (flagged,)
    assert list(out["search"]) == [2]
    assert out["search"].modseq == flagged
    assert out["expunge"][1] == [(b"VANISHED", 1)]

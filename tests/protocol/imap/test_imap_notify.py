"""NOTIFY (RFC 5465): NOTIFY SET/NONE syntax and its BAD/NO [BADEVENT] answers, STATUS for the
watched mailboxes, events of other mailboxes (STATUS, LIST, METADATA) pushed between commands
and in IDLE, the selected mailbox pushed at once under SELECTED (with the MessageNew fetch
attributes, never setting \\Seen) and held for a command under SELECTED-DELAYED, NONE, and
NOTIFICATIONOVERFLOW. Both stores; a second session makes the changes."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import pytest
from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    play,
    server,
    start_server,
    tls_files,
)

from carteiro.servers.imap import notify

LOGIN = f'LOGIN {USER} "{PASSWORD}"'
MSG = "Subject: hi\r\n\r\nhello\r\n"
APPEND = f"APPEND {{box}} {{{{{len(MSG)}+}}}}\r\n{MSG}"
ALL = (
    "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange "
    "MailboxMetadataChange ServerMetadataChange"
)


def append(tag: str, box: str, session: int = 2) -> str:
    """Transcript lines for an APPEND by session `session` (the literal sent with LITERAL+)."""
    c = f"C{session}:"
    return f"{c} {tag} APPEND {box} {{{len(MSG) - 2}+}}\n{c} Subject: hi\n{c} \n{c} hello"


async def test_syntax_and_refusals(server):
    await play(
        server,
        f"""
S: * OK <...>
C: a0 NOTIFY NONE
S: a0 BAD Command not allowed before authentication
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 NOTIFY SET (SELECTED (MessageNew))
S: a2 BAD NOTIFY: MessageNew and MessageExpunge must be given together
C: a3 NOTIFY SET (PERSONAL (FlagChange))
S: a3 BAD NOTIFY: FlagChange needs MessageNew and MessageExpunge
C: a4 NOTIFY SET (SELECTED (MailboxName))
S: a4 BAD NOTIFY: SELECTED takes message events only
C: a5 NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (SELECTED-DELAYED (MessageNew MessageExpunge))
S: a5 BAD NOTIFY: Only one SELECTED or SELECTED-DELAYED event group
C: a6 NOTIFY SET (PERSONAL (MessageNew MessageExpunge AnnotationChange))
S: a6 NO [BADEVENT ({ALL})] NOTIFY: Unsupported event AnnotationChange
C: a7 NOTIFY SET (PERSONAL (Bogus))
S: a7 NO [BADEVENT ({ALL})] NOTIFY: Unsupported event Bogus
C: a8 NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))
S: a8 BAD NOTIFY: MessageNew fetch attributes are for the selected mailbox only
C: a9 NOTIFY SET (Elsewhere (MessageNew MessageExpunge))
S: a9 BAD NOTIFY: Unknown mailbox filter ELSEWHERE
C: a10 NOTIFY SET (PERSONAL MessageNew)
S: a10 BAD <...>
C: a11 NOTIFY SET
S: a11 BAD <...>
C: a12 NOTIFY SET (SELECTED (MessageNew (RFC822) MessageExpunge))
S: a12 BAD RFC822 and RFC822.TEXT would set \\Seen: use BODY.PEEK[]
C: a13 notify set (selected-delayed (messagenew messageexpunge flagchange)) (subtree (INBOX Lists) (mailboxname)) (mailboxes (Archive Sent) NONE)
S: a13 OK NOTIFY completed.
C: a14 NOTIFY NONE
S: a14 OK NOTIFY completed.
""",
    )


async def test_status_option_and_other_mailboxes(server):
    # RFC 5465 3.1 STATUS, 5.2 MessageNew, 5.4 MailboxName, 5.5 SubscriptionChange, 5.6/5.7;
    # FlagChange is among PERSONAL's events, so every STATUS carries HIGHESTMODSEQ
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 NOTIFY SET STATUS (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange)) (PERSONAL ({ALL}))
S: * STATUS Archive (MESSAGES 0 UIDNEXT 1 UIDVALIDITY <...> UNSEEN 0 HIGHESTMODSEQ <...>)
S: * STATUS Drafts (MESSAGES 0 UIDNEXT 1 UIDVALIDITY <...> UNSEEN 0 HIGHESTMODSEQ <...>)
S: * STATUS Junk (MESSAGES 0 UIDNEXT 1 UIDVALIDITY <...> UNSEEN 0 HIGHESTMODSEQ <...>)
S: * STATUS Sent (MESSAGES 0 UIDNEXT 1 UIDVALIDITY <...> UNSEEN 0 HIGHESTMODSEQ <...>)
S: * STATUS Trash (MESSAGES 0 UIDNEXT 1 UIDVALIDITY <...> UNSEEN 0 HIGHESTMODSEQ <...>)
S: a3 OK NOTIFY completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
{append("b2", "Archive")}
S2: b2 OK <...>
S: * STATUS Archive (MESSAGES 1 UIDNEXT 2 UNSEEN 1 HIGHESTMODSEQ <...>)
C2: b3 CREATE Projects
S2: b3 OK <...>
S: * LIST () "/" Projects
C2: b4 RENAME Projects Done
S2: b4 OK <...>
S: * LIST () "/" Done ("OLDNAME" (Projects))
C2: b5 SUBSCRIBE Done
S2: b5 OK <...>
S: * LIST (\\Subscribed) "/" Done
C2: b6 DELETE Done
S2: b6 OK <...>
S: * LIST (\\NonExistent \\Subscribed) "/" Done
C2: b7 UNSUBSCRIBE Done
S2: b7 OK <...>
S: * LIST (\\NonExistent) "/" Done
C2: b8 SETMETADATA Archive (/private/comment "x")
S2: b8 OK <...>
S: * METADATA Archive /private/comment
C2: b9 SETMETADATA "" (/shared/comment "y")
S2: b9 OK <...>
S: * METADATA "" /shared/comment
C2: b10 SELECT Archive
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: * OK [MAILBOXID (<...>)] Ok
S2: b10 OK <...>
C2: b11 STORE 1 +FLAGS (\\Seen)
S2: * 1 FETCH (FLAGS (\\Seen \\Recent))
S2: b11 OK <...>
S: * STATUS Archive (UIDVALIDITY <...> UNSEEN 0 HIGHESTMODSEQ <...>)
C2: b12 STORE 1 +FLAGS (\\Deleted)
S2: * 1 FETCH (FLAGS (\\Deleted \\Seen \\Recent))
S2: b12 OK <...>
S: * STATUS Archive (UIDVALIDITY <...> UNSEEN 0 HIGHESTMODSEQ <...>)
C2: b13 EXPUNGE
S2: * 1 EXPUNGE
S2: b13 OK <...>
S: * STATUS Archive (MESSAGES 0 UIDNEXT 2 UNSEEN 0 HIGHESTMODSEQ <...>)
# the selected mailbox under SELECTED: pushed at once, with the fetch attributes
{append("b14", "INBOX")}
S2: b14 OK <...>
S: * 1 EXISTS
S: * 1 RECENT
S: * 1 FETCH (UID 1 FLAGS (\\Recent))
C2: b15 SELECT INBOX
S2: * OK [CLOSED] <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: * OK [MAILBOXID (<...>)] Ok
S2: b15 OK <...>
C2: b16 STORE 1 +FLAGS (\\Deleted)
S2: * 1 FETCH (FLAGS (\\Deleted))
S2: b16 OK <...>
S: * 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent))
C2: b17 EXPUNGE
S2: * 1 EXPUNGE
S2: b17 OK <...>
S: * 1 EXPUNGE
C: a4 NOOP
S: a4 OK <...>
""",
    )


async def test_selected_delayed_and_filters(server):
    # SELECTED-DELAYED (RFC 5465 6): the selected mailbox's news wait for a command, while
    # other mailboxes' are pushed; an event of another mailbox is the sync point showing that
    # nothing of INBOX came first. NONE stops the search at its group; SUBTREE and MAILBOXES
    # match by name; INBOXES is INBOX and its inferiors.
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 CREATE INBOX/Lists
S: a2 OK <...>
C: a3 CREATE Work/Deep
S: a3 OK <...>
C: a4 EXAMINE INBOX
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a4 OK [READ-ONLY] Examine completed.
C: a5 NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge)) (MAILBOXES Sent NONE) (SUBTREE Work (MessageNew MessageExpunge)) (INBOXES (MessageNew MessageExpunge)) (PERSONAL (MessageNew MessageExpunge))
S: a5 OK NOTIFY completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
{append("b2", "INBOX")}
S2: b2 OK <...>
{append("b3", "Sent")}
S2: b3 OK <...>
{append("b4", "Work/Deep")}
S2: b4 OK <...>
S: * STATUS Work/Deep (MESSAGES 1 UIDNEXT 2 UNSEEN 1)
{append("b5", "INBOX/Lists")}
S2: b5 OK <...>
S: * STATUS INBOX/Lists (MESSAGES 1 UIDNEXT 2 UNSEEN 1)
C: a6 NOOP
S: * 1 EXISTS
S: * 1 RECENT
S: a6 OK <...>
# NOTIFY NONE: nothing more is pushed; the selected mailbox still gets its usual responses
C: a7 NOTIFY NONE
S: a7 OK <...>
{append("b6", "Archive")}
S2: b6 OK <...>
{append("b7", "INBOX")}
S2: b7 OK <...>
C: a8 NOOP
S: * 2 EXISTS
S: * 2 RECENT
S: a8 OK <...>
""",
    )


async def test_idle_with_notify(server):
    # RFC 5465 4: IDLE also carries the NOTIFY events
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 NOTIFY SET (SUBSCRIBED (MessageNew MessageExpunge SubscriptionChange))
S: a2 OK NOTIFY completed.
C: a3 IDLE
S: + idling
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b0 CREATE Lists
S2: b0 OK <...>
{append("b2", "Lists")}
S2: b2 OK <...>
C2: b3 SUBSCRIBE Lists
S2: b3 OK <...>
S: * LIST (\\Subscribed) "/" Lists
{append("b4", "Lists")}
S2: b4 OK <...>
S: * STATUS Lists (MESSAGES 2 UIDNEXT 3 UNSEEN 2)
C: DONE
S: a3 OK Idle completed.
""",
    )


async def test_message_new_fetch_never_sets_seen(server):
    # RFC 5465 5.2: the fetch attributes of MessageNew come after EXISTS; BODY[...] is
    # answered like BODY.PEEK[...]
    c = await server.connect(login=True)
    await c.cmd("SELECT INBOX")
    lines = await c.cmd(
        "NOTIFY SET (SELECTED (MessageNew (UID BODY[HEADER.FIELDS (SUBJECT)]) MessageExpunge))"
    )
    assert lines[-1].endswith("OK NOTIFY completed."), lines
    await server.deliver(b"Subject: pushed\r\nFrom: x@example.test\r\n\r\nbody\r\n")
    assert await c.line() == "* 1 EXISTS"
    assert await c.line() == "* 1 RECENT"
    head = await c.line()
    assert head == "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {19}", head
    assert await c.line() == "Subject: pushed"
    assert await c.line() == ""
    assert await c.line() == ")"
    flags = await c.cmd("FETCH 1 (FLAGS)")
    assert flags[0] == "* 1 FETCH (FLAGS (\\Recent))", flags


async def test_notification_overflow(server, monkeypatch: pytest.MonkeyPatch):
    # RFC 5465 5.8: a client that does not keep up is told, and NOTIFY is off
    monkeypatch.setattr(notify, "OVERFLOW", 0)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 NOTIFY SET (PERSONAL (MessageNew MessageExpunge MailboxName))
S: a2 OK NOTIFY completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
{append("b2", "Archive")}
S2: b2 OK <...>
S: * STATUS Archive (MESSAGES 1 UIDNEXT 2 UNSEEN 1)
S: * OK [NOTIFICATIONOVERFLOW] Too many notifications; NOTIFY is off
C2: b3 CREATE Other
S2: b3 OK <...>
C: a3 NOOP
S: a3 OK <...>
""",
    )


async def test_selected_without_flagchange_and_deleted_mailbox(server):
    # SELECTED without FlagChange: a flag change alone waits for a command; a deleted selected
    # mailbox ends the session at once (as after any command: BYE)
    acct = await server.account()
    await acct.create_mailbox("Box")
    await acct.append("Box", MSG.encode())
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT Box
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (PERSONAL (MessageNew MessageExpunge))
S: a3 OK NOTIFY completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b2 SELECT Box
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: * OK [MAILBOXID (<...>)] Ok
S2: b2 OK <...>
C2: b3 STORE 1 +FLAGS (\\Flagged)
S2: * 1 FETCH (FLAGS (\\Flagged))
S2: b3 OK <...>
{append("b4", "Archive")}
S2: b4 OK <...>
S: * STATUS Archive (MESSAGES 1 UIDNEXT 2 UNSEEN 1)
C: a4 NOOP
S: * 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))
S: a4 OK <...>
C2: b5 UNSELECT
S2: b5 OK <...>
C2: b6 DELETE Box
S2: b6 OK <...>
S: * 1 EXPUNGE
S: * BYE Selected mailbox was deleted, have to disconnect
""",
    )


async def test_resync_reports_what_changed(server):
    # a Resync from the feed (a slow consumer's backlog collapsed): the mailbox list is read again
    # and the watched mailboxes' STATUS sent, since which changed cannot be known
    c = await server.connect(login=True)
    lines = await c.cmd("NOTIFY SET (SUBTREE Work (MessageNew MessageExpunge MailboxName))")
    assert lines[-1].endswith("OK NOTIFY completed."), lines
    acct = await server.account()
    notifier_sees = await c.cmd("NOOP")  # the NOTIFY session is waiting again
    assert notifier_sees[-1].split()[1] == "OK"
    from carteiro.store.api import Resync

    hub = server.store.hub  # type: ignore[attr-defined]
    await acct.create_mailbox("Work")
    assert await c.line() == '* LIST () "/" Work'
    hub.publish(USER, [Resync(USER)])
    assert await c.line() == "* STATUS Work (MESSAGES 0 UIDNEXT 1 UNSEEN 0)"


async def test_nothing_pushed_inside_a_command(server):
    # a synchronising literal being sent: the command is in progress, the STATUS waits for its end
    c = await server.connect(login=True)
    lines = await c.cmd("NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
    assert lines[-1].endswith("OK NOTIFY completed."), lines
    await c.send(b"p1 APPEND Drafts {%d}\r\n" % len(MSG))
    assert (await c.line()).startswith("+ ")
    await server.deliver(MSG.encode(), "Archive")
    await c.send(MSG.encode()[:5])
    await c.send(MSG.encode()[5:] + b"\r\n")
    got = [await c.line(), await c.line()]
    assert got[0].startswith("p1 OK [APPENDUID "), got
    assert got[1] == "* STATUS Archive (MESSAGES 1 UIDNEXT 2 UNSEEN 1)", got


async def test_condstore_status_has_highestmodseq(server):
    # once CONDSTORE is on, every STATUS NOTIFY sends carries HIGHESTMODSEQ (as mox does)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 ENABLE CONDSTORE
S: * ENABLED CONDSTORE
S: a2 OK <...>
C: a3 NOTIFY SET STATUS (MAILBOXES (Sent Nonesuch) (MessageNew MessageExpunge FlagChange))
S: * STATUS Sent (MESSAGES 0 UIDNEXT 1 UIDVALIDITY <...> UNSEEN 0 HIGHESTMODSEQ <...>)
S: a3 OK NOTIFY completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
{append("b2", "Sent")}
S2: b2 OK <...>
S: * STATUS Sent (MESSAGES 1 UIDNEXT 2 UNSEEN 1 HIGHESTMODSEQ <...>)
C2: b3 CREATE Nonesuch
S2: b3 OK <...>
{append("b4", "Nonesuch")}
S2: b4 OK <...>
S: * STATUS Nonesuch (MESSAGES 1 UIDNEXT 2 UNSEEN 1 HIGHESTMODSEQ <...>)
""",
    )

"""NOTIFY (RFC 5465) and GETMETADATA/SETMETADATA (RFC 5464) syntax: typed requests, BAD for what
the grammar or the RFC's rules refuse, NO [BADEVENT] for an event not offered, and no exception
on any mix of tokens."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.proto.imap import metadata as pm
from carteiro.proto.imap import notify as pn
from carteiro.proto.imap.parser import ParseError, parse_command, parse_wire
from carteiro.proto.imap.receiver import NEED_DATA, Command, Receiver


def test_notify_set_groups() -> None:
    req = parse_wire(
        b"a NOTIFY SET STATUS (SELECTED (MessageNew (UID BODY.PEEK[HEADER]) MessageExpunge"
        b" FlagChange)) (SUBTREE (INBOX Lists) (MessageNew MessageExpunge MailboxName))"
        b' (MAILBOXES "a b" NONE) (inboxes (messagenew messageexpunge))\r\n'
    )
    assert isinstance(req, pn.Notify) and req.status
    sel, sub, boxes, inboxes = req.groups
    assert sel.spec == pn.SELECTED and sel.selected
    assert [e.name for e in sel.events or ()] == ["MessageNew", "MessageExpunge", "FlagChange"]
    assert [str(a) for a in (sel.events or ())[0].fetch] == ["UID", "BODY.PEEK[HEADER]"]
    assert sub.mailboxes == ("INBOX", "Lists") and sub.names() == {
        "MessageNew",
        "MessageExpunge",
        "MailboxName",
    }
    assert boxes.mailboxes == ("a b",) and boxes.events is None
    assert inboxes.spec == pn.INBOXES
    assert parse_wire(b"a NOTIFY NONE\r\n") == pn.Notify()


@pytest.mark.parametrize(
    "line, status, code",
    [
        (b"a NOTIFY\r\n", "BAD", None),
        (b"a NOTIFY NONE x\r\n", "BAD", None),
        (b"a NOTIFY SET ()\r\n", "BAD", None),
        (b"a NOTIFY SET (PERSONAL (MessageNew))\r\n", "BAD", None),
        (b"a NOTIFY SET (PERSONAL (MessageExpunge))\r\n", "BAD", None),
        (b"a NOTIFY SET (PERSONAL (MessageNew MessageExpunge MessageNew))\r\n", "BAD", None),
        (b"a NOTIFY SET (SELECTED (SubscriptionChange))\r\n", "BAD", None),
        (b"a NOTIFY SET (SUBTREE (MailboxName))\r\n", "BAD", None),
        (b"a NOTIFY SET (PERSONAL (MailboxName)) \r\n", "BAD", None),
        (b"a NOTIFY SET (PERSONAL (AnnotationChange))\r\n", "NO", pn.BADEVENT),
        (b"a NOTIFY SET (PERSONAL (x-vendor-event))\r\n", "NO", pn.BADEVENT),
    ],
)
def test_notify_refusals(line: bytes, status: str, code: str | None) -> None:
    res = parse_wire(line)
    assert isinstance(res, ParseError) and res.status == status and res.code == code, res


def test_metadata_commands() -> None:
    assert parse_wire(b'a GETMETADATA "" /shared/Comment\r\n') == pm.GetMetadata(
        "", ("/shared/comment",)
    )
    assert parse_wire(
        b"a GETMETADATA (DEPTH infinity MAXSIZE 1024) INBOX (/private /shared/x)\r\n"
    ) == pm.GetMetadata("INBOX", ("/private", "/shared/x"), 1024, -1)
    assert parse_wire(b"a SETMETADATA &AOk- (/private/a {2}\r\nhi /shared/b NIL)\r\n") == (
        pm.SetMetadata("\xe9", (("/private/a", b"hi"), ("/shared/b", None)))
    )
    for bad in (
        b"a GETMETADATA INBOX\r\n",
        b"a GETMETADATA INBOX /private/\r\n",
        b"a GETMETADATA INBOX /private//x\r\n",
        b"a GETMETADATA INBOX /other/x\r\n",
        b"a GETMETADATA (DEPTH 1 DEPTH 0) INBOX /private/x\r\n",
        b"a GETMETADATA (FOO 1) INBOX /private/x\r\n",
        b'a SETMETADATA INBOX (/private "x")\r\n',
        b"a SETMETADATA INBOX (/private/x)\r\n",
        b'a SETMETADATA INBOX /private/x "y"\r\n',
        b'a SETMETADATA INBOX (/private/\xc3\xa9 "y")\r\n',
    ):
        res = parse_wire(bad)
        assert isinstance(res, ParseError) and res.status == "BAD", (bad, res)


TOKENS = [
    "SET",
    "NONE",
    "STATUS",
    "(SELECTED",
    "(PERSONAL",
    "(SUBTREE",
    "(MAILBOXES",
    "(MessageNew",
    "MessageExpunge)",
    "(UID",
    "FLAGS)",
    "BODY.PEEK[HEADER])",
    ")",
    "(",
    "INBOX",
    '"a b"',
    "/private/comment",
    "(/shared/x",
    '"v")',
    "NIL",
    "(DEPTH",
    "infinity",
    "(MAXSIZE",
    "5)",
    "~{1+}\r\nx",
    "{2+}\r\nab",
    "AnnotationChange",
    "MailboxName",
]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["NOTIFY", "GETMETADATA", "SETMETADATA"]),
    st.lists(st.sampled_from(TOKENS), max_size=12),
    st.lists(st.sampled_from(["", " "]), max_size=12),
)
def test_never_raises_on_token_soup(name: str, tokens: list[str], seps: list[str]) -> None:
    text = "t " + name
    for i, tok in enumerate(tokens):
        text += (seps[i] if i < len(seps) else " ") + tok
    r = Receiver()
    r.feed(text.encode() + b"\r\n")
    while (ev := r.next_event()) is not NEED_DATA:
        if isinstance(ev, Command):
            result = parse_command(ev)
            if isinstance(result, ParseError):
                assert result.tag == "t" and result.reason and "\n" not in result.reason

"""Response rendering: values, codes, and the untagged/tagged lines of RFC 9051 7 examples."""

from __future__ import annotations

import datetime as dt

import pytest

from carteiro.proto.imap import responses as r
from carteiro.proto.imap.responses import Atom, Code, Literal8, Raw
from carteiro.proto.imap.sets import SequenceSet


def test_value_convention() -> None:
    assert r.encode(None) == b"NIL"
    assert r.encode(42) == b"42"
    assert r.encode("hello") == b'"hello"'
    assert r.encode('say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'
    assert r.encode("") == b'""'
    assert r.encode(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert r.encode(Literal8(b"\x00\x01")) == b"~{2}\r\n\x00\x01"
    assert r.encode(Atom("\\Seen")) == b"\\Seen"
    assert r.encode(Raw(b"(prerendered)")) == b"(prerendered)"
    assert r.encode([1, "a", None, [Atom("X")]]) == b'(1 "a" NIL (X))'
    assert r.encode(()) == b"()"
    assert r.encode(SequenceSet.parse("1:3,5")) == b"1:3,5"
    when = dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(-dt.timedelta(hours=7)))
    assert r.encode(when) == b'"17-Jul-1996 02:44:25 -0700"'
    assert r.encode(dt.datetime(2024, 1, 5, 9, 0, 0)) == b'" 5-Jan-2024 09:00:00 +0000"'


def test_strings_that_cannot_be_quoted_become_literals() -> None:
    assert r.encode("line\r\nbreak") == b"{11}\r\nline\r\nbreak"
    assert r.encode("café") == b"{5}\r\ncaf\xc3\xa9"
    # RFC 6855 3: quoted UTF-8 once UTF8=ACCEPT is enabled
    assert r.encode("café", utf8=True) == b'"caf\xc3\xa9"'
    assert r.encode("x" * 2000).startswith(b"{2000}\r\n")


def test_bugs_are_type_errors() -> None:
    with pytest.raises(TypeError):
        r.encode(True)
    with pytest.raises(TypeError):
        r.encode(1.5)  # type: ignore[arg-type]


def test_mailbox_names() -> None:
    assert r.encode_mailbox("INBOX") == b"INBOX"
    assert r.encode_mailbox("inbox") == b"INBOX"
    assert r.encode_mailbox("Sent") == b"Sent"
    assert r.encode_mailbox("Sent Items") == b'"Sent Items"'
    assert r.encode_mailbox("") == b'""'
    assert r.encode_mailbox("NIL") == b'"NIL"'
    assert r.encode_mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert r.encode_mailbox("Entwürfe", utf8=True) == b'"Entw\xc3\xbcrfe"'
    assert r.encode_mailbox("a%b") == b'"a%b"'


def test_status_lines() -> None:
    assert (
        r.tagged("a1", "OK", "SELECT completed", r.READ_WRITE)
        == b"a1 OK [READ-WRITE] SELECT completed\r\n"
    )
    assert (
        r.tagged("a1", "NO", "No such mailbox", "TRYCREATE")
        == b"a1 NO [TRYCREATE] No such mailbox\r\n"
    )
    assert r.untagged_status("OK", "Ready", Code.capability(["IMAP4rev1", "IDLE"])) == (
        b"* OK [CAPABILITY IMAP4rev1 IDLE] Ready\r\n"
    )
    assert r.bad(None, "Invalid tag") == b"* BAD Invalid tag\r\n"
    assert r.bad("t", "Literal too big", "TOOBIG") == b"t BAD [TOOBIG] Literal too big\r\n"
    assert r.bye("Logging out") == b"* BYE Logging out\r\n"
    assert r.preauth("hi") == b"* PREAUTH hi\r\n"


def test_status_text_cannot_inject_lines() -> None:
    assert r.tagged("a", "BAD", "x\r\n* OK evil") == b"a BAD x  * OK evil\r\n"
    assert r.tagged("a", "BAD", "[ALERT] fake") == b"a BAD  [ALERT] fake\r\n"
    assert r.tagged("a", "OK", "") == b"a OK Done\r\n"
    assert r.tagged("a", "NO", "naïve") == b"a NO na?ve\r\n"


def test_codes() -> None:
    assert (
        bytes(Code.permanentflags(["\\Deleted", "\\Seen", "\\*"]))
        == b"[PERMANENTFLAGS (\\Deleted \\Seen \\*)]"
    )
    assert bytes(Code.uidvalidity(3857529045)) == b"[UIDVALIDITY 3857529045]"
    assert bytes(Code.uidnext(4392)) == b"[UIDNEXT 4392]"
    assert bytes(Code.unseen(12)) == b"[UNSEEN 12]"
    assert bytes(Code.highestmodseq(715194045007)) == b"[HIGHESTMODSEQ 715194045007]"
    # RFC 4315 examples
    assert bytes(Code.appenduid(38505, [3955])) == b"[APPENDUID 38505 3955]"
    assert (
        bytes(Code.copyuid(38505, [304, 319, 320], [3956, 3957, 3958]))
        == b"[COPYUID 38505 304,319:320 3956:3958]"
    )
    assert (
        bytes(Code.copyuid(1, [5, 3, 4], [10, 11, 12])) == b"[COPYUID 1 5,3:4 10:12]"
    )  # pairs by position
    assert bytes(Code.modified([7, 9, 10])) == b"[MODIFIED 7,9:10]"
    assert bytes(Code.badcharset(["UTF-8", "US-ASCII"])) == b"[BADCHARSET (UTF-8 US-ASCII)]"
    assert bytes(Code.appendlimit(None)) == b"[APPENDLIMIT NIL]"
    assert bytes(r.NOMODSEQ) == b"[NOMODSEQ]" and bytes(r.CLOSED) == b"[CLOSED]"
    assert bytes(r.UNKNOWN_CTE) == b"[UNKNOWN-CTE]" and bytes(r.OVERQUOTA) == b"[OVERQUOTA]"
    assert Code.parse("BADCHARSET (UTF-8)") == Code("BADCHARSET", b"(UTF-8)")


def test_continuations() -> None:
    assert r.continuation() == b"+ Ready\r\n"
    assert r.continuation("idling") == b"+ idling\r\n"
    assert r.continuation_data(b"") == b"+ \r\n"
    assert r.continuation_data(b"Username:") == b"+ VXNlcm5hbWU6\r\n"


def test_simple_untagged() -> None:
    assert r.exists(172) == b"* 172 EXISTS\r\n"
    assert r.recent(1) == b"* 1 RECENT\r\n"
    assert r.expunge(3) == b"* 3 EXPUNGE\r\n"
    assert r.flags(["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]) == (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    )
    assert r.capability(["IMAP4rev1", "STARTTLS", "AUTH=GSSAPI", "LOGINDISABLED"]) == (
        b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI LOGINDISABLED\r\n"
    )
    assert r.enabled(["CONDSTORE"]) == b"* ENABLED CONDSTORE\r\n"
    assert r.enabled([]) == b"* ENABLED\r\n"
    assert r.vanished([41, 43, 44, 45], earlier=True) == b"* VANISHED (EARLIER) 41,43:45\r\n"
    assert r.vanished(SequenceSet.parse("405,407")) == b"* VANISHED 405,407\r\n"
    assert r.untagged(3, Atom("EXISTS")) == b"* 3 EXISTS\r\n"


def test_fetch_response() -> None:
    line = r.fetch(
        12,
        [
            ("FLAGS", r.flag_list(["\\Seen"])),
            (
                "INTERNALDATE",
                dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(-dt.timedelta(hours=7))),
            ),
            ("RFC822.SIZE", 4286),
            ("UID", 5),
            ("MODSEQ", [624140003]),
            ("BODY[HEADER.FIELDS (Subject)]", b"Subject: x\r\n\r\n"),
            ("BINARY[1]", Literal8(b"\x00")),
        ],
    )
    assert line == (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286 UID 5 '
        b"MODSEQ (624140003) BODY[HEADER.FIELDS (Subject)] {14}\r\nSubject: x\r\n\r\n BINARY[1] ~{1}\r\n\x00)\r\n"
    )


def test_envelope_like_nested_values() -> None:
    env = [
        "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        "IMAP4rev1 WG mtg summary and minutes",
        [["Terry Gray", None, "gray", "cac.washington.edu"]],
        None,
        None,
        None,
        None,
    ]
    assert r.encode(env) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) NIL NIL NIL NIL)'
    )


def test_search_and_esearch() -> None:
    assert r.search([2, 84, 882]) == b"* SEARCH 2 84 882\r\n"
    assert r.search([]) == b"* SEARCH\r\n"
    assert r.search([2, 5], modseq=917162500) == b"* SEARCH 2 5 (MODSEQ 917162500)\r\n"
    assert r.search([], modseq=5) == b"* SEARCH\r\n"
    # RFC 4731 examples
    assert r.esearch("A282", min=2, count=3) == b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'
    assert r.esearch("A283", all=[2, 10, 11]) == b'* ESEARCH (TAG "A283") ALL 2,10:11\r\n'
    assert r.esearch("A284", count=0) == b'* ESEARCH (TAG "A284") COUNT 0\r\n'
    assert (
        r.esearch("A285", uid=True, min=7, max=3800)
        == b'* ESEARCH (TAG "A285") UID MIN 7 MAX 3800\r\n'
    )
    assert r.esearch("A286", all=[]) == b'* ESEARCH (TAG "A286")\r\n'
    assert (
        r.esearch(None, uid=True, all=SequenceSet.parse("1:3"), modseq=9)
        == b"* ESEARCH UID ALL 1:3 MODSEQ 9\r\n"
    )


def test_list_lsub_status() -> None:
    assert r.list_item(["\\Noselect"], "/", "") == b'* LIST (\\Noselect) "/" ""\r\n'
    assert (
        r.list_item(["\\HasNoChildren"], "/", "inbox") == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    )
    assert r.list_item([], None, "foo") == b"* LIST () NIL foo\r\n"
    assert r.list_item([], "\\", "a\\b") == b'* LIST () "\\\\" "a\\\\b"\r\n'
    assert (
        r.list_item(["\\Sent"], "/", "Gesendete Objekte")
        == b'* LIST (\\Sent) "/" "Gesendete Objekte"\r\n'
    )
    assert r.list_item([], "/", "台北") == b'* LIST () "/" &U,BTFw-\r\n'
    # RFC 5258 CHILDINFO, RFC 9051 OLDNAME
    assert r.list_item(["\\Subscribed"], "/", "Fruit/Banana", childinfo=["SUBSCRIBED"]) == (
        b'* LIST (\\Subscribed) "/" Fruit/Banana ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    )
    assert (
        r.list_item([], "/", "NewName", oldname="OldName")
        == b'* LIST () "/" NewName ("OLDNAME" (OldName))\r\n'
    )
    assert r.list_item([], "/", "x", command="LSUB") == b'* LSUB () "/" x\r\n'
    assert r.status("blurdybloop", {"MESSAGES": 231, "UIDNEXT": 44292}) == (
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
    )
    assert r.status("Sent Items", [("SIZE", 10)]) == b'* STATUS "Sent Items" (SIZE 10)\r\n'


def test_namespace_and_id() -> None:
    assert r.namespace([("", "/")]) == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert r.namespace([("", "/")], [("~", "/")], [("#shared/", "/"), ("#public/", "/")]) == (
        b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("#public/" "/"))\r\n'
    )
    assert r.id_response(None) == b"* ID NIL\r\n"
    assert (
        r.id_response({"name": "carteiro", "version": None})
        == b'* ID ("name" "carteiro" "version" NIL)\r\n'
    )

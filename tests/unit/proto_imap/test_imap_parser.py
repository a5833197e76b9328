"""parse_<command>: typed results for valid commands, a tagged BAD with a reason for the rest."""

from __future__ import annotations

import datetime as dt

import pytest

from carteiro.proto.imap import commands as c
from carteiro.proto.imap.fetch import BINARY, BINARY_SIZE, BODY_SECTION, FetchAttr, Partial, Section
from carteiro.proto.imap.parser import ParseError, parse_command, parse_wire
from carteiro.proto.imap.receiver import Command
from carteiro.proto.imap.search import (
    SearchAll,
    SearchAnd,
    SearchBody,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSeq,
    SearchSize,
    SearchText,
    SearchWithin,
)
from carteiro.proto.imap.sets import SequenceSet


def p(line: str | bytes, *, utf8: bool = False) -> object:
    data = line.encode() if isinstance(line, str) else line
    return parse_wire(data + b"\r\n", utf8=utf8)


def bad(line: str | bytes, *, utf8: bool = False) -> str:
    result = p(line, utf8=utf8)
    assert isinstance(result, ParseError), result
    assert result.status == "BAD"
    assert result.reason
    return result.reason


S = SequenceSet.parse


# -- commands without arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("CAPABILITY", c.Capability),
        ("NOOP", c.Noop),
        ("LOGOUT", c.Logout),
        ("STARTTLS", c.StartTLS),
        ("CHECK", c.Check),
        ("CLOSE", c.Close),
        ("UNSELECT", c.Unselect),
        ("EXPUNGE", c.Expunge),
        ("IDLE", c.Idle),
        ("NAMESPACE", c.Namespace),
    ],
)
def test_no_argument_commands(name: str, cls: type) -> None:
    assert p(f"a1 {name}") == cls()
    assert p(f"a1 {name.lower()}") == cls()
    assert "extra" in bad(f"a1 {name} foo")


def test_unknown_command() -> None:
    result = p("a1 XYZZY")
    assert result == ParseError("a1", "Unknown command XYZZY")


def test_parse_command_takes_receiver_commands() -> None:
    cmd = Command("t", "SELECT", (b" inbox",))
    assert parse_command(cmd) == c.Select("INBOX")


# -- LOGIN / AUTHENTICATE ----------------------------------------------------------------------


def test_login_atoms_quoted_literals() -> None:
    assert p("a001 LOGIN SMITH SESAME") == c.Login("SMITH", "SESAME")
    assert p('a LOGIN "fred smith" "pa\\"ss\\\\word"') == c.Login("fred smith", 'pa"ss\\word')
    assert p(b"a LOGIN {4}\r\nfred {7+}\r\np\xc3\xa4sswd") == c.Login("fred", "pässwd")
    assert p('a LOGIN "" ""') == c.Login("", "")


def test_login_password_not_in_repr() -> None:
    assert "SESAME" not in repr(p("a LOGIN SMITH SESAME"))


@pytest.mark.parametrize(
    "line",
    [
        "a LOGIN",
        "a LOGIN fred",
        'a LOGIN fred "unterminated',
        "a LOGIN fred  sesame",
        "a LOGIN fred sesame extra",
        "a LOGIN (fred) sesame",
        'a LOGIN "a\\x" b',
    ],
)
def test_login_bad(line: str) -> None:
    bad(line)


def test_login_refuses_invalid_utf8_and_nul() -> None:
    assert "UTF-8" in bad(b"a LOGIN {2}\r\n\xff\xfe x")
    assert "NUL" in bad(b"a LOGIN {3}\r\na\x00b x")


def test_authenticate() -> None:
    assert p("A001 AUTHENTICATE GSSAPI") == c.Authenticate("GSSAPI", None)
    assert p("a authenticate plain") == c.Authenticate("PLAIN", None)
    # RFC 4959 SASL-IR
    assert p("a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=") == c.Authenticate(
        "PLAIN", b"test\x00test\x00test"
    )
    assert p("a AUTHENTICATE PLAIN =") == c.Authenticate("PLAIN", b"")
    assert "base64" in bad("a AUTHENTICATE PLAIN dGVzd")
    assert "Invalid base64" in bad("a AUTHENTICATE PLAIN ***")
    assert "Invalid base64" in bad("a AUTHENTICATE PLAIN %%%")
    bad("a AUTHENTICATE")


# -- ENABLE / ID --------------------------------------------------------------------------------


def test_enable() -> None:
    assert p("t2 ENABLE CONDSTORE X-GOOD-IDEA") == c.Enable(("CONDSTORE", "X-GOOD-IDEA"))
    assert p("t ENABLE utf8=accept qresync") == c.Enable(("UTF8=ACCEPT", "QRESYNC"))
    bad("t ENABLE")
    bad("t ENABLE (CONDSTORE)")


def test_id() -> None:
    r = p('a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")')
    assert r == c.Id(
        (("name", "sodr"), ("version", "19.34"), ("vendor", "Pink Floyd Music Limited"))
    )
    assert p("a042 ID NIL") == c.Id(None)
    assert p('a ID ("os" NIL)') == c.Id((("os", None),))
    assert p('a ID ("os" "NIL")') == c.Id((("os", "NIL"),))
    assert p("a ID ()") == c.Id(())
    bad('a ID ("name")')
    bad("a ID")
    assert "too long" in bad('a ID ("' + "x" * 31 + '" "v")')
    pairs = " ".join(f'"k{i}" "v"' for i in range(31))
    assert "Too many" in bad(f"a ID ({pairs})")


# -- SELECT / EXAMINE ---------------------------------------------------------------------------


def test_select_examine() -> None:
    assert p("A142 SELECT INBOX") == c.Select("INBOX")
    assert p("A142 SELECT inBox") == c.Select("INBOX")
    assert p("A932 EXAMINE blurdybloop") == c.Select("blurdybloop", readonly=True)
    assert p('a SELECT "Sent Items"') == c.Select("Sent Items")
    assert p("a SELECT INBOX/Sub") == c.Select("INBOX/Sub")  # prefix case is kept


def test_select_condstore_qresync() -> None:
    # RFC 7162 3.1.8, 3.2.5.1 examples
    assert p("A160 SELECT INBOX (CONDSTORE)") == c.Select("INBOX", condstore=True)
    r = p("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))")
    assert r == c.Select(
        "INBOX", qresync=c.QResync(67890007, 20050715194045000, S("41,43:211,214:541"))
    )
    r = p(
        "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 "
        "(5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))"
    )
    assert isinstance(r, c.Select) and r.qresync is not None
    assert r.qresync.known_uids == S("1:29997")
    assert r.qresync.known_sequence == (
        S("5000,7500,9000,9990:9999"),
        S("15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997"),
    )
    r = p("a EXAMINE INBOX (QRESYNC (1 2 (1:2 5:6)))")
    assert r == c.Select("INBOX", True, qresync=c.QResync(1, 2, None, (S("1:2"), S("5:6"))))
    assert p("a SELECT x (QRESYNC (1 2))") == c.Select("x", qresync=c.QResync(1, 2))


@pytest.mark.parametrize(
    "line",
    [
        "a SELECT",
        "a SELECT INBOX ()",
        "a SELECT INBOX (FOO)",
        "a SELECT INBOX (CONDSTORE CONDSTORE)",
        "a SELECT INBOX (QRESYNC)",
        "a SELECT INBOX (QRESYNC (0 1))",
        "a SELECT INBOX (QRESYNC (1 2 1:*))",
        "a SELECT INBOX (QRESYNC (1 2 (1:2)))",
        "a SELECT INBOX (CONDSTORE",
        "a SELECT Caf\xc3\xa9",
    ],
)
def test_select_bad(line: str) -> None:
    bad(line.encode("latin-1"))


# -- mailbox names ------------------------------------------------------------------------------


def test_mailbox_names_modified_utf7() -> None:
    assert p("a CREATE ~peter/mail/&U,BTFw-/&ZeVnLIqe-") == c.Create("~peter/mail/台北/日本語")
    assert p("a CREATE Tom&-Jerry") == c.Create("Tom&Jerry")
    # good syntax, not valid modified UTF-7: parsed (the server answers NO), never BAD
    for line, name in [("a CREATE &Jjo!", "&Jjo!"), ("a SELECT Tom&Jerry", "Tom&Jerry")]:
        req = p(line)
        assert req == (c.Create(name) if "CREATE" in line else c.Select(name))
        assert isinstance(req.mailbox, c.UndecodableName)  # type: ignore[attr-defined]
    assert not isinstance(p("a CREATE Tom&-Jerry").mailbox, c.UndecodableName)  # type: ignore[attr-defined]
    lst = p('a LIST &Jjo ("&AGE-" x)')
    assert isinstance(lst.reference, c.UndecodableName)  # type: ignore[attr-defined]
    assert [isinstance(x, c.UndecodableName) for x in lst.patterns] == [True, False]  # type: ignore[attr-defined]


def test_mailbox_names_utf8_accept() -> None:
    # RFC 6855 3: with UTF8=ACCEPT names are UTF-8 in quoted strings, & is an ampersand
    assert p('a CREATE "Café & Co"', utf8=True) == c.Create("Café & Co")
    assert p('a SELECT "inbox"', utf8=True) == c.Select("INBOX")
    assert "Control" in bad(b"a CREATE {3}\r\na\x01b", utf8=True)


def test_create_special_use() -> None:
    assert p("A003 CREATE owatagu/") == c.Create("owatagu/")
    assert p('t1 CREATE "Everything" (USE (\\All))') == c.Create("Everything", ("\\All",))
    assert p("a CREATE x (USE (\\drafts \\X-Custom))") == c.Create("x", ("\\Drafts", "\\X-Custom"))
    assert p("a CREATE x (USE ())") == c.Create("x")
    bad("a CREATE x (USE (Drafts))")
    bad("a CREATE x (FOO (bar))")
    bad("a CREATE")


def test_delete_rename_subscribe() -> None:
    assert p("A683 DELETE blurdybloop") == c.Delete("blurdybloop")
    assert p("A683 RENAME blurdybloop sarasoop") == c.Rename("blurdybloop", "sarasoop")
    assert p("A002 SUBSCRIBE #news.comp.mail.mime") == c.Subscribe("#news.comp.mail.mime")
    assert p("A002 UNSUBSCRIBE #news.comp.mail.mime") == c.Unsubscribe("#news.comp.mail.mime")
    bad("a RENAME x")
    bad("a DELETE a b")


# -- LIST / LSUB / STATUS ---------------------------------------------------------------------


def test_list_basic() -> None:
    assert p('A101 LIST "" ""') == c.List("", ("",))
    assert p("A202 LIST ~/Mail/ %") == c.List("~/Mail/", ("%",))
    assert p('A682 LIST "" *') == c.List("", ("*",))
    assert p("a LIST #news.comp.mail.misc foo*bar]") == c.List(
        "#news.comp.mail.misc", ("foo*bar]",)
    )
    assert p('a LIST "" "&AOk-t*"') == c.List("", ("ét*",))


def test_list_extended() -> None:
    # RFC 5258 5 examples
    assert p('A02 LIST (SUBSCRIBED) "" "*"') == c.List(
        "", ("*",), frozenset({"SUBSCRIBED"}), extended=True
    )
    r = p('A04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)')
    assert r == c.List(
        "",
        ("%",),
        frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
        frozenset({"CHILDREN"}),
        extended=True,
    )
    assert p('A05 LIST "" ("INBOX" "Drafts" "Sent/%")') == c.List(
        "", ("INBOX", "Drafts", "Sent/%"), extended=True
    )
    assert p('a LIST "" % RETURN ()') == c.List("", ("%",), extended=True)
    assert p('a LIST () "" %') == c.List("", ("%",), extended=True)
    # RFC 6154 and RFC 5819
    assert p('t3 LIST (SPECIAL-USE) "" *') == c.List(
        "", ("*",), frozenset({"SPECIAL-USE"}), extended=True
    )
    r = p('A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))')
    assert r == c.List(
        "",
        ("%",),
        return_opts=frozenset({"STATUS"}),
        status_items=("MESSAGES", "UNSEEN"),
        extended=True,
    )


@pytest.mark.parametrize(
    "line",
    [
        'a LIST (RECURSIVEMATCH) "" %',  # RFC 5258 3.1
        'a LIST (REMOTE RECURSIVEMATCH) "" %',
        'a LIST (FOO) "" %',
        'a LIST "" % RETURN (FOO)',
        'a LIST "" % RETURN (STATUS ())',
        'a LIST "" % RETURN (STATUS (BOGUS))',
        'a LIST "" % EXTRA (CHILDREN)',
        'a LIST "" ()',
        "a LIST",
        'a LIST ""',
    ],
)
def test_list_bad(line: str) -> None:
    bad(line)


def test_lsub() -> None:
    assert p('A002 LSUB "#news." "comp.mail.*"') == c.Lsub("#news.", "comp.mail.*")
    assert p('A003 LSUB "#news." comp.%') == c.Lsub("#news.", "comp.%")


def test_status() -> None:
    assert p("A042 STATUS blurdybloop (UIDNEXT MESSAGES)") == c.Status(
        "blurdybloop", ("UIDNEXT", "MESSAGES")
    )
    r = p(
        "a STATUS INBOX (messages size deleted highestmodseq appendlimit recent unseen uidvalidity)"
    )
    assert isinstance(r, c.Status)
    assert r.items[0] == "MESSAGES" and "APPENDLIMIT" in r.items and len(r.items) == 8
    bad("a STATUS INBOX ()")
    bad("a STATUS INBOX (FOO)")
    bad("a STATUS INBOX MESSAGES")


# -- APPEND -------------------------------------------------------------------------------------

MSG = b"Subject: hi\r\n\r\nhello\r\n"


def test_append_simple() -> None:
    r = p(b"A003 APPEND saved-messages (\\Seen) {%d}\r\n%s" % (len(MSG), MSG))
    assert r == c.Append("saved-messages", (c.AppendMessage(("\\Seen",), None, MSG),))
    r = p(b"a APPEND INBOX {%d+}\r\n%s" % (len(MSG), MSG))
    assert r == c.Append("INBOX", (c.AppendMessage((), None, MSG),))


def test_append_date_time_and_flags() -> None:
    r = p(
        b'a APPEND x (\\seen $Forwarded) " 7-Feb-1994 22:43:04 -0800" {%d}\r\n%s' % (len(MSG), MSG)
    )
    assert isinstance(r, c.Append)
    (m,) = r.messages
    assert m.flags == ("\\Seen", "$Forwarded")
    assert m.internal_date == dt.datetime(
        1994, 2, 7, 22, 43, 4, tzinfo=dt.timezone(-dt.timedelta(hours=8))
    )
    r = p(b'a APPEND x "17-Jul-1996 02:44:25 +0130" {1}\r\nx')
    assert isinstance(r, c.Append) and r.messages[0].flags == ()


def test_multiappend() -> None:
    # RFC 3502 6 example shape
    data = (
        b'a APPEND saved-messages (\\Seen) {%d}\r\n%s (\\Seen) " 7-Feb-1994 22:43:04 -0800" {%d}\r\n%s'
        % (
            len(MSG),
            MSG,
            len(MSG),
            MSG,
        )
    )
    r = p(data)
    assert isinstance(r, c.Append) and len(r.messages) == 2
    assert r.messages[1].internal_date is not None


def test_append_binary_literal8() -> None:
    body = b"a\x00b\xff"
    r = p(b"a APPEND Drafts (\\Seen) ~{4}\r\n" + body)
    assert r == c.Append("Drafts", (c.AppendMessage(("\\Seen",), None, body, binary=True),))


def test_append_utf8() -> None:
    # RFC 6855 4
    r = p(b"a APPEND INBOX UTF8 (~{5+}\r\nhello)")
    assert r == c.Append("INBOX", (c.AppendMessage((), None, b"hello", binary=True, utf8=True),))
    bad(b"a APPEND INBOX UTF8 ({5+}\r\nhello)")


def test_append_catenate() -> None:
    # RFC 4469 6
    r = p(
        b'A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL "/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"'
        b' TEXT {6}\r\n\r\nhi\r\n URL "/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME")'
    )
    assert isinstance(r, c.Append)
    (m,) = r.messages
    assert m.catenate == (
        c.CatenateUrl("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"),
        c.CatenateText(b"\r\nhi\r\n"),
        c.CatenateUrl("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME"),
    )


@pytest.mark.parametrize(
    "data",
    [
        b"a APPEND x (\\Seen)",
        b"a APPEND x",
        b'a APPEND x "hello"',
        b"a APPEND x (\\Recent) {1}\r\nx",
        b"a APPEND x (\\Bogus) {1}\r\nx",
        b'a APPEND x "31-Feb-1994 22:43:04 -0800" {1}\r\nx',
        b'a APPEND x "7-Feb-1994 22:43:04 -0800" {1}\r\nx',  # date-day-fixed: " 7"
        b"a APPEND x {1}\r\nx extra",
        b"a APPEND x {1}\r\nx (\\Seen)",
        b"a APPEND x (\\Seen){1}\r\nx",
    ],
)
def test_append_bad(data: bytes) -> None:
    bad(data)


# -- SEARCH -------------------------------------------------------------------------------------


def test_search_rfc_examples() -> None:
    r = p('A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert r == c.Search(
        SearchAnd(
            (
                SearchFlag("\\Flagged"),
                SearchDate("since", dt.date(1994, 2, 1)),
                SearchNot(SearchHeader("from", "Smith")),
            )
        )
    )
    assert p('A283 SEARCH TEXT "string not in mailbox"') == c.Search(
        SearchText("string not in mailbox")
    )
    r = p(
        b"A284 SEARCH CHARSET UTF-8 TEXT {13}\r\n\xd0\xbd\xd0\xb5\xd1\x82 \xd1\x82\xd0\xb0\xd0\xba"
    )
    assert r == c.Search(SearchText("нет так"), charset="UTF-8")


def test_search_every_key() -> None:
    line = (
        "a SEARCH ALL ANSWERED BCC b BEFORE 1-Feb-1994 BODY x CC c DELETED DRAFT FLAGGED FROM f "
        'HEADER X-Foo "" KEYWORD $Junk LARGER 100 NEW NOT SEEN OLD ON "2-Mar-2000" OR SEEN UNSEEN RECENT SEEN '
        "SENTBEFORE 1-Jan-2000 SENTON 1-Jan-2000 SENTSINCE 1-Jan-2000 SINCE 1-Jan-2000 SMALLER 5 SUBJECT s "
        "TEXT t TO to UID 1:* UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $Junk UNSEEN 1,3:5 * $ "
        "(SEEN DRAFT) OLDER 10 YOUNGER 20 MODSEQ 5"
    )
    r = p(line)
    assert isinstance(r, c.Search)
    assert isinstance(r.key, SearchAnd)
    keys = r.key.keys
    assert keys[0] == SearchAll()
    assert SearchHeader("bcc", "b") in keys
    assert SearchHeader("x-foo", "") in keys
    assert SearchBody("x") in keys
    assert SearchFlag("$Junk") in keys and SearchFlag("$Junk", False) in keys
    assert SearchSize(100, True) in keys and SearchSize(5, False) in keys
    assert SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False))) in keys  # NEW
    assert SearchFlag("\\Recent", False) in keys  # OLD
    assert SearchDate("on", dt.date(2000, 3, 2)) in keys
    assert SearchDate("before", dt.date(2000, 1, 1), sent=True) in keys
    assert SearchOr(SearchFlag("\\Seen"), SearchFlag("\\Seen", False)) in keys
    assert SearchSeq(S("1:*"), uid=True) in keys
    assert SearchSeq(S("1,3:5")) in keys and SearchSeq(S("*")) in keys
    assert SearchSeq(SequenceSet(saved=True)) in keys
    assert SearchAnd((SearchFlag("\\Seen"), SearchFlag("\\Draft"))) in keys
    assert SearchWithin(10, True) in keys and SearchWithin(20, False) in keys
    assert keys[-1] == SearchModSeq(5)


def test_search_keys_case_insensitive() -> None:
    assert p("a search unseen since 1-feb-1994") == c.Search(
        SearchAnd((SearchFlag("\\Seen", False), SearchDate("since", dt.date(1994, 2, 1))))
    )


def test_search_return_esearch() -> None:
    # RFC 4731 3.1, RFC 5182 examples
    r = p('A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert isinstance(r, c.Search) and r.return_opts == frozenset({"MIN", "COUNT"})
    r = p('A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert isinstance(r, c.Search) and r.return_opts == frozenset({"ALL"})
    r = p("A284 UID SEARCH RETURN (SAVE MIN MAX) FLAGGED")
    assert r == c.Search(
        SearchFlag("\\Flagged"), uid=True, return_opts=frozenset({"SAVE", "MIN", "MAX"})
    )
    r = p("A301 UID SEARCH UID $ SMALLER 4096")
    assert r == c.Search(
        SearchAnd((SearchSeq(SequenceSet(saved=True), uid=True), SearchSize(4096, False))), uid=True
    )
    bad("a SEARCH RETURN (FOO) ALL")
    bad("a SEARCH RETURN MIN ALL")


def test_search_modseq() -> None:
    # RFC 7162 3.1.5
    r = p('a SEARCH MODSEQ "/flags/\\\\draft" all 620162338')
    assert r == c.Search(SearchModSeq(620162338, "/flags/\\draft", "all"))
    assert p("a SEARCH MODSEQ 0") == c.Search(SearchModSeq(0))
    bad('a SEARCH MODSEQ "/x" all 5')
    bad('a SEARCH MODSEQ "/flags/\\\\draft" none 5')
    bad("a SEARCH MODSEQ")


def test_search_charsets() -> None:
    r = p(b"a SEARCH CHARSET ISO-8859-1 SUBJECT {4}\r\ncaf\xe9")
    assert r == c.Search(SearchHeader("subject", "café"), charset="ISO-8859-1")
    err = p("a SEARCH CHARSET X-NOPE TEXT a")
    assert isinstance(err, ParseError)
    assert err.status == "NO" and err.code is not None and err.code.startswith("BADCHARSET")
    # not a charset although Python has a codec of that name
    assert isinstance(p("a SEARCH CHARSET base64 TEXT a"), ParseError)
    assert "charset" in bad(b"a SEARCH CHARSET US-ASCII TEXT {1}\r\n\xff")


@pytest.mark.parametrize(
    "line",
    [
        "a SEARCH",
        "a SEARCH FOO",
        "a SEARCH NOT",
        "a SEARCH OR SEEN",
        "a SEARCH (SEEN",
        "a SEARCH SEEN)",
        "a SEARCH ()",
        "a SEARCH SINCE 31-Feb-2000",
        "a SEARCH SINCE 1-Foo-2000",
        "a SEARCH SINCE 1-Feb-00",
        "a SEARCH LARGER x",
        "a SEARCH UID",
        "a SEARCH 0",
        "a SEARCH 1:",
        "a SEARCH KEYWORD \\Seen",
        "a SEARCH HEADER a:b c",
        "a SEARCH  ALL",
        "a SEARCH ALL ",
        "a SEARCH CHARSET",
        "a SEARCH OLDER 0",
    ],
)
def test_search_bad(line: str) -> None:
    bad(line)


def test_search_nesting_is_bounded() -> None:
    assert "deeply" in bad("a SEARCH " + "NOT " * 1000 + "ALL")
    assert "deeply" in bad("a SEARCH " + "(" * 1000 + "ALL" + ")" * 1000)
    assert isinstance(p("a SEARCH " + "NOT " * 50 + "ALL"), c.Search)


# -- FETCH --------------------------------------------------------------------------------------


def test_fetch_rfc_examples() -> None:
    r = p("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])")
    assert r == c.Fetch(
        S("2:4"),
        (
            FetchAttr("FLAGS"),
            FetchAttr(BODY_SECTION, Section((), "HEADER.FIELDS", ("DATE", "FROM"))),
        ),
        False,
    )
    assert p("A999 UID FETCH 4827313:4828442 FLAGS") == c.Fetch(
        S("4827313:4828442"), (FetchAttr("FLAGS"),), True
    )


def test_fetch_macros() -> None:
    r = p("a FETCH 1 all")
    assert isinstance(r, c.Fetch) and r.macro == "ALL"
    assert [a.kind for a in r.items] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]
    r = p("a FETCH 1 FAST")
    assert isinstance(r, c.Fetch) and [a.kind for a in r.items] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
    ]
    r = p("a FETCH 1 FULL")
    assert isinstance(r, c.Fetch) and r.items[-1] == FetchAttr("BODY")
    bad("a FETCH 1 (ALL)")
    bad("a FETCH 1 (FLAGS ALL)")
    bad("a FETCH 1 ALL FLAGS")


def test_fetch_simple_attributes() -> None:
    r = p(
        "a FETCH 1 (ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE BODY BODYSTRUCTURE UID MODSEQ)"
    )
    assert isinstance(r, c.Fetch)
    assert [a.kind for a in r.items] == [
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "RFC822.SIZE",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
    ]
    assert [a.sets_seen for a in r.items].count(True) == 2  # RFC822, RFC822.TEXT


@pytest.mark.parametrize(
    ("text", "attr", "response_name"),
    [
        ("BODY[]", FetchAttr(BODY_SECTION, Section()), "BODY[]"),
        ("body.peek[]", FetchAttr(BODY_SECTION, Section(), peek=True), "BODY[]"),
        ("BODY[]<0.2048>", FetchAttr(BODY_SECTION, Section(), Partial(0, 2048)), "BODY[]<0>"),
        ("BODY[1]", FetchAttr(BODY_SECTION, Section((1,))), "BODY[1]"),
        ("BODY[1.2.3]", FetchAttr(BODY_SECTION, Section((1, 2, 3))), "BODY[1.2.3]"),
        ("BODY[HEADER]", FetchAttr(BODY_SECTION, Section((), "HEADER")), "BODY[HEADER]"),
        ("BODY[text]", FetchAttr(BODY_SECTION, Section((), "TEXT")), "BODY[TEXT]"),
        ("BODY[4.2.MIME]", FetchAttr(BODY_SECTION, Section((4, 2), "MIME")), "BODY[4.2.MIME]"),
        ("BODY[3.HEADER]", FetchAttr(BODY_SECTION, Section((3,), "HEADER")), "BODY[3.HEADER]"),
        (
            "BODY.PEEK[HEADER.FIELDS.NOT (Received X-Spam)]<10.5>",
            FetchAttr(
                BODY_SECTION,
                Section((), "HEADER.FIELDS.NOT", ("Received", "X-Spam")),
                Partial(10, 5),
                True,
            ),
            "BODY[HEADER.FIELDS.NOT (Received X-Spam)]<10>",
        ),
        (
            'BODY[1.HEADER.FIELDS ("Subject" {4}\r\nDate)]',
            FetchAttr(BODY_SECTION, Section((1,), "HEADER.FIELDS", ("Subject", "Date"))),
            "BODY[1.HEADER.FIELDS (Subject Date)]",
        ),
        ("BINARY[1]", FetchAttr(BINARY, Section((1,))), "BINARY[1]"),
        # Dovecot's leniencies that imaptest's fetch-binary-mime* use: <origin> to the end,
        # BINARY of a section with text (its BODY octets)
        ("BODY[]<0>", FetchAttr(BODY_SECTION, Section(), Partial(0, None)), "BODY[]<0>"),
        ("BINARY[HEADER]", FetchAttr(BINARY, Section((), "HEADER")), "BINARY[HEADER]"),
        (
            "BINARY.SIZE[1.MIME]",
            FetchAttr(BINARY_SIZE, Section((1,), "MIME")),
            "BINARY.SIZE[1.MIME]",
        ),
        ("BINARY.PEEK[]<0.10>", FetchAttr(BINARY, Section(), Partial(0, 10), True), "BINARY[]<0>"),
        ("BINARY[1.1]", FetchAttr(BINARY, Section((1, 1))), "BINARY[1.1]"),
        ("BINARY.SIZE[2]", FetchAttr(BINARY_SIZE, Section((2,))), "BINARY.SIZE[2]"),
    ],
)
def test_fetch_sections(text: str, attr: FetchAttr, response_name: str) -> None:
    r = p(f"a FETCH 1 ({text})")
    assert isinstance(r, c.Fetch)
    assert r.items == (attr,)
    assert r.items[0].response_name() == response_name
    assert p(f"a FETCH 1 {text}") == r


def test_fetch_sets_seen() -> None:
    r = p("a FETCH 1 (BODY[] BODY.PEEK[] BINARY[] BINARY.PEEK[] BINARY.SIZE[])")
    assert isinstance(r, c.Fetch)
    assert [a.sets_seen for a in r.items] == [True, False, True, False, False]


@pytest.mark.parametrize(
    "line",
    [
        "a FETCH 1 (BODY[0])",
        "a FETCH 1 (BODY[1.0])",
        "a FETCH 1 (BODY[MIME])",
        "a FETCH 1 (BODY[HEADER.FIELDS])",
        "a FETCH 1 (BODY[HEADER.FIELDS ()])",
        "a FETCH 1 (BODY[HEADER.FIELDS (a:b)])",
        "a FETCH 1 (BODY[FOO])",
        "a FETCH 1 (BODY[1.]",
        "a FETCH 1 (BODY[]<0.0>)",
        "a FETCH 1 (BODY.PEEK)",
        "a FETCH 1 (BINARY)",
        "a FETCH 1 (BINARY[MIME])",
        "a FETCH 1 (BINARY.SIZE[1]<0.1>)",
        "a FETCH 1 (FLAGS",
        "a FETCH 1 ()",
        "a FETCH 1 (FOO)",
        "a FETCH 1 (FLAGS  UID)",
        "a FETCH 1",
        "a FETCH FLAGS",
        "a FETCH 0 FLAGS",
        "a FETCH 1:2: FLAGS",
        "a FETCH 4294967296 FLAGS",
        "a FETCH 1 FLAGS ()",
        "a FETCH 1 FLAGS (FOO)",
        "a FETCH 1 FLAGS (CHANGEDSINCE)",
        "a FETCH 1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)",
        "a FETCH 1 FLAGS (CHANGEDSINCE 5 VANISHED)",  # RFC 7162 3.2.6: UID FETCH only
        "a UID FETCH 1 FLAGS (VANISHED)",  # ... and only with CHANGEDSINCE
    ],
)
def test_fetch_bad(line: str) -> None:
    bad(line)


def test_fetch_modifiers() -> None:
    # RFC 7162 3.1.4.1, 3.2.6
    r = p("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)")
    assert isinstance(r, c.Fetch) and r.changedsince == 12345 and r.uid and not r.vanished
    r = p("B01 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert isinstance(r, c.Fetch) and r.changedsince == 12345 and r.vanished
    r = p("a FETCH 1:* (UID MODSEQ) (CHANGEDSINCE 9223372036854775807)")
    assert isinstance(r, c.Fetch) and r.changedsince == 2**63 - 1
    bad("a FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)")


def test_fetch_saved_result() -> None:
    # RFC 5182 2.1
    r = p("A283 FETCH $ (UID INTERNALDATE FLAGS RFC822.SIZE)")
    assert isinstance(r, c.Fetch) and r.set.saved


# -- STORE / COPY / MOVE / UID ------------------------------------------------------------------


def test_store() -> None:
    assert p("A003 STORE 2:4 +FLAGS (\\Deleted)") == c.Store(
        S("2:4"), c.StoreOp.ADD, ("\\Deleted",)
    )
    assert p("a STORE 1 flags.silent \\SEEN $Junk") == c.Store(
        S("1"), c.StoreOp.REPLACE, ("\\Seen", "$Junk"), silent=True
    )
    assert p("a STORE 1 -FLAGS ()") == c.Store(S("1"), c.StoreOp.REMOVE, ())
    assert p("a STORE 1 FLAGS (\\Seen \\Seen)") == c.Store(S("1"), c.StoreOp.REPLACE, ("\\Seen",))
    # RFC 7162 3.1.3 examples
    r = p("a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)")
    assert r == c.Store(S("6,4,8"), c.StoreOp.ADD, ("\\Deleted",), True, True, 12121230045)
    r = p("c101 STORE 50 (UNCHANGEDSINCE 0) +FLAGS.SILENT ($Processed)")
    assert isinstance(r, c.Store) and r.unchangedsince == 0


@pytest.mark.parametrize(
    "line",
    [
        "a STORE 1 +FLAGS (\\Recent)",
        "a STORE 1 +FLAGS \\Bogus",
        "a STORE 1 +FLAGS (\\*)",
        "a STORE 1 FLAGZ (\\Seen)",
        "a STORE 1 +FLAGS",
        "a STORE 1 +FLAGS (\\Seen",
        "a STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)",
        "a STORE 1 (FOO 1) +FLAGS (\\Seen)",
        "a STORE 1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) +FLAGS (\\Seen)",
        "a STORE +FLAGS (\\Seen)",
        "a STORE 1 +FLAGS (foo(bar)",
    ],
)
def test_store_bad(line: str) -> None:
    bad(line)


def test_copy_move_expunge() -> None:
    assert p("A003 COPY 2:4 MEETING") == c.Copy(S("2:4"), "MEETING")
    assert p("A005 UID COPY 305:310 meeting") == c.Copy(S("305:310"), "meeting", uid=True)
    assert p("a UID MOVE 42:69 foo") == c.Move(S("42:69"), "foo", uid=True)
    assert p("a MOVE $ Trash") == c.Move(SequenceSet(saved=True), "Trash")
    assert p("A202 UID EXPUNGE 3000:3002") == c.UidExpunge(S("3000:3002"))
    assert p("a uid search all") == c.Search(SearchAll(), uid=True)
    bad("a COPY 1")
    bad("a UID EXPUNGE")
    bad("a UID")
    bad("a UID NOOP")
    bad("a UID FOO 1")


def test_reason_names_the_command() -> None:
    err = p("a FETCH 1 (FOO)")
    assert isinstance(err, ParseError)
    assert err.tag == "a" and err.reason.startswith("FETCH:") and "FOO" in err.reason


def test_literal_mid_line_is_refused() -> None:
    # Hand-built: a literal announcement that does not end its line
    cmd = Command("a", "LOGIN", (b" {3} x", b""), (b"abc",))
    assert isinstance(parse_command(cmd), ParseError)
    # a literal8 where only a literal may stand
    assert "literal8" in bad(b"a LOGIN ~{3}\r\nabc x")

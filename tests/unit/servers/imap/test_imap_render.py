"""Response encoders: astring mailbox names, flag lists, ENVELOPE/BODYSTRUCTURE spacing."""

from __future__ import annotations

from carteiro.servers.imap import render


def test_mailbox_names():
    assert render.mailbox("INBOX", False) == b"INBOX"
    assert render.mailbox("Work/Reports", False) == b"Work/Reports"
    assert render.mailbox("Entwürfe", False) == b"Entw&APw-rfe"
    assert render.mailbox("Entwürfe", True) == '"Entwürfe"'.encode()
    assert render.mailbox("a b", False) == b'"a b"'
    assert render.mailbox("NIL", False) == b'"NIL"'


def test_flag_list_order_and_recent():
    flags = frozenset({"$Label", "\\Seen", "\\Answered"})
    assert render.flag_list(flags) == b"(\\Answered \\Seen $Label)"
    assert render.flag_list(frozenset(), recent=True) == b"(\\Recent)"


def test_structure_spacing_follows_the_abnf():
    # RFC 9051 9: body-type-mpart = 1*body SP media-subtype; env-from = "(" 1*address ")"
    mpart = [["text", "plain", None], ["text", "html", None], "alternative"]
    assert render.structure(mpart) == b'(("text" "plain" NIL)("text" "html" NIL) "alternative")'
    addrs = [[None, None, "a", "x.test"], ["B", None, "b", "x.test"]]
    assert render.structure(addrs) == b'((NIL NIL "a" "x.test")("B" NIL "b" "x.test"))'
    msg = ["message", "rfc822", None, ["env"], [["text"], "mixed"], 3]
    assert render.structure(msg) == b'("message" "rfc822" NIL ("env") (("text") "mixed") 3)'


def test_strings_literals_and_8bit():
    assert render.structure('a"b') == b'"a\\"b"'
    assert render.structure("ü") == b"{2}\r\n\xc3\xbc"
    assert render.structure("ü", utf8=True) == '"ü"'.encode()
    assert render.structure(b"\xff") == b"{1}\r\n\xff"
    assert render.literal(b"") == b'""'


def test_internaldate_is_locale_free():
    assert render.internaldate(0) == b'"01-Jan-1970 00:00:00 +0000"'

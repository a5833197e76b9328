"""RFC 3501 9: body lists and address lists are runs of parenthesised elements without SP."""

from carteiro.proto.imap.responses import Atom, encode


def test_multipart_bodies_run_together() -> None:
    value = [["text", "plain", None], ["text", "html", None], "mixed"]
    assert encode(value) == b'(("text" "plain" NIL)("text" "html" NIL) "mixed")'


def test_address_list_runs_together() -> None:
    value = [[None, None, "a", "b.test"], [None, None, "c", "d.test"]]
    assert encode(value) == b'((NIL NIL "a" "b.test")(NIL NIL "c" "d.test"))'


def test_lists_after_atoms_keep_spaces() -> None:
    assert encode([Atom("FLAGS"), [Atom("\\Seen")], [Atom("x")]]) == b"(FLAGS (\\Seen) (x))"

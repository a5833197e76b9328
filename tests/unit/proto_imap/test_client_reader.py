"""The client-side IMAP response reader (proto.imap.client): whole responses with literals, the
same result however the bytes are split, limits, and values as RFC 9051's grammar defines them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carteiro.proto.imap.client import ResponseError, ResponseReader, parse_values

WIRE = (
    b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n"
    b'* LIST (\\HasNoChildren \\Sent) "/" "Sent Items"\r\n'
    b"* STATUS INBOX (MESSAGES 3 UNSEEN 1)\r\n"
    b"* 12 FETCH (UID 40 FLAGS (\\Seen $Forwarded) RFC822.SIZE 2048 "
    b"BODY[HEADER.FIELDS (FROM SUBJECT)] {22}\r\nSubject: a {3}\r\n\r\nxx\r\n)\r\n"
    b"A1 OK [APPENDUID 7 41] done\r\n"
)


def read_all(chunks: list[bytes]) -> list[tuple[str, list[object]]]:
    r = ResponseReader()
    out = []
    for c in chunks:
        r.feed(c)
        while (resp := r.next()) is not None:
            out.append((resp.tag, resp.values()))
    return out


def test_values_of_each_response() -> None:
    got = read_all([WIRE])
    assert got[1] == ("*", ["LIST", ["\\HasNoChildren", "\\Sent"], b"/", b"Sent Items"])
    assert got[2] == ("*", ["STATUS", "INBOX", ["MESSAGES", "3", "UNSEEN", "1"]])
    _, fetch = got[3]
    items = fetch[2]
    assert isinstance(items, list)
    assert items[:6] == ["UID", "40", "FLAGS", ["\\Seen", "$Forwarded"], "RFC822.SIZE", "2048"]
    # The section with its spaces and parentheses is one atom; the literal is the value, and a
    # "{3}" inside a literal is data, not another literal.
    assert items[6] == "BODY[HEADER.FIELDS (FROM SUBJECT)]"
    assert items[7] == b"Subject: a {3}\r\n\r\nxx\r\n"
    assert got[4][0] == "A1"


def test_status_and_code() -> None:
    r = ResponseReader()
    r.feed(b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
    resp = r.next()
    assert resp is not None
    assert resp.status() == ("NO", "Authentication failed.")
    assert resp.code() == "AUTHENTICATIONFAILED"


def test_nil_and_quoted_escapes() -> None:
    assert parse_values([b'(NIL "NIL" "a\\"b\\\\c")']) == [[None, b"NIL", b'a"b\\c']]


@given(st.lists(st.integers(min_value=1, max_value=len(WIRE) - 1), max_size=12))
def test_any_split_gives_the_same_responses(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [WIRE[a:b] for a, b in zip([0, *points], [*points, len(WIRE)], strict=True)]
    assert read_all(chunks) == read_all([WIRE])


@given(st.binary(max_size=300))
def test_garbage_never_crashes(data: bytes) -> None:
    r = ResponseReader(max_line=200, max_literal=100)
    r.feed(data)
    try:
        while (resp := r.next()) is not None:
            resp.values()
            resp.status()
    except ResponseError:
        pass


def test_limits() -> None:
    r = ResponseReader(max_line=100, max_literal=1000)
    r.feed(b"* " + b"x" * 200)
    with pytest.raises(ResponseError):
        r.next()
    r = ResponseReader(max_line=100, max_literal=1000)
    r.feed(b"* 1 FETCH (BODY[] {5000}\r\n")
    with pytest.raises(ResponseError):
        r.next()

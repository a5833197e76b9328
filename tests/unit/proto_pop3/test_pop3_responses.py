"""Rendering: status lines, dot-stuffing (RFC 1939 3), TOP (RFC 1939 7), CRLF normalisation."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from carteiro.proto.pop3 import responses as r


def unstuff(data: bytes) -> bytes:
    """What a client does (RFC 1939 3): strip the terminator and one leading dot per line."""
    assert data.endswith(b".\r\n")
    body = data[:-3]
    assert body == b"" or body.endswith(b"\r\n")
    out = []
    for line in body.split(b"\r\n")[:-1]:
        assert line != b"."  # the terminator never appears inside
        out.append(line[1:] if line.startswith(b".") else line)
    return b"".join(x + b"\r\n" for x in out)


def test_status_lines() -> None:
    assert r.ok() == b"+OK\r\n"
    assert r.ok("2 320") == b"+OK 2 320\r\n"
    assert r.err("no such message") == b"-ERR no such message\r\n"
    assert r.err("locked", "IN-USE") == b"-ERR [IN-USE] locked\r\n"
    assert r.err("") == b"-ERR Command failed\r\n"  # every -ERR has a reason


def test_status_line_is_bounded_and_single_line() -> None:
    line = r.err("x" * 2000 + "\r\ninjected")
    assert len(line) == 512 and line.endswith(b"\r\n") and line.count(b"\r\n") == 1


def test_stuffing_examples() -> None:
    assert r.stuffed(b"") == b".\r\n"
    assert r.stuffed(b"a\r\n") == b"a\r\n.\r\n"
    assert r.stuffed(b".a\r\n.\r\n..\r\n") == b"..a\r\n..\r\n...\r\n.\r\n"
    assert r.stuffed(b"no newline") == b"no newline\r\n.\r\n"
    assert r.stuffed(b"x\r\n.") == b"x\r\n..\r\n.\r\n"


def test_multiline_stuffs_short_lines() -> None:
    assert r.multiline(b"+OK\r\n", ["1 120", ".x"]) == b"+OK\r\n1 120\r\n..x\r\n.\r\n"


def test_crlf_normalisation() -> None:
    data = b"a\r\nb\r\n"
    assert r.crlf(data) is data  # already CRLF: no copy
    assert r.crlf(b"a\nb\rc\r\n") == b"a\r\nb\r\nc\r\n"
    assert r.crlf(b"a\rb\r\n") == b"a\rb\r\n"  # a bare CR is data


MSG = b"From: a@b\r\nSubject: s\r\n\r\nline1\r\n.line2\r\nline3\r\n"


def test_top_header_blank_line_and_n_lines() -> None:
    assert r.header_and_lines(MSG, 0) == b"From: a@b\r\nSubject: s\r\n\r\n"
    assert r.header_and_lines(MSG, 1) == b"From: a@b\r\nSubject: s\r\n\r\nline1\r\n"
    assert r.header_and_lines(MSG, 2).endswith(b"\r\n.line2\r\n")
    assert r.header_and_lines(MSG, 3) == MSG
    assert r.header_and_lines(MSG, 1000) == MSG


def test_top_edge_cases() -> None:
    assert r.header_and_lines(b"Subject: only a header\r\n", 5) == b"Subject: only a header\r\n"
    assert r.header_and_lines(b"\r\nbody1\r\nbody2\r\n", 1) == b"\r\nbody1\r\n"
    assert r.header_and_lines(b"H: v\r\n\r\nno final crlf", 1) == b"H: v\r\n\r\nno final crlf"


lines_st = st.lists(
    st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=20
)


@given(lines_st)
def test_stuffing_round_trips(lines: list[bytes]) -> None:
    data = b"".join(x + b"\r\n" for x in lines)
    assert unstuff(r.stuffed(data)) == data


@given(lines_st, st.integers(0, 25))
def test_top_is_a_prefix_made_of_whole_lines(lines: list[bytes], n: int) -> None:
    data = b"H: v\r\n\r\n" + b"".join(x + b"\r\n" for x in lines)
    top = r.header_and_lines(data, n)
    assert data.startswith(top) and top.endswith(b"\r\n")
    assert top.count(b"\r\n") == 2 + min(n, len(lines))


@given(
    st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"\n\r"]), max_size=40)
)
def test_crlf_is_the_regex_rewrite_when_there_is_a_bare_lf(parts: list[bytes]) -> None:
    """crlf() returns the message as it is unless it has a bare LF; then every bare CR or LF
    becomes CRLF (its quick test for the usual message must not change that)."""
    data = b"".join(parts)
    bare_lf = data.count(b"\n") != data.count(b"\r\n")
    expected = re.sub(rb"\r\n|\r|\n", b"\r\n", data) if bare_lf else data
    assert r.crlf(data) == expected


_LINE = st.one_of(
    st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from([b"", b".", b"..x", b"Subject: x", b" folded"]),
)


@given(
    st.lists(_LINE, max_size=12),
    st.sampled_from([b"\r\n", b"\n"]),
    st.integers(0, 6),
    st.integers(0, 200),
)
def test_top_from_the_start_of_a_message_is_top_of_the_whole(
    lines: list[bytes], eol: bytes, n: int, cut: int
) -> None:
    """What TOP answers from a prefix of a large message (store.read_head) is what it answers
    from the whole message, whenever the prefix is enough to tell; None otherwise."""
    data = eol.join(lines)
    whole = r.header_and_lines(r.crlf(data), n)
    got = r.header_and_lines_within(r.crlf(data[:cut]), n)
    if got is not None:
        assert got == whole
    if cut >= len(data) + 1 and whole.endswith(b"\r\n") and len(whole) < len(r.crlf(data)):
        # the whole message in hand and more of it than TOP sends: it can tell
        assert got == whole

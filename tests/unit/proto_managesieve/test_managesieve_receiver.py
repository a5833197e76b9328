"""The ManageSieve receiver: tokens, literals, limits; byte-at-a-time feeding gives the same
events; random input never crashes it or grows its buffer past the limits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.proto.managesieve import Atom, Line, LineError, NeedData, Receiver, no, ok, string
from carteiro.proto.managesieve.receiver import Event


def events(data: bytes, r: Receiver | None = None) -> list[Event]:
    r = r or Receiver(max_line=200, max_literal=100, hard_literal=10_000)
    r.receive_data(data)
    out: list[Event] = []
    while not isinstance(ev := r.next_event(), NeedData):
        out.append(ev)
    return out


def trickled(data: bytes) -> list[Event]:
    r = Receiver(max_line=200, max_literal=100, hard_literal=10_000)
    out: list[Event] = []
    for i in range(len(data)):
        r.receive_data(data[i : i + 1])
        while not isinstance(ev := r.next_event(), NeedData):
            out.append(ev)
    return out


def test_tokens() -> None:
    data = b'PUTSCRIPT "a\\"b\\\\c" {5+}\r\nkeep;\r\nHAVESPACE "x" 100\r\nnoop\n'
    assert events(data) == [
        Line((Atom("PUTSCRIPT"), b'a"b\\c', b"keep;")),
        Line((Atom("HAVESPACE"), b"x", 100)),
        Line((Atom("NOOP"),)),
    ]
    assert trickled(data) == events(data)
    # the synchronizing form is read the same (no continuation exists in ManageSieve)
    assert events(b"CHECKSCRIPT {5}\r\nkeep;\r\n") == [Line((Atom("CHECKSCRIPT"), b"keep;"))]


def test_errors_resynchronise_at_the_next_line() -> None:
    assert events(b'X "a\\q"\r\nNOOP\r\n') == [
        LineError("bad escape in quoted string"),
        Line((Atom("NOOP"),)),
    ]
    assert events(b"X {abc}\r\nNOOP\r\n") == [
        LineError("bad literal length"),
        Line((Atom("NOOP"),)),
    ]
    big = b'PUTSCRIPT "s" {500+}\r\n' + b"x" * 500 + b"\r\nNOOP\r\n"
    assert events(big) == [
        LineError("string too large (at most 100 octets)", "QUOTA/MAXSIZE"),
        Line((Atom("NOOP"),)),
    ]
    assert trickled(big) == events(big)
    assert events(b"X {99999+}\r\n") == [
        LineError("literal too large; closing", "QUOTA/MAXSIZE", fatal=True)
    ]


def test_overlong_lines_are_not_buffered() -> None:
    r = Receiver(max_line=200, max_literal=100, hard_literal=10_000)
    for _ in range(100):
        r.receive_data(b"a" * 1000)
        assert isinstance(r.next_event(), NeedData)
        assert len(r._buf) <= 1000
    r.receive_data(b"\r\nNOOP\r\n")
    assert r.next_event() == LineError("line too long")
    assert r.next_event() == Line((Atom("NOOP"),))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_input_never_crashes_and_trickling_agrees(data: bytes) -> None:
    assert trickled(data) == events(data)


_TOKEN = st.one_of(
    st.sampled_from([b"NOOP", b"PUTSCRIPT", b"12", b"\r\n", b" ", b"{3+}\r\nabc", b"{2}\r\n\r\n"]),
    st.binary(max_size=6).map(
        lambda b: string(b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b""))
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TOKEN, max_size=30))
def test_token_streams(tokens: list[bytes]) -> None:
    data = b" ".join(tokens) + b"\r\n"
    assert trickled(data) == events(data)


def test_responses() -> None:
    assert ok() == b"OK\r\n"
    assert no("No such script", "NONEXISTENT") == b'NO (NONEXISTENT) "No such script"\r\n'
    assert string('a"b') == b'"a\\"b"'
    assert string("line\r\nbreak") == b"{11}\r\nline\r\nbreak"

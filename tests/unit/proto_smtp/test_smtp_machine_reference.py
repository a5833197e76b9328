"""The one-pass DATA scan (a single search for "\r\n." finds both the end of the data and the
lines to unstuff; bare CR/LF found by two replaces instead of three counts) gives exactly what the
machine gave before (smtp_reference_machine.py, main fb07ea6): the same events, the same BodyData
pieces, the same replies, whatever the content (dots, bare CR or LF, terminators) and wherever the
reads split it, under both bare-newline policies and with size limits hit on the way."""

from __future__ import annotations

from typing import Any

import smtp_reference_machine as old  # (a unique module name: the test directory is on sys.path)
from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.proto.smtp import commands as C
from carteiro.proto.smtp import replies as R
from carteiro.proto.smtp import server as new


def answer(ev: object) -> R.Reply:
    """A permissive session (both modules' event classes)."""
    if isinstance(ev, C.Data):
        return R.R_354_DATA
    if isinstance(ev, C.Quit):
        return R.R_221_BYE
    if isinstance(ev, new.Invalid | old.Invalid):
        return ev.reply
    ends = (new.DataEnd, new.ChunkEnd, old.DataEnd, old.ChunkEnd)
    if isinstance(ev, ends) and ev.problem is not None:
        return ev.problem
    return R.R_250_OK


def drive(mod: Any, chunks: list[bytes], limits: Any) -> list[tuple[str, object]]:
    """Every event (its class name and fields), every reply, every BodyData piece, in order."""
    m = mod.ServerMachine(limits)
    trace: list[tuple[str, object]] = []
    feed = [*chunks, b""]
    i = 0
    for _ in range(100_000):
        ev = m.next_event()
        name = type(ev).__name__
        if name == "NeedData":
            if i >= len(feed):
                return trace
            m.receive_data(feed[i])
            i += 1
            continue
        if name == "BodyData":
            trace.append(("body", ev.data))
            continue
        if name == "ConnectionClosed":
            trace.append(("closed", None))
            return trace
        fields = ev if isinstance(ev, C.Command) else getattr(ev, "__dict__", None) or repr(ev)
        trace.append((name, fields))
        trace.append(("out", m.send(answer(ev))))
        if m.closed:
            return trace
    raise AssertionError("no end")


HEAD = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
# pieces of message content: dots where they matter, bare CR and LF, terminators, long runs
_content = st.lists(
    st.sampled_from(
        [
            b"\r\n", b".", b"..", b"\r\n.\r\n", b"\r\n..\r\n", b"\r", b"\n", b"\n.\n", b"\r.\r",
            b"x", b"ab", b"Subject: x", b"y" * 70, b"z" * 300, b"\r\n.", b".\r\n", b"\r\r\n",
            b"\n\r", b"\x00", b"\xff",
        ]
    ),
    max_size=40,
)  # fmt: skip
_after = st.sampled_from([b"", b"NOOP\r\n", b"QUIT\r\n", b"RSET\r\nMAIL FROM:<e@f.test>\r\n"])


def _cuts(wire: bytes, points: list[int]) -> list[bytes]:
    chunks, prev = [], 0
    for p in [*sorted({p % (len(wire) + 1) for p in points}), len(wire)]:
        if p > prev:
            chunks.append(wire[prev:p])
            prev = p
    return chunks


def _limits(policy: str, size: int) -> tuple[Any, Any]:
    kw = dict(max_message_size=size, bare_newline=policy, min_discard=size)
    return new.Limits(**kw), old.Limits(**kw)


def _same(wire: bytes, chunks: list[bytes], policy: str, size: int) -> None:
    lnew, lold = _limits(policy, size)
    got, want = drive(new, chunks, lnew), drive(old, chunks, lold)
    assert got == want


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_content, min_size=1, max_size=3),
    _after,
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    st.sampled_from(["reject", "normalise"]),
    st.sampled_from([50, 400, 100_000]),
)
def test_data_gives_exactly_the_old_events(
    messages: list[list[bytes]], after: bytes, points: list[int], policy: str, size: int
) -> None:
    wire = HEAD
    for pieces in messages:
        wire += b"DATA\r\n" + b"".join(pieces) + b"\r\n.\r\n"
        wire += b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
    wire += after
    _same(wire, _cuts(wire, points), policy, size)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_content, st.booleans()), min_size=1, max_size=4),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    st.sampled_from(["reject", "normalise"]),
    st.sampled_from([50, 400, 100_000]),
)
def test_bdat_gives_exactly_the_old_events(
    chunks: list[tuple[list[bytes], bool]], points: list[int], policy: str, size: int
) -> None:
    wire = HEAD
    for pieces, last in chunks:
        data = b"".join(pieces)
        wire += b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data
    wire += b"QUIT\r\n"
    _same(wire, _cuts(wire, points), policy, size)


def test_terminator_split_at_every_offset() -> None:
    """A message whose end (and dot-stuffed lines, bare newlines) are split at every offset."""
    body = b"Subject: x\r\n\r\n..a\r\n.\r\r\n\n.\nb\r\n..\r\n"
    wire = HEAD + b"DATA\r\n" + body + b"\r\n.\r\nNOOP\r\n"
    for policy in ("reject", "normalise"):
        for a in range(len(wire) + 1):
            for b in (a + 1, a + 3, a + 5):
                _same(wire, _cuts(wire, [a, b]), policy, 100_000)


def test_a_large_message_in_few_reads() -> None:
    line = b"The quick brown fox jumps over the lazy dog. " * 2 + b"\r\n"
    body = line * 1500 + b"..a dot line\r\n" + line * 700
    wire = HEAD + b"DATA\r\n" + body + b"\r\n.\r\nQUIT\r\n"
    for points in ([], [65536], [65536, 131072], [len(wire) - 3]):
        for policy in ("reject", "normalise"):
            _same(wire, _cuts(wire, points), policy, 50 * 1024 * 1024)

"""The sans-IO SMTP server machine: framing, sequencing, DATA/BDAT, limits. Byte-at-a-time feeding
must give the same events as one big write (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.proto.smtp import commands as C
from carteiro.proto.smtp import replies as R
from carteiro.proto.smtp.server import (
    AuthLine,
    BodyData,
    ChunkEnd,
    ConnectionClosed,
    DataEnd,
    Invalid,
    Limits,
    Mode,
    NeedData,
    ProtocolError,
    ServerMachine,
)


@dataclass
class Run:
    events: list[object] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    out: bytes = b""
    closed: bool = False  # the input ended (ConnectionClosed), not recorded in events


def answer(ev: object) -> R.Reply:
    """A permissive session: accepts everything."""
    if isinstance(ev, C.Data):
        return R.R_354_DATA
    if isinstance(ev, C.Quit):
        return R.R_221_BYE
    if isinstance(ev, C.Auth):
        return R.R_334_EMPTY
    if isinstance(ev, AuthLine):
        return R.R_235_AUTH_OK
    if isinstance(ev, Invalid):
        return ev.reply
    if isinstance(ev, DataEnd | ChunkEnd) and ev.problem is not None:
        return ev.problem
    return R.R_250_OK


def drive(chunks: list[bytes], limits: Limits | None = None, eof: bool = True) -> Run:
    m = ServerMachine(limits)
    run = Run()
    body = bytearray()
    feed = [*chunks, b""] if eof else list(chunks)
    i = 0
    while True:
        ev = m.next_event()
        if isinstance(ev, NeedData):
            if i >= len(feed):
                break
            m.receive_data(feed[i])
            i += 1
            continue
        if isinstance(ev, BodyData):
            body += ev.data
            continue
        if isinstance(ev, ConnectionClosed):
            run.closed = True
            break
        if isinstance(ev, DataEnd | ChunkEnd):
            run.bodies.append(bytes(body))
            body.clear()
        run.events.append(ev)
        run.out += m.send(answer(ev))
        if m.closed:
            break
    return run


def split_every(data: bytes, n: int) -> list[bytes]:
    return [data[i : i + n] for i in range(0, len(data), n)]


SESSION = (
    b"EHLO c.example.org\r\n"
    b"MAIL FROM:<a@example.org> SIZE=100\r\n"
    b"RCPT TO:<b@example.test>\r\n"
    b"DATA\r\n"
    b"Subject: x\r\n\r\n..dot\r\n.x\r\n\r\n"
    b".\r\n"
    b"MAIL FROM:<a@example.org>\r\n"
    b"RCPT TO:<b@example.test>\r\n"
    b"BDAT 7\r\n\r\n.\r\nabBDAT 3 LAST\r\nxyz"
    b"QUIT\r\n"
)


def test_whole_session() -> None:
    run = drive([SESSION])
    kinds = [type(e).__name__ for e in run.events]
    assert kinds == [
        "Helo", "Mail", "Rcpt", "Data", "DataEnd", "Mail", "Rcpt", "ChunkEnd", "ChunkEnd", "Quit",
    ]  # fmt: skip
    assert run.bodies == [b"Subject: x\r\n\r\n.dot\r\nx\r\n\r\n", b"\r\n.\r\nab", b"xyz"]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 64])
def test_split_sizes_give_same_events(n: int) -> None:
    whole = drive([SESSION])
    split = drive(split_every(SESSION, n))
    assert split.events == whole.events
    assert split.bodies == whole.bodies
    assert split.out == whole.out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(SESSION)), max_size=30))
def test_any_split_gives_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks, prev = [], 0
    for p in [*points, len(SESSION)]:
        chunks.append(SESSION[prev:p])
        prev = p
    whole = drive([SESSION])
    split = drive([c for c in chunks if c])
    assert (split.events, split.bodies, split.out) == (whole.events, whole.bodies, whole.out)


def stuff(body: bytes) -> bytes:
    """What a client sends for `body` (lines ending CRLF): RFC 5321 4.5.2 transparency."""
    out = b"\r\n" + body
    out = out.replace(b"\r\n.", b"\r\n..")
    return out[2:] + b".\r\n"


lines = st.lists(
    st.text(alphabet=".ab \t:F", max_size=12).map(lambda t: t.encode() + b"\r\n"), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(lines, st.integers(min_value=1, max_value=9))
def test_dot_transparency_round_trip(body_lines: list[bytes], step: int) -> None:
    body = b"".join(body_lines)
    head = b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
    wire = head + stuff(body) + b"NOOP\r\n"
    run = drive(split_every(wire, step))
    assert run.bodies == [body]
    assert isinstance(run.events[-2], DataEnd) and isinstance(run.events[-1], C.Noop)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.integers(min_value=1, max_value=7))
def test_data_only_ends_at_crlf_dot_crlf(junk: bytes, step: int) -> None:
    """Whatever the content, DATA ends at the first <CRLF>.<CRLF>, never earlier."""
    junk = junk.replace(b"\r\n.\r\n", b"")
    head = b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
    if junk.startswith(b".\r\n"):
        junk = b"x" + junk
    wire = head + b"x" + junk + b"\r\n.\r\nNOOP\r\n"
    run = drive(split_every(wire, step), Limits(bare_newline="normalise"))
    ends = [e for e in run.events if isinstance(e, DataEnd)]
    assert len(ends) == 1
    assert isinstance(run.events[-1], C.Noop)


@pytest.mark.parametrize(
    "fake", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n", b"\n..\n"]
)
@pytest.mark.parametrize("policy", ["reject", "normalise"])
def test_bare_newlines_never_end_data(fake: bytes, policy: str) -> None:
    wire = (
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
        b"hi" + fake + b"RSET\r\nQUIT\r\n.\r\nNOOP\r\n"
    )
    for step in (1, 3, len(wire)):
        run = drive(split_every(wire, step), Limits(bare_newline=policy))
        ends = [e for e in run.events if isinstance(e, DataEnd)]
        assert len(ends) == 1
        assert not any(isinstance(e, C.Rset | C.Quit) for e in run.events)
        if policy == "reject":
            assert ends[0].problem == R.R_550_BARE_NEWLINE
        else:
            assert ends[0].problem is None
            body = run.bodies[0]
            assert body.count(b"\n") == body.count(b"\r\n") == body.count(b"\r")
            assert b"RSET\r\nQUIT\r\n" in body


def test_size_counted_while_reading_and_swallowed() -> None:
    wire = (
        b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
        + b"x" * 500
        + b"\r\n" * 10
        + b".\r\nNOOP\r\n"
    )
    run = drive(split_every(wire, 37), Limits(max_message_size=100))
    end = next(e for e in run.events if isinstance(e, DataEnd))
    assert end.problem == R.R_552_TOO_BIG
    assert len(run.bodies[0]) <= 100
    assert isinstance(run.events[-1], C.Noop)


def test_mail_size_parameter_over_limit() -> None:
    run = drive([b"EHLO c\r\nMAIL FROM:<a@b.test> SIZE=1000\r\n"], Limits(max_message_size=999))
    assert run.events[-1] == Invalid(R.R_552_TOO_BIG)


def test_line_too_long_then_recovers() -> None:
    run = drive([b"NOOP " + b"x" * 2000 + b"\r\nNOOP\r\n"], Limits(max_line_length=1000))
    assert run.events == [Invalid(R.R_500_LINE_TOO_LONG), C.Noop()]
    run = drive(
        split_every(b"NOOP " + b"x" * 2000 + b"\r\nNOOP\r\n", 100), Limits(max_line_length=1000)
    )
    assert run.events == [Invalid(R.R_500_LINE_TOO_LONG), C.Noop()]


ENDLESS_LIMITS = Limits(max_line_length=100, max_discard_line=1000)


@pytest.mark.parametrize("split", [0, 1, 7, 100, 1001])
def test_endless_line_gets_421_and_closes(split: int) -> None:
    """500 for the over-long line, then 421 once more than max_discard_line octets came
    without LF; the bound is in octets, so any split of the reads gives the same events."""
    wire = b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n"
    run = drive(split_every(wire, split) if split else [wire], ENDLESS_LIMITS, eof=False)
    assert run.events == [
        Invalid(R.R_500_LINE_TOO_LONG),
        Invalid(R.R_421_LINE_TOO_LONG, fatal=True),
    ]
    assert run.out.endswith(b"421 4.7.0 Line too long; closing connection\r\n")
    assert not run.closed  # closed by the 421, not by the end of the input


@pytest.mark.parametrize("length", [999, 1000, 1001])
def test_discard_bound_is_exact(length: int) -> None:
    wire = b"x" * length + b"\nNOOP\r\n"
    for chunks in ([wire], split_every(wire, 1), split_every(wire, 333)):
        run = drive(chunks, ENDLESS_LIMITS)
        if length <= 1000:
            assert run.events == [Invalid(R.R_500_LINE_TOO_LONG), C.Noop()]
        else:
            assert run.events[-1] == Invalid(R.R_421_LINE_TOO_LONG, fatal=True)


def test_endless_auth_line_gets_421() -> None:
    wire = b"EHLO c\r\nAUTH PLAIN\r\n" + b"A" * 50_000
    run = drive(split_every(wire, 4096), Limits(max_discard_line=20_000), eof=False)
    assert run.events[-2:] == [
        Invalid(R.R_500_AUTH_LINE_TOO_LONG),
        Invalid(R.R_421_LINE_TOO_LONG, fatal=True),
    ]


def test_data_body_without_lf_is_bounded_by_size() -> None:
    """In DATA a body without LF still counts toward SIZE: 552 at the end of the data."""
    wire = (
        b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
        + b"x" * 10_000
        + b"\r\n.\r\nNOOP\r\n"
    )
    run = drive(split_every(wire, 512), Limits(max_message_size=1000))
    end = run.events[-2]
    assert isinstance(end, DataEnd) and end.problem == R.R_552_TOO_BIG
    assert run.bodies[-1] == b"" or len(run.bodies[-1]) <= 1000
    assert run.events[-1] == C.Noop()


# ---- bounded discard past the size limit (a fast sender cannot hold the session in DATA) ----------

GIVE_UP = Limits(max_message_size=1000, min_discard=0)  # gives up past 1000 + 1000 octets
DATA_HEAD = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
BDAT_HEAD = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"


def test_give_up_threshold() -> None:
    assert Limits(max_message_size=1000, min_discard=0).give_up_at == 2000
    assert Limits(max_message_size=1000).give_up_at == 1000 + 16 * 1024 * 1024
    assert Limits(max_message_size=100 << 20).give_up_at == 200 << 20


@pytest.mark.parametrize("split", [0, 1, 7, 512, 4096])
def test_endless_oversized_data_gets_552_and_closes(split: int) -> None:
    wire = DATA_HEAD + (b"y" * 70 + b"\r\n") * 1000  # 72 kB, never ends
    run = drive(split_every(wire, split) if split else [wire], GIVE_UP, eof=False)
    assert run.events[-1] == Invalid(R.R_552_TOO_BIG_CLOSING, fatal=True)
    assert run.out.endswith(
        b"552 5.3.4 Message size exceeds fixed maximum message size; closing connection\r\n"
    )
    assert not run.closed  # closed by the machine after the 552, not by the end of the input
    assert sum(len(b) for b in run.bodies) <= 1000


@pytest.mark.parametrize("zs", [1994, 1995, 1996, 1997, 2001])
def test_give_up_bound_is_exact_whatever_the_reads(zs: int) -> None:
    """Content octets as received: the sentinel CRLF, the z's and the last CRLF (zs + 4). Up
    to 2000 the message ends with an ordinary 552 and the session goes on; past it, 552 and
    close; however the reads are split."""
    wire = DATA_HEAD + b"z" * zs + b"\r\n.\r\nNOOP\r\n"
    for chunks in ([wire], split_every(wire, 1), split_every(wire, 333), split_every(wire, 4)):
        events = drive(chunks, GIVE_UP).events[4:]
        if zs + 4 <= 2000:
            assert [getattr(e, "problem", e) for e in events] == [R.R_552_TOO_BIG, C.Noop()]
        else:
            assert events == [Invalid(R.R_552_TOO_BIG_CLOSING, fatal=True)]


def test_oversized_message_that_ends_in_time_keeps_the_session() -> None:
    wire = DATA_HEAD + b"x" * 1500 + b"\r\n.\r\nNOOP\r\n"
    run = drive(split_every(wire, 100), GIVE_UP)
    assert isinstance(run.events[-2], DataEnd) and run.events[-2].problem == R.R_552_TOO_BIG
    assert run.events[-1] == C.Noop()


def test_bare_newline_then_endless_data_gets_552_and_closes() -> None:
    wire = DATA_HEAD + b"bare\nlf\r\n" + b"x" * 5000
    run = drive(split_every(wire, 256), GIVE_UP, eof=False)
    assert run.events[-1] == Invalid(R.R_552_TOO_BIG_CLOSING, fatal=True)


@pytest.mark.parametrize("split", [0, 1000])
def test_one_huge_bdat_chunk_is_not_read_to_its_end(split: int) -> None:
    wire = BDAT_HEAD + b"BDAT 999999999999 LAST\r\n" + b"x" * 10_000
    run = drive(split_every(wire, split) if split else [wire], GIVE_UP, eof=False)
    assert run.events[-1] == Invalid(R.R_552_TOO_BIG_CLOSING, fatal=True)
    assert sum(len(b) for b in run.bodies) == 0  # no ChunkEnd: nothing passed on as a message


def test_refused_huge_bdat_chunk_is_not_read_to_its_end() -> None:
    # no MAIL: RFC 3030 2 says read and discard the chunk; not 10^12 octets of it
    wire = b"EHLO c\r\nBDAT 999999999999\r\n" + b"x" * 10_000
    run = drive(split_every(wire, 999), GIVE_UP, eof=False)
    assert run.events[-1] == Invalid(R.R_552_TOO_BIG_CLOSING, fatal=True)


def test_bdat_chunks_after_the_transaction_failed_count_too() -> None:
    wire = BDAT_HEAD + b"BDAT 1200\r\n" + b"x" * 1200
    wire += (b"BDAT 300\r\n" + b"x" * 300) * 10
    run = drive(split_every(wire, 100), GIVE_UP, eof=False)
    replies = [e for e in run.events if isinstance(e, ChunkEnd)]
    assert replies[0].problem == R.R_552_TOO_BIG
    assert all(e.problem == R.R_552_TOO_BIG for e in replies)
    assert run.events[-1] == Invalid(R.R_552_TOO_BIG_CLOSING, fatal=True)
    assert len(replies) == 3  # 1200 + 300 + 300 = 1800; the 4th chunk passes 2000


# ---- DATA text lines (RFC 5321 4.5.3.1.6): no length limit, memory stays bounded ---------------


def test_huge_data_line_without_crlf_streams_in_bounded_memory() -> None:
    """A 40 MB "line" with no CRLF at all is passed on as it comes: the machine never holds
    more than one read plus a few octets, whatever the length of the line."""
    m = ServerMachine(Limits(max_message_size=100 << 20))
    m.receive_data(DATA_HEAD)
    for reply in (R.R_250_OK, R.R_250_OK, R.R_250_OK, R.R_354_DATA):
        assert not isinstance(m.next_event(), NeedData)
        m.send(reply)
    assert m.mode is Mode.DATA
    read = b"q" * 65536
    passed = 0
    for _ in range(640):  # 40 MiB
        m.receive_data(read)
        while not isinstance(ev := m.next_event(), NeedData):
            assert isinstance(ev, BodyData)
            passed += len(ev.data)
        assert len(m._buf) <= 6  # only the tail that might start a terminator
    m.receive_data(b"\r\n.\r\n")
    evs = []
    while not isinstance(ev := m.next_event(), NeedData):
        evs.append(ev)
        if isinstance(ev, DataEnd):
            break
        passed += len(ev.data) if isinstance(ev, BodyData) else 0
    assert evs[-1] == DataEnd(640 * 65536 + 2)
    assert passed == 640 * 65536 + 2


def test_long_data_lines_are_accepted() -> None:
    """RFC 5321 4.5.3.1.6 sets 1000 octets as the least a server must accept and 4.5.3.1 asks
    for no limits: like Postfix, a long line is neither refused nor folded."""
    line = b"w" * 100_000
    run = drive(split_every(DATA_HEAD + line + b"\r\n.\r\n", 4096))
    assert run.events[-1] == DataEnd(100_002)
    assert run.bodies[-1] == line + b"\r\n"


def test_recipient_limit() -> None:
    wire = b"HELO c\r\nMAIL FROM:<a@b.test>\r\n" + b"RCPT TO:<c@d.test>\r\n" * 3
    run = drive([wire], Limits(max_recipients=2))
    assert run.events[-1] == Invalid(R.R_452_TOO_MANY_RCPTS)


def test_starttls_drops_pipelined_input() -> None:
    m = ServerMachine()
    m.receive_data(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
    assert isinstance(m.next_event(), C.Helo)
    m.send(R.R_250_OK)
    assert isinstance(m.next_event(), C.StartTLS)
    m.send(R.R_220_TLS_GO)
    assert m.mode is Mode.TLS
    m.receive_data(b"RSET\r\n")  # arrives before the handshake: dropped too
    assert isinstance(m.next_event(), NeedData)
    m.tls_started()
    assert m.tls and m.helo is None
    assert isinstance(m.next_event(), NeedData)
    m.receive_data(b"MAIL FROM:<a@b.test>\r\n")
    assert m.next_event() == Invalid(R.R_503_NEED_HELO)


def test_auth_line_mode_and_reply_required() -> None:
    m = ServerMachine(tls=True)
    m.receive_data(b"EHLO c\r\nAUTH PLAIN\r\nAHVAcA==\r\nNOOP\r\n")
    m.next_event()
    m.send(R.R_250_OK)
    assert m.next_event() == C.Auth("PLAIN", None)
    with pytest.raises(ProtocolError):
        m.next_event()
    m.send(R.R_334_EMPTY)
    assert m.next_event() == AuthLine(b"AHVAcA==")
    m.send(R.R_235_AUTH_OK)
    assert m.authenticated
    assert m.next_event() == C.Noop()


def test_commands_need_crlf_unless_normalising() -> None:
    assert drive([b"NOOP\n"]).events[0] == Invalid(R.R_500_BARE_NEWLINE_CMD)
    assert drive([b"NOOP\n"], Limits(bare_newline="normalise")).events[0] == C.Noop()


def test_eof_mid_data_is_connection_closed() -> None:
    run = drive([b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nabc\r\n"])
    assert run.closed
    assert not any(isinstance(e, DataEnd) for e in run.events)


def test_bdat_bare_cr_split_across_chunks_is_fine() -> None:
    wire = (
        b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 3\r\nab\rBDAT 3 LAST\r\n\ncd"
    )
    run = drive([wire])
    assert [e.problem for e in run.events if isinstance(e, ChunkEnd)] == [None, None]
    assert b"".join(run.bodies) == b"ab\r\ncd"
    run = drive([wire.replace(b"LAST\r\n\ncd", b"LAST\r\nxcd")])
    assert [e.problem for e in run.events if isinstance(e, ChunkEnd)][-1] == R.R_550_BARE_NEWLINE


def test_reply_rendering() -> None:
    assert R.R_250_OK.render() == b"250 2.0.0 OK\r\n"
    assert R.multiline(250, "host", ["A", "B"]).render() == b"250-host\r\n250-A\r\n250 B\r\n"
    assert R.Reply(250, "2.1.5", "a", ("b",)).render() == b"250-2.1.5 a\r\n250 2.1.5 b\r\n"
    assert R.Reply(550, "5.0.0", "x\r\nMAIL").render() == b"550 5.0.0 x  MAIL\r\n"


_pieces = st.sampled_from(
    [
        b"EHLO x\r\n", b"HELO y\r\n", b"MAIL FROM:<a@b.test>\r\n", b"RCPT TO:<c@d.test>\r\n",
        b"DATA\r\n", b"BDAT 5\r\n", b"BDAT 3 LAST\r\n", b"RSET\r\n", b"AUTH PLAIN\r\n", b".\r\n",
        b"\r\n.\r\n", b"\n.\n", b"\r", b"\n", b".", b"x" * 50, b"NOOP\r\n", b"\xff\xfe\r\n",
        b"STARTTLS\r\n", b"MAIL FROM:<\xc3\xa9@b.test> SMTPUTF8\r\n",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=40), st.integers(min_value=1, max_value=13))
def test_fuzz_never_crashes_and_split_invariant(pieces: list[bytes], step: int) -> None:
    wire = b"".join(pieces)
    for policy in ("reject", "normalise"):
        limits = Limits(
            max_line_length=1000, max_message_size=300, bare_newline=policy, min_discard=0
        )
        whole = drive([wire], limits)
        split = drive(split_every(wire, step), limits)
        assert (split.events, split.bodies, split.out) == (whole.events, whole.bodies, whole.out)
        assert all(len(b) <= 300 for b in whole.bodies)


def test_a_bdat_chunk_past_the_bound_is_refused_before_any_of_it_is_read() -> None:
    """Its size alone says the message can only end in 552-and-close: say so at once instead of
    reading (and discarding) up to the bound first."""
    run = drive([BDAT_HEAD + b"BDAT 2001 LAST\r\n"], GIVE_UP, eof=False)
    assert run.events[-1] == Invalid(R.R_552_TOO_BIG_CLOSING, fatal=True)
    run = drive([BDAT_HEAD + b"BDAT 2000 LAST\r\n"], GIVE_UP, eof=False)  # within: read it
    assert run.events[-1] != Invalid(R.R_552_TOO_BIG_CLOSING, fatal=True)


@pytest.mark.parametrize("line", [b"NOOP a\rb\r\n", b"NOOP a\0b\r\n", b"MAIL FROM:<a@b>\0\r\n"])
def test_a_cr_or_nul_inside_a_command_line_is_refused(line: bytes) -> None:
    m = ServerMachine(Limits())
    m.receive_data(b"EHLO client.example\r\n")
    assert isinstance(m.next_event(), C.Helo)
    m.send(R.R_250_OK)
    m.receive_data(line + b"NOOP\r\n")
    ev = m.next_event()
    assert isinstance(ev, Invalid) and ev.reply.code == 501 and "Control" in ev.reply.text
    m.send(ev.reply)
    assert isinstance(m.next_event(), C.Noop)  # the session goes on with the next line

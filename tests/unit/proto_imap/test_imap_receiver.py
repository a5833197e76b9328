"""The IMAP receiver: framing of lines and literals, modes, limits (RFC 9051 2.2, 4.3; RFC 7888)."""

from __future__ import annotations

import pytest

from carteiro.proto.imap.receiver import (
    NEED_DATA,
    AuthResponse,
    Command,
    Event,
    IdleDone,
    NeedContinuation,
    ProtocolError,
    Receiver,
)


def drain(r: Receiver, data: bytes = b"") -> list[Event]:
    """Feed ``data`` and collect events up to NEED_DATA (continuations are simply accepted)."""
    r.feed(data)
    out: list[Event] = []
    while (ev := r.next_event()) is not NEED_DATA:
        out.append(ev)
    return out


def test_simple_command() -> None:
    r = Receiver()
    assert drain(r, b"a1 NOOP\r\n") == [Command("a1", "NOOP", (b"",))]


def test_name_is_upper_cased_and_args_kept() -> None:
    (cmd,) = drain(Receiver(), b"x uid fetch 1:* (UID FLAGS)\r\n")
    assert cmd == Command("x", "UID", (b" fetch 1:* (UID FLAGS)",))


def test_pipelined_commands_in_one_feed() -> None:
    evs = drain(Receiver(), b"a NOOP\r\nb CHECK\r\nc LOGOUT\r\n")
    assert [e.tag for e in evs if isinstance(e, Command)] == ["a", "b", "c"]


def test_bare_lf_is_accepted() -> None:
    assert drain(Receiver(), b"a NOOP\n") == [Command("a", "NOOP", (b"",))]


def test_partial_line_needs_data() -> None:
    r = Receiver()
    assert drain(r, b"a NO") == []
    assert drain(r, b"OP\r") == []
    assert drain(r, b"\n") == [Command("a", "NOOP", (b"",))]


def test_empty_lines_are_ignored() -> None:
    assert drain(Receiver(), b"\r\n\r\na NOOP\r\n") == [Command("a", "NOOP", (b"",))]


def test_synchronising_literal_asks_for_continuation() -> None:
    r = Receiver()
    assert drain(r, b"a1 LOGIN {4}\r\n") == [NeedContinuation("a1", "LOGIN", 4)]
    assert r.in_command
    assert drain(r, b"fred {6}\r\n") == [NeedContinuation("a1", "LOGIN", 6)]
    assert drain(r, b"sesame\r\n") == [
        Command("a1", "LOGIN", (b" {4}", b" {6}", b""), (b"fred", b"sesame"))
    ]
    assert not r.in_command


def test_literal_may_contain_crlf_and_anything() -> None:
    r = Receiver()
    evs = drain(r, b"a APPEND x {7}\r\n\r\n}{0}\n\r\n")
    assert evs == [
        NeedContinuation("a", "APPEND", 7),
        Command("a", "APPEND", (b" x {7}", b""), (b"\r\n}{0}\n",)),
    ]


def test_non_synchronising_literal_needs_no_continuation() -> None:
    evs = drain(Receiver(), b"a LOGIN {4+}\r\nfred {6+}\r\nsesame\r\n")
    assert evs == [Command("a", "LOGIN", (b" {4+}", b" {6+}", b""), (b"fred", b"sesame"))]


def test_literal8_is_framed_like_a_literal() -> None:
    evs = drain(Receiver(), b"a APPEND x ~{3+}\r\na\x00b\r\n")
    assert evs == [Command("a", "APPEND", (b" x ~{3+}", b""), (b"a\x00b",))]


def test_zero_length_literal() -> None:
    evs = drain(Receiver(), b'a LOGIN {0}\r\n ""\r\n')
    assert evs == [
        NeedContinuation("a", "LOGIN", 0),
        Command("a", "LOGIN", (b" {0}", b' ""'), (b"",)),
    ]


def test_reject_literal_drops_the_command() -> None:
    r = Receiver()
    assert drain(r, b"a APPEND nobox {100}\r\n") == [NeedContinuation("a", "APPEND", 100)]
    # ... session sends "a NO [TRYCREATE]" instead of "+" and rejects:
    r.reject_literal()
    assert not r.in_command
    assert drain(r, b"b NOOP\r\n") == [Command("b", "NOOP", (b"",))]


def test_reject_literal_only_right_after_continuation() -> None:
    r = Receiver()
    drain(r, b"a NOOP\r\n")
    with pytest.raises(RuntimeError):
        r.reject_literal()


def test_literal_fed_in_pieces() -> None:
    r = Receiver()
    drain(r, b"a APPEND x {10}\r\n")
    assert drain(r, b"01234") == []
    assert r.buffered == 5 + len(b" x {10}")
    assert drain(r, b"56789") == []
    assert drain(r, b"\r\n") == [Command("a", "APPEND", (b" x {10}", b""), (b"0123456789",))]


def test_invalid_tag() -> None:
    assert drain(Receiver(), b"+a NOOP\r\nb NOOP\r\n") == [
        ProtocolError(None, "Invalid tag"),
        Command("b", "NOOP", (b"",)),
    ]
    assert drain(Receiver(), b"* OK hi\r\n") == [ProtocolError(None, "Invalid tag")]


def test_missing_command() -> None:
    assert drain(Receiver(), b"a1\r\n") == [ProtocolError("a1", "Missing command")]
    assert drain(Receiver(), b"a1 \r\n") == [ProtocolError("a1", "Missing command")]


def test_invalid_command_name() -> None:
    assert drain(Receiver(), b"a1 NO(OP\r\n") == [ProtocolError("a1", "Invalid command name")]


def test_invalid_tag_with_sync_literal_does_not_wait_for_it() -> None:
    # RFC 9051 7.5: without "+" the client sends no octets; the next line is a command.
    assert drain(Receiver(), b"+a LOGIN {3}\r\nb NOOP\r\n") == [
        ProtocolError(None, "Invalid tag"),
        Command("b", "NOOP", (b"",)),
    ]


def test_invalid_tag_with_non_sync_literal_is_fatal() -> None:
    r = Receiver()
    (err,) = drain(r, b"+a LOGIN {3+}\r\nabc\r\n")
    assert err == ProtocolError(None, "Invalid tag", fatal=True)
    assert r.closed
    assert drain(r, b"b NOOP\r\n") == []


def test_line_too_long_is_refused_and_skipped() -> None:
    r = Receiver(max_line=100)
    evs = drain(r, b"a1 NOOP " + b"x" * 200 + b"\r\nb NOOP\r\n")
    assert evs == [
        ProtocolError("a1", "Command line too long", code="TOOBIG"),
        Command("b", "NOOP", (b"",)),
    ]


def test_line_exactly_at_limit_is_fine() -> None:
    line = b"a1 NOOP" + b"x" * 93  # 100 octets
    assert len(line) == 100
    (ev,) = drain(Receiver(max_line=100), line + b"\r\n")
    assert isinstance(ev, Command)


def test_long_line_bytewise_never_buffers_much() -> None:
    r = Receiver(max_line=100)
    r.feed(b"a1 ")
    for _ in range(10_000):
        r.feed(b"y" * 10)
        assert r.next_event() is NEED_DATA
        assert r.buffered <= 102
    assert drain(r, b"\r\n") == [ProtocolError("a1", "Command line too long", code="TOOBIG")]


ENDLESS = ProtocolError(None, "Line too long", fatal=True, code="TOOBIG")


@pytest.mark.parametrize("split", [0, 1, 7, 100, 1001])
def test_endless_line_is_fatal(split: int) -> None:
    """An over-long line that goes on past max_discard_line octets without LF is fatal (the
    session says * BYE [TOOBIG] and closes), whatever the chunking."""
    r = Receiver(max_line=100, max_discard_line=1000)
    wire = b"a1 NOOP " + b"y" * 5000 + b"\r\nb NOOP\r\n"
    chunks = [wire[i : i + split] for i in range(0, len(wire), split)] if split else [wire]
    evs: list[Event] = []
    for c in chunks:
        evs += drain(r, c)
    assert evs == [ENDLESS]
    assert r.closed and r.buffered == 0


@pytest.mark.parametrize("length", [999, 1000, 1001])
def test_discard_bound_is_exact(length: int) -> None:
    wire = b"a1 " + b"y" * (length - 3) + b"\nb NOOP\r\n"
    for n in (len(wire), 1, 333):
        r = Receiver(max_line=100, max_discard_line=1000)
        evs: list[Event] = []
        for i in range(0, len(wire), n):
            evs += drain(r, wire[i : i + n])
        if length <= 1000:
            assert evs == [
                ProtocolError("a1", "Command line too long", code="TOOBIG"),
                Command("b", "NOOP", (b"",)),
            ]
        else:
            assert evs == [ENDLESS]


def test_default_discard_bound() -> None:
    assert Receiver(max_line=100).max_discard_line == 1 << 20
    assert Receiver(max_line=1 << 20).max_discard_line == 16 << 20


def test_over_long_line_announcing_non_sync_literal_is_fatal() -> None:
    r = Receiver(max_line=100)
    (ev,) = drain(r, b"a1 APPEND x" + b" " * 200 + b"{5+}\r\nhello\r\n")
    assert ev == ProtocolError("a1", "Command line too long", fatal=True, code="TOOBIG")


def test_sync_literal_too_big_is_refused_without_continuation() -> None:
    r = Receiver(max_literal=1000)
    evs = drain(r, b"a APPEND x {1001}\r\nb NOOP\r\n")
    assert evs == [
        ProtocolError("a", "Message too big", code="TOOBIG"),
        Command("b", "NOOP", (b"",)),
    ]
    assert not r.closed


def test_non_sync_literal_too_big_is_fatal() -> None:
    # RFC 7888 4: BAD [TOOBIG], and the octets already sent cannot be told from commands.
    r = Receiver(max_literal=1000)
    assert drain(r, b"a APPEND x {1001+}\r\n") == [
        ProtocolError("a", "Literal too big", fatal=True, code="TOOBIG")
    ]
    assert r.closed


def test_literal_minus_limits_non_sync_literals_to_4096() -> None:
    ok = drain(Receiver(literal_plus=False), b"a LOGIN {4096+}\r\n" + b"u" * 4096 + b" p\r\n")
    assert isinstance(ok[0], Command)
    (err,) = drain(Receiver(literal_plus=False), b"a APPEND x {4097+}\r\n")
    assert err == ProtocolError("a", "Literal too big", fatal=True, code="TOOBIG")
    # synchronising literals are not affected
    assert drain(Receiver(literal_plus=False), b"a APPEND x {5000}\r\n") == [
        NeedContinuation("a", "APPEND", 5000)
    ]


def test_huge_literal_number() -> None:
    (err,) = drain(Receiver(), b"a APPEND x {99999999999999999999999999}\r\n")
    assert err == ProtocolError("a", "Message too big", code="TOOBIG")


def test_total_command_size_limit() -> None:
    r = Receiver(max_literal=100, max_command=250)
    evs = drain(
        r, b"a APPEND x {100+}\r\n" + b"m" * 100 + b" {100+}\r\n" + b"m" * 100 + b" {100}\r\n"
    )
    assert evs == [ProtocolError("a", "Message too big", code="TOOBIG")]
    assert not r.closed


def test_auth_mode_returns_raw_line() -> None:
    r = Receiver()
    (cmd,) = drain(r, b"a AUTHENTICATE PLAIN\r\n")
    assert isinstance(cmd, Command)
    r.expect_auth_response()
    assert drain(r, b"AGZyZWQAc2VzYW1l\r\n") == [AuthResponse(b"AGZyZWQAc2VzYW1l")]
    # back in command mode
    assert drain(r, b"b NOOP\r\n") == [Command("b", "NOOP", (b"",))]


def test_auth_mode_set_after_pipelined_line_arrived() -> None:
    r = Receiver()
    r.feed(b"a AUTHENTICATE PLAIN\r\n*\r\n")
    assert isinstance(r.next_event(), Command)
    r.expect_auth_response()
    assert r.next_event() == AuthResponse(b"*")


def test_auth_mode_empty_line() -> None:
    r = Receiver()
    r.expect_auth_response()
    assert drain(r, b"\r\n") == [AuthResponse(b"")]


def test_idle_done() -> None:
    r = Receiver()
    assert drain(r, b"a IDLE\r\n") == [Command("a", "IDLE", (b"",))]
    r.expect_idle_done()
    assert drain(r, b"done\r\n") == [IdleDone()]
    r.expect_idle_done()
    assert drain(r, b"b NOOP\r\n") == [ProtocolError(None, "Expected DONE")]
    assert drain(r, b"c NOOP\r\n") == [Command("c", "NOOP", (b"",))]


def test_mode_cannot_change_inside_a_command() -> None:
    r = Receiver()
    drain(r, b"a LOGIN {3}\r\n")
    with pytest.raises(RuntimeError):
        r.expect_idle_done()


def test_redacted_hides_literal_content() -> None:
    (_, cmd) = drain(Receiver(), b"a LOGIN fred {6}\r\nsesame\r\n")
    assert isinstance(cmd, Command)
    assert cmd.redacted() == "a LOGIN fred {6}<6 octets>"
    assert cmd.size == len(b" fred {6}") + 6


def test_feeding_after_close_is_ignored() -> None:
    r = Receiver(max_literal=10)
    drain(r, b"a X {11+}\r\n")
    r.feed(b"b NOOP\r\n")
    assert r.next_event() is NEED_DATA
    assert r.buffered == 0


def test_take_unread_hands_back_what_follows_a_command() -> None:
    """RFC 4978 COMPRESS: what was pipelined after the command is in another encoding; the
    session takes it back unread and feeds the decoded octets instead."""
    r = Receiver()
    r.feed(b"a COMPRESS DEFLATE\r\n\x78\x9c\x00garbage")
    assert r.next_event() == Command("a", "COMPRESS", (b" DEFLATE",))
    assert r.take_unread() == b"\x78\x9c\x00garbage"
    assert r.buffered == 0
    assert drain(r, b"b NOOP\r\n") == [Command("b", "NOOP", (b"",))]

"""Cost of the hot paths. Bounds are loose (CI machines are shared and noisy): they catch an
accidental per-byte loop or quadratic buffering, not a few percent."""

from __future__ import annotations

import time
import timeit

from carteiro.proto.imap.parser import parse_command
from carteiro.proto.imap.receiver import NEED_DATA, Command, Receiver

TYPICAL = [
    b"a1 UID FETCH 1:* (UID FLAGS)",
    b"a2 UID FETCH 4000:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
    b"Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])",
    b"a3 UID SEARCH UNDELETED UNSEEN SINCE 1-Feb-2024",
    b'a4 SELECT "INBOX" (CONDSTORE)',
    b"a5 UID STORE 1:5 +FLAGS.SILENT (\\Seen)",
    b'a6 LIST "" "*" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))',
    b"a7 NOOP",
]


def per_call_us(fn: object, number: int = 500) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def test_typical_commands_parse_in_microseconds() -> None:
    for line in TYPICAL:
        r = Receiver()
        data = line + b"\r\n"

        def once(r: Receiver = r, data: bytes = data) -> object:
            r.feed(data)
            event = r.next_event()
            assert isinstance(event, Command)
            return parse_command(event)

        # ~5-20 us on a quiet machine; the bound leaves room for a loaded one
        assert per_call_us(once) < 1000, line


def test_receiver_is_linear_in_pipelined_commands() -> None:
    def run(n: int) -> float:
        data = b"".join(b"a%d UID FETCH %d:* (FLAGS)\r\n" % (i, i) for i in range(n))
        r = Receiver()
        start = time.perf_counter()
        r.feed(data)
        count = 0
        while r.next_event() is not NEED_DATA:
            count += 1
        assert count == n
        return time.perf_counter() - start

    small = min(run(2_000) for _ in range(3))
    large = min(run(20_000) for _ in range(3))
    assert large < small * 40  # linear is 10x; quadratic would be 100x


def test_large_literal_is_cheap() -> None:
    body = b"x" * (8 * 1024 * 1024)
    r = Receiver()
    start = time.perf_counter()
    r.feed(b"a APPEND INBOX {%d+}\r\n" % len(body))
    for i in range(0, len(body), 65536):
        r.feed(body[i : i + 65536])
        assert r.next_event() is NEED_DATA
    r.feed(b"\r\n")
    event = r.next_event()
    assert isinstance(event, Command) and event.literals[0] == body
    assert time.perf_counter() - start < 5


def test_partial_line_is_not_rescanned() -> None:
    r = Receiver(max_line=1 << 20)
    start = time.perf_counter()
    r.feed(b"a LOGIN ")
    for _ in range(200_000):
        r.feed(b"x")
        r.next_event()
    assert time.perf_counter() - start < 10

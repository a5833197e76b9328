"""Hostile messages (issue 10 point 5): each costs time and memory in proportion to its size,
never minutes and gigabytes. The limits are in docs/mime.md ("Limits"); the IMAP-level checks
(other sessions keep being answered) are in tests/protocol/imap/test_imap_hostile_messages.py.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from collections.abc import Callable

import pytest

from carteiro.mime import parse
from carteiro.mime.address import MAX_ADDRESSES, parse_address_list, parse_address_prefix
from carteiro.mime.bodystructure import body_structure, envelope
from carteiro.mime.cost import costly
from carteiro.mime.parse import MAX_FIELDS, MAX_HEADER_FIELDS, MAX_VALUE, Message
from carteiro.mime.searchtext import address_texts, header_texts, message_texts, subject_texts
from carteiro.mime.sections import Section, body_section
from carteiro.testing.hostile_mail import (
    BASE,
    addresses,
    commas,
    deep,
    encoded_words,
    header_lines,
    wide,
)


def dash_lines(n: int) -> bytes:
    # 99 boundaries open, then "--" lines naming none of them: each was compared with every
    # open boundary in Python (10 s for a million lines).
    out = bytearray(BASE + b"MIME-Version: 1.0\r\n")
    for i in range(99):
        out += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
    return bytes(out) + b"Content-Type: text/plain\r\n\r\n" + b"--zz\r\n" * n


def content_params(n: int) -> bytes:
    params = b"; a=b" * n
    return (
        BASE + b"MIME-Version: 1.0\r\nContent-Type: text/plain" + params + b"\r\n"
        b"Content-Disposition: inline" + params + b"\r\n\r\nx\r\n"
    )


def disposition_junk(fields: int, width: int) -> bytes:
    # Every Content-Disposition is read again while none had parameters (as Dovecot does).
    field = b"Content-Disposition: inline" + b";" * width + b"\r\n"
    return (
        BASE + b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n" + field * fields + b"\r\nx\r\n"
    )


# The brief's messages, scaled so the old code would show the defect within a test run.
HOSTILE: dict[str, Callable[[], bytes]] = {
    "1 MB To: of commas": lambda: commas(1 << 20),
    "200,000 addresses": lambda: addresses(200_000),
    "100,000 encoded words": lambda: encoded_words(100_000),
    "10,000 parts wide": lambda: wide(10_000),
    "1,000 levels deep": lambda: deep(1_000),
    "1,000,000 header lines": lambda: header_lines(1_000_000),
    "1,000,000 '--' lines under 99 boundaries": lambda: dash_lines(1_000_000),
    "400,000 Content-* parameters": lambda: content_params(200_000),
    "10 MB of Content-Disposition junk": lambda: disposition_junk(2000, 5000),
}


def everything(msg: Message) -> None:
    """What IMAP FETCH and SEARCH derive from a message."""
    envelope(msg)
    body_structure(msg)
    body_section(msg, Section((), "HEADER.FIELDS", ("TO",)))
    address_texts(msg, "to")
    subject_texts(msg)
    header_texts(msg, "x")
    message_texts(msg)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_message_costs_in_proportion(name: str) -> None:
    raw = HOSTILE[name]()
    # Linear baseline on the same octets: what any server does to any message (CRLF check,
    # a copy, a case fold of its text). A noisy machine slows both alike.
    baseline = min(
        _timed(lambda: raw.decode("latin-1").casefold().encode("utf-8")) for _ in range(3)
    )
    t0 = time.perf_counter()
    everything(parse(raw))
    elapsed = time.perf_counter() - t0
    gc.collect()
    tracemalloc.start()
    try:
        msg = parse(raw)
        everything(msg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Before the limits: 1 MB of commas took ~8 s and hundreds of MB; 1,000,000 header lines
    # made a million Field objects. Now well under a second, a few times the size.
    assert peak < 24 * len(raw) + (32 << 20), f"{name}: peak {peak / 1e6:.0f} MB"
    assert elapsed < 200 * baseline + 2.0, f"{name}: {elapsed:.2f} s, baseline {baseline:.4f} s"
    assert costly(msg)  # a server runs this work off its event loop


def test_address_list_stops_at_the_limit_and_keeps_the_rest_for_search() -> None:
    value = b", ".join(b"u%d@example.org" % i for i in range(MAX_ADDRESSES + 5))
    assert len(parse_address_list(value)) == MAX_ADDRESSES
    addrs, rest = parse_address_prefix(value, limit=3)
    assert [a.mailbox for a in addrs] == [b"u0", b"u1", b"u2"]
    assert rest.startswith(b"u3@example.org, u4@")
    assert parse_address_prefix(b"a@b, c@d", limit=2)[1] == b""
    # A group's members count too: the limit holds inside a group.
    addrs, rest = parse_address_prefix(b"g: a@b, c@d, e@f;", limit=2)
    assert len(addrs) == 3 and addrs[-1].is_group_end and rest.startswith(b"c@d")


def test_empty_list_elements_read_as_before() -> None:
    # Dovecot names each empty element; the quick path for "," must give the same entries.
    got = [(a.mailbox, a.domain, a.invalid) for a in parse_address_list(b"a@b,, ,(c),c@d")]
    gap = (b"MISSING_MAILBOX", b"MISSING_DOMAIN", True)
    assert got == [(b"a", b"b", False), gap, gap, gap, (b"c", b"d", False)]
    plain = parse_address_list(b",", fill_missing=False)
    assert [(a.mailbox, a.domain, a.invalid) for a in plain] == [(b"", b"", True)]


def test_search_finds_addresses_past_the_limit() -> None:
    raw = addresses(MAX_ADDRESSES + 10)
    (text,) = address_texts(parse(raw), "to")
    assert "<user0@example.org>" in text  # parsed and normalised
    assert "user10009@example.org" in text  # past the limit: searched as written


def test_header_fields_past_the_limit_are_skipped_not_lost() -> None:
    n = MAX_HEADER_FIELDS + 100
    raw = BASE + b"X: y\r\n" * n + b"To: late@example.org\r\n\r\nbody\r\n"
    msg = parse(raw)
    assert len(msg.root.fields) == MAX_HEADER_FIELDS
    # The header still ends at the blank line: sizes and BODY[HEADER] / BODY[TEXT] are exact.
    assert msg.data[msg.root.body_start :] == b"body\r\n"
    assert body_section(msg, Section((), "HEADER")) == raw[: raw.index(b"\r\n\r\n") + 4]
    # HEADER.FIELDS gives the indexed fields and the blank line, not the skipped lines.
    fields = body_section(msg, Section((), "HEADER.FIELDS", ("FROM",)))
    assert fields == b"From: a@example.org\r\n\r\n"
    # Not indexed: ENVELOPE does not see the late To.
    assert envelope(msg)[5] is None


def test_field_limit_per_message() -> None:
    per_part = MAX_FIELDS // 10 + 1  # under the per-header limit, over the total in ten parts
    part = b"--b\r\n" + b"X: y\r\n" * min(per_part, MAX_HEADER_FIELDS - 1) + b"\r\nx\r\n"
    raw = BASE + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    raw += part * 12 + b"--b--\r\n"
    msg = parse(raw)
    assert sum(len(p.fields) for p in msg.root.walk()) <= MAX_FIELDS
    assert len(msg.root.children) == 12  # the structure is intact
    assert all(p.body_start < p.end for p in msg.root.children)


def test_a_boundary_in_skipped_header_lines_still_ends_the_part() -> None:
    junk = b"X: y\r\n" * (MAX_HEADER_FIELDS + 5)
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n" + junk + b"--b\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--b--\r\n"
    )
    msg = parse(raw)
    first, second = msg.root.children
    assert not first.has_eoh and first.body_start == first.end
    assert msg.body_bytes(second) == b"second"


def test_ordinary_messages_are_cheap() -> None:
    raw = BASE + b"To: " + b", ".join(b"u%d@example.org" % i for i in range(30)) + b"\r\n\r\n"
    assert not costly(parse(raw + b"hello\r\n" * 2000))


def test_separators_past_the_part_limit_are_skipped_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Past MAX_PARTS a separator of the innermost boundary changes nothing, so the parser
    # skips those lines at C speed (a million "--b" lines took 2 s). Where the part then ends
    # must not change: the offsets are what the line-by-line parser gave.
    parse_module = sys.modules["carteiro.mime.parse"]
    monkeypatch.setattr(parse_module, "MAX_PARTS", 1)
    head = (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n--c\r\n"
    )
    for tail, inner_end, outer_end in ((b"--b--\r\n", 124, 131), (b"text\r\n--b--\r\n", 128, 137)):
        msg = parse(head + tail)
        inner = msg.root.children[0]
        assert (inner.start, inner.body_start, inner.end) == (69, 114, inner_end)
        assert msg.root.end == outer_end


def test_many_separators_past_the_part_limit_cost_little() -> None:
    raw = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    raw += b"--b\r\n" * 1_000_000
    baseline = min(_timed(lambda: raw.decode("latin-1").casefold()) for _ in range(3))
    elapsed = _timed(lambda: parse(raw))
    assert elapsed < 50 * baseline + 0.3, f"{elapsed:.2f} s, baseline {baseline:.4f} s"


def test_envelope_and_search_read_at_most_max_value_of_a_field() -> None:
    subject = b"s" * (3 * MAX_VALUE)
    raw = b"From: a@example.org\r\nSubject: " + subject + b"\r\n\r\nx\r\n"
    msg = parse(raw)
    assert envelope(msg)[1] == "s" * MAX_VALUE
    assert subject_texts(msg) == ["s" * MAX_VALUE]
    # The octets themselves are all served.
    got = body_section(msg, Section((), "HEADER.FIELDS", ("SUBJECT",)))
    assert got == b"Subject: " + subject + b"\r\n\r\n"

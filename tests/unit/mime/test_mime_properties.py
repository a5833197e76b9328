"""Properties that must hold for any input: no exceptions, offsets in range, sections and
BODYSTRUCTURE consistent with the offsets, line endings irrelevant."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mime_imapfmt import fmt

from carteiro.mime.address import format_address_list, parse_address_list
from carteiro.mime.bodystructure import body_structure, envelope
from carteiro.mime.dates import parse_date
from carteiro.mime.encoded_words import decode_words
from carteiro.mime.header import decode_params
from carteiro.mime.parse import MESSAGE, Message, Part, parse
from carteiro.mime.rfc822 import Scanner, parse_params
from carteiro.mime.searchtext import body_texts, message_texts
from carteiro.mime.sections import (
    Section,
    UnknownCte,
    binary_section,
    body_section,
    decode_base64,
    decode_quoted_printable,
    find_part,
)

# Lines that steer the parser into its interesting states far more often than random bytes.
LINES = [
    b"",
    b"",
    b"--a",
    b"--a--",
    b"--ab",
    b"--a  junk",
    b"--b",
    b"--b--",
    b"--",
    b"Content-Type: multipart/mixed; boundary=a",
    b'Content-Type: multipart/alternative; boundary="b"',
    b"Content-Type: multipart/digest; boundary=b",
    b"Content-Type: multipart/mixed; boundary=",
    b"Content-Type: message/rfc822",
    b"Content-Type: text/plain; charset=utf-8",
    b"Content-Type: text",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Disposition: attachment; filename*0*=utf-8''a%20; filename*1=b",
    b"MIME-Version: 1.0",
    b"From: A <a@example.org>, group:;",
    b"Subject: =?utf-8?q?caf=C3=A9?=",
    b" folded continuation",
    b"\tfolded (comment",
    b"body text =3D",
    b"aGVsbG8=",
    b"no colon line",
    b"\x00\xff\x80",
]
mimeish = st.builds(
    lambda lines, eol: eol.join(lines),
    st.lists(st.sampled_from(LINES), max_size=60),
    st.sampled_from([b"\n", b"\r\n"]),
)
anything = st.one_of(st.binary(max_size=2000), mimeish)
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def imap_value_ok(v: Any) -> bool:
    if v is None or isinstance(v, (str, bytes)):
        return True
    if isinstance(v, int) and not isinstance(v, bool):
        return v >= 0
    return isinstance(v, list) and all(imap_value_ok(x) for x in v)


def paths(msg: Message) -> list[tuple[tuple[int, ...], Part]]:
    """Every part with its section number, numbered as RFC 3501 6.4.5 says: the parts of a
    multipart are 1..n; a non-multipart entity (the message itself, or the message inside a
    message/rfc822 part) has the single part 1."""
    out: list[tuple[tuple[int, ...], Part]] = []

    def numbered(prefix: tuple[int, ...], entity: Part) -> list[tuple[tuple[int, ...], Part]]:
        if entity.kind == "multipart":
            return [((*prefix, i), c) for i, c in enumerate(entity.children, 1)]
        return [((*prefix, 1), entity)]

    stack = numbered((), msg.root)
    while stack:
        path, part = stack.pop()
        out.append((path, part))
        if part.kind == "multipart":
            stack.extend(numbered(path, part))
        elif part.kind == MESSAGE and part.children:
            stack.extend(numbered(path, part.children[0]))
    return out


@PROPS
@given(anything)
def test_parse_never_raises_and_offsets_are_sane(raw: bytes) -> None:
    msg = parse(raw)
    assert msg.size == len(msg.data)
    assert msg.data.count(b"\n") == msg.data.count(b"\r\n")
    for part in msg.root.walk():
        assert 0 <= part.start <= part.body_start <= part.end <= msg.size
        assert part.depth < 100
        last = part.body_start
        for child in part.children:
            assert child.parent is part
            assert last <= child.start and child.end <= part.end
            last = child.end
        if part.kind == MESSAGE:
            assert len(part.children) == 1
            assert part.children[0].start == part.body_start
            assert part.children[0].end == part.end
        for f in part.fields:
            assert part.start <= f.start <= f.value_start <= f.value_end <= f.end
            assert f.end <= part.body_start


@PROPS
@given(anything)
def test_structures_are_imap_values(raw: bytes) -> None:
    msg = parse(raw)
    for value in (envelope(msg), body_structure(msg), body_structure(msg, extensible=False)):
        assert imap_value_ok(value)
        fmt(value)
    assert len(envelope(msg)) == 10


@PROPS
@given(anything)
def test_sections_match_offsets_and_bodystructure(raw: bytes) -> None:
    msg = parse(raw)
    data = msg.data.replace(b"\x00", b"\x80")
    assert body_section(msg, Section()) == data
    assert body_section(msg, Section((), "TEXT")) == data[msg.root.body_start :]
    assert body_section(msg, Section((), "HEADER")) == data[: msg.root.body_start]
    for path, part in paths(msg):
        assert find_part(msg, path) is part
        assert body_section(msg, Section(path)) == data[part.body_start : part.end]
        assert body_section(msg, Section(path, "MIME")) == data[part.start : part.body_start]
        out = binary_section(msg, Section(path))
        assert isinstance(out, (bytes, UnknownCte))
    for part in msg.root.walk():
        for value in (msg.body_lines(part), part.body_size):
            assert value >= 0
    assert body_section(msg, Section((9999,))) is None


@PROPS
@given(st.lists(st.sampled_from(LINES), max_size=60))
def test_lf_and_crlf_parse_the_same(lines: list[bytes]) -> None:
    lf = parse(b"\n".join(lines))
    crlf = parse(b"\r\n".join(lines))
    assert lf.data == crlf.data
    assert body_structure(lf) == body_structure(crlf)
    assert envelope(lf) == envelope(crlf)


@PROPS
@given(anything)
def test_search_text_never_raises(raw: bytes) -> None:
    msg = parse(raw)
    assert all(isinstance(t, str) for t in body_texts(msg))
    assert all(isinstance(t, str) for t in message_texts(msg))


@PROPS
@given(st.binary(max_size=300))
def test_header_helpers_never_raise(value: bytes) -> None:
    decode_words(value)
    decode_words(value.decode("latin-1"))
    parse_date(value)
    addrs = parse_address_list(value)
    format_address_list(addrs)
    for a in addrs:
        assert a.is_group_start or a.is_group_end or (a.mailbox is not None and a.domain)
    params = parse_params(Scanner(b";" + value))
    decode_params(params)
    decode_base64(value)
    decode_quoted_printable(value)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=500))
def test_base64_round_trip(payload: bytes) -> None:
    import base64

    assert decode_base64(base64.encodebytes(payload).replace(b"\n", b"\r\n")) == payload


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=500))
def test_quoted_printable_round_trip(payload: bytes) -> None:
    import quopri

    encoded = quopri.encodestring(payload).replace(b"\n", b"\r\n")
    expected = payload.replace(b"\n", b"\r\n") if b"\r" not in payload else None
    if expected is not None:
        assert decode_quoted_printable(encoded) == expected

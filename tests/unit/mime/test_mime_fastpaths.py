"""The fast paths of the MIME layer give exactly what the general way gives, on random and
hostile input (encoded words, folded lines, bare CR, 8-bit, NUL): the search index stores their
results, and SEARCH/SORT compare them with what the evaluator computes from the message.

Each reference below is the general way (kept in the module, or the code the fast path
replaced, copied here as it was)."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carteiro.mime import dates, searchtext
from carteiro.mime.address import _parse, parse_address_prefix
from carteiro.mime.dates import parse_date
from carteiro.mime.encoded_words import decode_charset, decode_q, decode_words, unhex
from carteiro.mime.header import unfold
from carteiro.mime.parse import Message, parse, to_crlf
from carteiro.mime.sections import decode_quoted_printable
from carteiro.mime.sortkeys import ODD_RANGES, ODD_UNIDATA, _title, casemap, sort_fields

PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- references: the code the fast paths replaced ----

_FOLD = re.compile(rb"\r?\n")
_QP_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_TRAILING_BLANKS = re.compile(rb"(?<![ \t])[ \t]++(?=\r?\n|\Z)")
_SOFT_BREAK = re.compile(rb"=(?:\r?\n|\Z)")
_BLANKS = re.compile(r"[ \t]+")
_COMMENT = re.compile(r"\([^()]*\)")


def ref_unfold(value: bytes) -> bytes:
    if b"\n" in value:
        value = _FOLD.sub(b"", value)
    return value.replace(b"\r", b" ") if b"\r" in value else value


def ref_unhex(text: bytes) -> bytes:
    return _QP_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), text)


def ref_quoted_printable(body: bytes) -> bytes:
    body = _TRAILING_BLANKS.sub(b"", body)
    body = _SOFT_BREAK.sub(b"", body)
    return ref_unhex(body)


def ref_casemap(s: str) -> str:
    return unicodedata.normalize("NFKD", "".join(_title(c) for c in s))


def ref_fields(msg: Message, name: bytes) -> list[bytes]:
    return [msg.raw_value(f) for f in msg.root.fields if f.name.lower() == name.lower()]


# ---- strategies: pieces that steer into the interesting cases ----

ATOMS = [b"a", b"bob", b"J", b"x.y", b"=?utf-8?q?J=C3=B6rg?=", b"\xc3\xa9l\xc3\xa8ve", b"\xe9t\xe9"]
ADDR_PIECES = [
    b"a@b.c", b"bob@example.net", b"first.last@sub.example.org", b"<a@b.c>", b"< a@b.c >",
    b"Bob <bob@x.y>", b"Bob  Example <b@x>", b"Bob\t Ex <b@x>", b'"Doe, John" <j@d.e>',
    b'"" <a@b>', b'"a\\"b" <c@d>', b"J. Smith <j@s>", b"g: a@b, c@d;", b"g:;", b"a@b (Name)",
    b"(c) a@b", b"a@[1.2.3.4]", b"<@r1,@r2:a@b>", b"a", b"a b", b"@", b"<>", b"a@", b"@b",
    b'"q"@x', b"a . b@c", b"a@b .c", b"\xc3\xa9@x", b"Jos\xe9 <j@x>", b"a\x00b@c",
    b"=?utf-8?q?J=C3=B6rg?= <j@x.de>", b"x@y>", b"<x@y", b"Bob <bob@x.y> z",
]  # fmt: skip
SEPS = [b",", b", ", b" , ", b",\r\n ", b",\r\n\t", b",,", b" ", b"", b"\r\n ", b";", b", (c) "]
address_list = st.builds(
    lambda lead, items, trail: lead + b"".join(i + s for i, s in items) + trail,
    st.sampled_from([b"", b" ", b"\r\n ", b"\t"]),
    st.lists(st.tuples(st.sampled_from(ADDR_PIECES), st.sampled_from(SEPS)), max_size=6),
    st.sampled_from([b"", b" ", b"\r\n", b"\r", b","]),
)
hostile_value = st.one_of(
    st.binary(max_size=120),
    st.lists(
        st.sampled_from(
            [*ATOMS, b" ", b"\t", b"\r\n ", b"\r\n\t", b"\r", b"\n", b"=", b"?", b"=?", b"?=",
             b"=?iso-8859-1?q?caf=E9?=", b"=?utf-8?b?w6k=?=", b"=?x?q?a_b?=", b"\x00", b"\xff",
             b"(", b")", b"<", b">", b"@", b",", b'"', b"\\", b":", b";", b"=3D", b"=4", b"_"]
        ),
        max_size=25,
    ).map(b"".join),
)  # fmt: skip
FIELD_NAMES = [b"Subject", b"From", b"To", b"Cc", b"Date", b"X-A", b"=?utf-8?q?x?=", b"subject"]


def _header(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\nbody\r\n"


header_fields = st.lists(
    st.tuples(st.sampled_from(FIELD_NAMES), st.one_of(hostile_value, address_list)), max_size=8
)


# ---- the properties ----


@PROPS
@given(st.one_of(address_list, hostile_value), st.sampled_from([1, 2, 3, 4, 5, 10_000]))
def test_simple_address_lists_read_as_the_general_parser_reads_them(
    value: bytes, limit: int
) -> None:
    cleaned = value.replace(b"\x00", "\ufffd".encode())
    for fill in (False, True):
        assert parse_address_prefix(value, fill_missing=fill, limit=limit) == _parse(
            cleaned, fill, limit
        )


@PROPS
@given(st.one_of(hostile_value, st.binary(max_size=200)))
def test_to_crlf_leaves_alone_exactly_what_has_no_bare_lf(value: bytes) -> None:
    out = to_crlf(value)
    if value.count(b"\n") == value.count(b"\r\n"):
        assert out is value
    else:
        assert out == value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@PROPS
@given(hostile_value)
def test_unfold_and_decode_words(value: bytes) -> None:
    assert unfold(value) == ref_unfold(value)
    if b"=?" not in value:
        assert decode_words(value) == decode_charset(value, None)


@PROPS
@given(st.one_of(hostile_value, st.binary(max_size=200)))
def test_quoted_printable(body: bytes) -> None:
    assert unhex(body) == ref_unhex(body)
    assert decode_quoted_printable(body) == ref_quoted_printable(body)
    assert decode_q(body) == ref_unhex(body.replace(b"_", b" "))


ODD_CHARS = "".join(chr(a) + chr(b) for a, b in ODD_RANGES)
text = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.sampled_from("aZ \t.é" + ODD_CHARS + "ǅДжᾳﬁ\u0301"), max_size=300),
    st.builds(lambda a, b: a * 20 + b, st.text(max_size=8), st.text(max_size=8)),
)


@PROPS
@given(text)
def test_casemap_is_titlecase_then_nfkd(s: str) -> None:
    assert casemap(s) == ref_casemap(s)


def test_odd_characters_are_those_whose_uppercase_is_not_their_titlecase() -> None:
    if unicodedata.unidata_version != ODD_UNIDATA:
        return  # casemap translates every character then (sortkeys._ODD is None)
    odd = {cp for cp in range(0x80, 0x110000) if chr(cp).upper() != _title(chr(cp))}
    listed = {cp for a, b in ODD_RANGES for cp in range(a, b + 1)}
    assert odd == listed


@PROPS
@given(header_fields)
def test_header_blocks_as_decoded_field_by_field(fields: list[tuple[bytes, bytes]]) -> None:
    msg = parse(_header(fields))
    for part in msg.root.walk():
        assert searchtext._header_text(msg, part) == searchtext._header_text_each(msg, part)


@PROPS
@given(header_fields, st.booleans())
def test_cached_header_values_are_the_uncached_ones(
    fields: list[tuple[bytes, bytes]], sort_first: bool
) -> None:
    data = _header(fields)
    msg = parse(data)
    # SORT before or after SEARCH's texts: the caches they share give the same answers
    if sort_first:
        sorted_ = sort_fields(msg)
    for name in (b"subject", b"from", b"to", b"cc", b"date", b"x-a", b"bcc"):
        assert msg.field_values(msg.root, name) == ref_fields(msg, name)
        assert msg.field_values(msg.root, name.upper()) == ref_fields(msg, name)
        assert searchtext.header_texts(msg, name) == [
            decode_words(ref_unfold(v)) for v in ref_fields(msg, name)
        ]
    assert searchtext.subject_texts(msg) == [
        _BLANKS.sub(" ", decode_words(ref_unfold(v))).strip() for v in ref_fields(msg, b"subject")
    ]
    fresh = parse(data)
    for name in ("from", "to", "cc", "bcc", "x-a"):
        assert searchtext.address_texts(msg, name) == searchtext.address_texts(fresh, name)
    if not sort_first:
        sorted_ = sort_fields(msg)
    assert sorted_ == sort_fields(parse(data))  # computed alone, on a message without caches
    values = ref_fields(msg, b"date")
    when = ref_date(values[0]) if values else None
    assert searchtext.sent_date(msg) == (when.date() if when is not None else None)


def ref_date(value: bytes) -> datetime | None:
    """parse_date as it was: comments removed whatever the text, a new zone object per call."""
    text = value.decode("latin-1")
    text = text.replace("\r", " ").replace("\n", " ")
    for _ in range(4):
        text = _COMMENT.sub(" ", text)
    m = dates._DATE.match(text)
    if m is None:
        return None
    month = dates._MONTHS.get(m.group("mon").lower())
    if month is None:
        return None
    year = int(m.group("year"))
    ydigits = len(m.group("year"))
    if ydigits == 2:
        year += 2000 if year < 50 else 1900
    elif ydigits == 3:
        year += 1900
    zone = m.group("zone")
    offset = 0
    if zone:
        if zone[0] in "+-":
            digits = zone[1:].replace(":", "")
            hh, mm = int(digits[:2]), int(digits[2:])
            if mm >= 60 or hh >= 24:
                return None
            offset = (hh * 60 + mm) * (-1 if zone[0] == "-" else 1)
        else:
            offset = dates._ZONES.get(zone.lower(), 0)
    try:
        return datetime(
            year,
            month,
            int(m.group("day")),
            int(m.group("h") or 0),
            int(m.group("m") or 0),
            min(int(m.group("s") or 0), 59),
            tzinfo=timezone(timedelta(minutes=offset)),
        )
    except ValueError:
        return None


DATES = [
    b"Mon, 7 Dec 2026 08:10:00 +0100", b"7 Dec 2026 08:10 (CET)", b"Mon (x(y)z), 7 Dec 26 1:2:3 GMT",
    b"Tue,\r\n 8 Dec 2026\r 08:10:00 -0530", b"8-Dec-2026 08:10:00 PDT", b"junk", b"(",
    b"32 Dec 2026 00:00 +0000", b"1 Jan 2026 00:00 +2460", b"1 Jan 2026 00:00:60 z",
    b"1 Jan 99 00:00 EST", b"Fri, 1 Jan 2027 23:59 +05:30",
]  # fmt: skip
date_value = st.one_of(
    st.builds(
        lambda d, tail: d + tail,
        st.sampled_from(DATES),
        st.sampled_from([b"", b" (c)", b"\r\n", b" ", b"(", b" (a(b)c)", b"\r"]),
    ),
    hostile_value,
)


@PROPS
@given(date_value)
def test_parse_date_as_before(value: bytes) -> None:
    got, expected = parse_date(value), ref_date(value)
    assert got == expected
    if got is not None and expected is not None:
        assert got.utcoffset() == expected.utcoffset()
        assert got.timestamp() == expected.timestamp()

"""Defects found by comparing with Dovecot and the RFCs (issue 11 part 1.5): each test names
the rule it checks."""

from __future__ import annotations

import base64

import pytest
from mime_imapfmt import fmt

from carteiro.mime.address import MAX_ADDRESSES
from carteiro.mime.bodystructure import body_structure, envelope, part_structure
from carteiro.mime.header import unfold
from carteiro.mime.parse import MAX_DEPTH, parse
from carteiro.mime.searchtext import subject_texts
from carteiro.mime.sections import binary_section, binary_size, body_section, parse_section


def section(raw: bytes, spec: str) -> bytes | None:
    found = parse_section(spec)
    assert found is not None
    return body_section(parse(raw), found)


# Mailman digests: the boundary itself ends in "--".
DIGEST = (
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="__--__--"\r\n'
    b"\r\n"
    b"--__--__--\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"first\r\n"
    b"--__--__--\r\n"
    b"\r\n"
    b"second\r\n"
    b"--__--__----\r\n"
    b"epilogue\r\n"
)


def test_boundary_ending_in_dashes() -> None:
    """RFC 2046 5.1.1: the close delimiter is the boundary followed by "--", so "--__--__--"
    is a separator of the boundary "__--__--" and "--__--__----" its close."""
    assert fmt(body_structure(parse(DIGEST), False)) == (
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0)'
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 0) "mixed")'
    )
    assert section(DIGEST, "2") == b"second"


# A part whose header is followed at once by the next boundary: the blank line there is the
# CRLF that belongs to the boundary, not the end of the part's header.
HEADER_ONLY_PART = (
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n"
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"--b--\r\n"
)


def test_mime_header_ends_before_the_boundary_crlf() -> None:
    """RFC 2046 5.1.1: the CRLF before a boundary line belongs to the boundary."""
    assert section(HEADER_ONLY_PART, "1.MIME") == b"Content-Type: text/plain\r\n"
    assert section(HEADER_ONLY_PART, "1") == b""
    assert section(HEADER_ONLY_PART, "2.MIME") == b"Content-Type: message/rfc822\r\n"
    assert section(HEADER_ONLY_PART, "2") == b""
    msg = parse(HEADER_ONLY_PART)
    # The parts' headers and bodies and the boundaries fill the body exactly.
    first, second = msg.root.children
    assert (first.start, first.body_start, first.end) == (69, 95, 95)
    assert msg.data[first.end : second.start] == b"\r\n--b\r\n"


def test_rfc2231_boundary() -> None:
    """RFC 2231 3, 4: `boundary*=charset'lang'%XX` and its continuations name the boundary."""
    for params in (b"boundary*=us-ascii''b%20c", b"boundary*0*=''b%20; boundary*1=c"):
        raw = (
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; " + params + b"\r\n\r\n"
            b"--b c\r\n\r\none\r\n--b c\r\n\r\ntwo\r\n--b c--\r\n"
        )
        msg = parse(raw)
        assert [msg.body_bytes(p) for p in msg.root.children] == [b"one", b"two"], params


def test_repeated_address_fields_are_joined() -> None:
    """Two From/To/Cc/Bcc fields: ENVELOPE lists the addresses of both (as Dovecot does), so a
    reply-all loses nobody; other fields keep the last one."""
    raw = (
        b"From: a@x.test\r\nFrom: b@x.test\r\nTo: c@x.test\r\nCc: d@x.test\r\nTo: e@x.test, f@x.test\r\n"
        b"Bcc: g@x.test\r\nBcc: h@x.test\r\nSubject: one\r\nSubject: two\r\n\r\nbody\r\n"
    )
    env = envelope(parse(raw))
    assert fmt(env) == (
        '(NIL "two" ((NIL NIL "a" "x.test")(NIL NIL "b" "x.test"))'
        ' ((NIL NIL "a" "x.test")(NIL NIL "b" "x.test")) ((NIL NIL "a" "x.test")(NIL NIL "b" "x.test"))'
        ' ((NIL NIL "c" "x.test")(NIL NIL "e" "x.test")(NIL NIL "f" "x.test")) ((NIL NIL "d" "x.test"))'
        ' ((NIL NIL "g" "x.test")(NIL NIL "h" "x.test")) NIL NIL)'
    )


def test_joined_address_fields_keep_the_address_limit() -> None:
    """docs/mime.md "Limits": at most MAX_ADDRESSES entries for all To fields together."""
    many = b", ".join(b"u%d@x.test" % i for i in range(MAX_ADDRESSES - 1))
    raw = b"To: " + many + b"\r\nTo: last@x.test, over@x.test\r\nTo: more@x.test\r\n\r\n"
    to = envelope(parse(raw))[5]
    assert isinstance(to, list) and len(to) == MAX_ADDRESSES
    assert to[-1] == [None, None, "last", "x.test"]


@pytest.mark.parametrize(
    "value", [b"text", b"", b"te xt/plain", b'"text"/plain', b"image/", b"multipart; boundary=b"]
)
def test_invalid_content_type_is_plain_us_ascii_text(value: bytes) -> None:
    """RFC 2045 5.2: a syntactically invalid Content-Type means text/plain; charset=us-ascii."""
    raw = b"MIME-Version: 1.0\r\nContent-Type: " + value + b"\r\n\r\n--b\r\nline\r\n"
    msg = parse(raw)
    assert fmt(body_structure(msg, False)) == (
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 11 2)'
    )
    assert msg.root.is_text


def test_part_cut_by_the_nesting_limit_is_octets() -> None:
    """A multipart or message/rfc822 part that the nesting limit leaves unsplit cannot show
    its type: it has no parts (or no envelope) in BODYSTRUCTURE, which the grammar needs."""
    deep = b"".join(
        b"Content-Type: multipart/mixed; boundary=%s\n\n--%s\n" % (b"q" * (i + 1), b"q" * (i + 1))
        for i in range(MAX_DEPTH + 5)
    )
    rfc822 = b"Content-Type: message/rfc822\n\n" * (MAX_DEPTH + 5)
    for raw in (deep, rfc822):
        msg = parse(raw + b"\nleaf\n")
        cut = [p for p in msg.root.walk() if p.overflow]
        assert cut
        for part in cut:
            value = part_structure(msg, part, False)
            assert value[:3] == ["application", "octet-stream", None], value
            assert value[6] == part.body_size and len(value) == 7


def test_bare_cr_in_a_header_is_a_space() -> None:
    """A CR that ends no line separates words like the blank it stands for: "Bare\\rCR" is
    "Bare CR" in ENVELOPE and in SEARCH, not "BareCR"."""
    raw = b"Subject: Bare\rCR\r\n and\r\n folded\r\nFrom: Jo\rDoe <j@x.test>\r\n\r\nbody\r\n"
    msg = parse(raw)
    env = envelope(msg)
    assert env[1] == "Bare CR and folded"
    assert env[2] == [["Jo Doe", None, "j", "x.test"]]
    assert subject_texts(msg) == ["Bare CR and folded"]
    assert unfold(b"a\rb\r\n c") == b"a b c"


def binary(raw: bytes, spec: str) -> object:
    found = parse_section(spec)
    assert found is not None
    msg = parse(raw)
    return binary_section(msg, found), binary_size(msg, found)


def test_binary_of_a_part_bodystructure_lists_as_empty() -> None:
    """A multipart without parts shows one empty text/plain part: BINARY[1] is that part's
    empty content, not NIL (which means no such part)."""
    raw = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\nno parts\r\n"
    assert fmt(body_structure(parse(raw), False)).startswith('(("text" "plain"')
    assert binary(raw, "1") == (b"", 0)
    inner = b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" + raw
    assert binary(inner, "1.1") == (b"", 0)
    assert binary(raw, "2") == (None, None)


def test_binary_of_base64_text_has_crlf_line_ends() -> None:
    """RFC 2045 6.8 / RFC 3516: base64 text decodes to its canonical form, CRLF line ends, even
    when the sender encoded bare LFs; binary parts and UTF-16 text are left as they are."""
    body = base64.encodebytes(b"one\ntwo\r\nthree\n")
    for ctype, expected in (
        (b"text/plain", b"one\r\ntwo\r\nthree\r\n"),
        (b"application/octet-stream", b"one\ntwo\r\nthree\n"),
        (b"text/plain; charset=utf-16", b"one\ntwo\r\nthree\n"),
    ):
        raw = (
            b"MIME-Version: 1.0\r\nContent-Type: " + ctype + b"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + body
        )
        assert binary(raw, "1") == (expected, len(expected)), ctype


GLOBAL = (
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: message/global\r\n\r\n"
    b"From: a@x.test\r\nSubject: inner\r\n\r\nline\r\n"
    b"--b--\r\n"
)


def test_message_global_layout_depends_on_the_imap_version() -> None:
    """RFC 3501's grammar has the envelope/body/lines layout for message/rfc822 only: there
    message/global is body-type-basic. RFC 9051 7.5.2 (IMAP4rev2) gives it the layout."""
    msg = parse(GLOBAL)
    assert fmt(body_structure(msg, False)) == (
        '(("message" "global" NIL NIL NIL "7bit" 38) "mixed")'
    )
    assert fmt(body_structure(msg, False, rev2=True)) == (
        '(("message" "global" NIL NIL NIL "7bit" 38 (NIL "inner" ((NIL NIL "a" "x.test"))'
        ' ((NIL NIL "a" "x.test")) ((NIL NIL "a" "x.test")) NIL NIL NIL NIL NIL)'
        ' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 0) 3) "mixed")'
    )
    assert fmt(body_structure(msg)).startswith('(("message" "global" NIL NIL NIL "7bit" 38 NIL')
    assert section(GLOBAL, "1.1") == b"line"  # the part numbers are the same in both

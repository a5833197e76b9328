"""BODY[section] and BINARY[section] (RFC 3501 6.4.5, RFC 3516), and the RFC 3501 examples."""

from __future__ import annotations

import base64

import pytest
from mime_imapfmt import fmt

from carteiro.mime.bodystructure import body_structure, envelope
from carteiro.mime.parse import MAX_DEPTH, MAX_PARTS, parse
from carteiro.mime.sections import (
    Section,
    UnknownCte,
    binary_section,
    binary_size,
    body_section,
    find_part,
    parse_section,
)


@pytest.mark.parametrize(
    ("spec", "section"),
    [
        ("", Section()),
        ("HEADER", Section((), "HEADER")),
        ("text", Section((), "TEXT")),
        ("1", Section((1,))),
        ("1.2.3", Section((1, 2, 3))),
        ("4.MIME", Section((4,), "MIME")),
        ("2.HEADER", Section((2,), "HEADER")),
        ("HEADER.FIELDS (From To)", Section((), "HEADER.FIELDS", ("From", "To"))),
        ("1.header.fields.not (x)", Section((1,), "HEADER.FIELDS.NOT", ("x",))),
        ("MIME", None),  # RFC 3501 6.4.5: MIME needs a part number
        ("0", None),
        ("1.", None),
        ("1..2", None),
        ("HEADER.FIELDS", None),
        ("HEADER.FIELDS ()", None),
        ("TEXT (a)", None),
        ("BOGUS", None),
    ],
)
def test_parse_section(spec: str, section: Section | None) -> None:
    assert parse_section(spec) == section


def get(raw: bytes, spec: str) -> bytes | None:
    section = parse_section(spec)
    assert section is not None, spec
    return body_section(parse(raw), section)


SINGLE = b"From: a@b\nSubject: s\n\nbody\n"


def test_single_part_numbering() -> None:
    # RFC 3501 6.4.5: a non-multipart message has one part, number 1: its body.
    assert get(SINGLE, "1") == b"body\r\n"
    assert get(SINGLE, "TEXT") == b"body\r\n"
    assert get(SINGLE, "HEADER") == b"From: a@b\r\nSubject: s\r\n\r\n"
    assert get(SINGLE, "") == SINGLE.replace(b"\n", b"\r\n")
    assert get(SINGLE, "2") is None
    assert get(SINGLE, "1.1") is None
    assert get(SINGLE, "1.HEADER") is None  # only message/rfc822 parts have HEADER/TEXT
    assert get(SINGLE, "1.MIME") == b"From: a@b\r\nSubject: s\r\n\r\n"  # as Dovecot answers


MIXED = (
    b"Content-Type: multipart/mixed; boundary=x\n\n--x\n"
    b"Content-Type: text/plain\n\none\n--x\n"
    b"Content-Type: message/rfc822\n\n"
    b"Subject: inner\nContent-Type: multipart/alternative; boundary=y\n\n"
    b"--y\n\ninner one\n--y\nContent-Type: text/html\n\n<b>two</b>\n--y--\n"
    b"--x--\n"
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1", b"one"),
        ("1.MIME", b"Content-Type: text/plain\r\n\r\n"),
        ("2.HEADER", b"Subject: inner\r\nContent-Type: multipart/alternative; boundary=y\r\n\r\n"),
        ("2.1", b"inner one"),
        ("2.2", b"<b>two</b>"),
        ("2.2.MIME", b"Content-Type: text/html\r\n\r\n"),
        ("2.1.MIME", b"\r\n"),
        ("3", None),
        ("2.3", None),
        ("1.1", b"one"),  # Dovecot: a trailing ".1" on a leaf names the leaf itself
        ("1.2", None),
        ("1.TEXT", None),
        ("2.1.HEADER", None),
    ],
)
def test_multipart_numbering(spec: str, expected: bytes | None) -> None:
    assert get(MIXED, spec) == expected


def test_find_part_rejects_zero() -> None:
    msg = parse(MIXED)
    assert find_part(msg, (0,)) is None
    assert find_part(msg, ()) is msg.root


HEADERS = (
    b"Received: from a\n\tby b\nFrom: A <a@example.org>\nsubject: Hi\n"
    b"To: b@example.org\nX-Empty:\nSubject : again\n\nbody\n"
)


def test_header_fields() -> None:
    # Case-insensitive names; original lines (folding kept) in message order; blank line kept.
    assert get(HEADERS, "HEADER.FIELDS (SUBJECT received)") == (
        b"Received: from a\r\n\tby b\r\nsubject: Hi\r\nSubject : again\r\n\r\n"
    )
    assert get(HEADERS, "HEADER.FIELDS (X-Empty)") == b"X-Empty:\r\n\r\n"
    assert get(HEADERS, "HEADER.FIELDS (nothing)") == b"\r\n"
    assert get(HEADERS, "HEADER.FIELDS.NOT (received subject x-empty)") == (
        b"From: A <a@example.org>\r\nTo: b@example.org\r\n\r\n"
    )


def test_header_fields_without_blank_line() -> None:
    # No blank line in the message, none in the answer (Dovecot does not invent one).
    raw = b"Subject: only headers\nFrom: a@b"
    assert get(raw, "HEADER.FIELDS (subject)") == b"Subject: only headers\r\n"
    assert get(raw, "HEADER") == b"Subject: only headers\r\nFrom: a@b"
    assert get(raw, "TEXT") == b""


def test_nul_octets() -> None:
    raw = b"Content-Type: application/octet-stream\n\na\x00b"
    msg = parse(raw)
    # RFC 3501 4.3: no NUL in a literal; Dovecot sends 0x80 (same length, partials line up).
    assert body_section(msg, Section((1,))) == b"a\x80b"
    assert binary_section(msg, Section((1,))) == b"a\x00b"  # literal8 may carry NUL


def binary_msg(cte: str, body: bytes) -> bytes:
    return (
        b"Content-Type: multipart/mixed; boundary=z\n\n--z\n"
        + f"Content-Type: application/octet-stream\nContent-Transfer-Encoding: {cte}\n\n".encode()
        + body
        + b"\n--z--\n"
    )


@pytest.mark.parametrize(
    ("cte", "body", "decoded"),
    [
        ("base64", b"aGVsbG8gd29ybGQ=", b"hello world"),
        ("BASE64", b"aGVs\nbG8g\nd29y\nbGQ=", b"hello world"),
        ("base64", b"aGVsbG8gd29ybGQ", b"hello world"),  # padding missing
        ("base64", b"aGVsbG8=\nIHdvcmxk", b"hello world"),  # text after the padding
        ("base64", b"aGVs*bG8g!d29y bGQ=", b"hello world"),  # junk ignored (RFC 2045 6.8)
        ("quoted-printable", b"caf=C3=A9 =3D ok", b"caf\xc3\xa9 = ok"),
        ("quoted-printable", b"soft=\nbreak", b"softbreak"),
        ("quoted-printable", b"trailing   \nblanks\t=20 \nx", b"trailing\r\nblanks\t \r\nx"),
        ("quoted-printable", b"bad =ZZ and =\tend", b"bad =ZZ and =\tend"),
        ("quoted-printable", b"padded soft break= \t\nend", b"padded soft breakend"),
        ("Quoted-Printable", b"lower =c3=a9", b"lower \xc3\xa9"),
        ("7bit", b"as is\n", b"as is\r\n"),
        ("8bit", b"caf\xc3\xa9", b"caf\xc3\xa9"),
        ("binary", b"\x00\x01", b"\x00\x01"),
    ],
)
def test_binary_decoding(cte: str, body: bytes, decoded: bytes) -> None:
    msg = parse(binary_msg(cte, body))
    assert binary_section(msg, Section((1,))) == decoded
    assert binary_size(msg, Section((1,))) == len(decoded)


def test_binary_unknown_cte() -> None:
    msg = parse(binary_msg("x-uuencode", b"begin 644 f"))
    # RFC 3516 4.2: the server answers NO [UNKNOWN-CTE].
    assert binary_section(msg, Section((1,))) == UnknownCte("x-uuencode")
    assert binary_size(msg, Section((1,))) == UnknownCte("x-uuencode")


def test_binary_of_structure_and_headers() -> None:
    msg = parse(binary_msg("base64", b"aGk="))
    assert binary_section(msg, Section()) == msg.data
    assert binary_section(msg, Section((1,), "MIME")) == (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    assert binary_section(msg, Section((2,))) is None
    assert binary_size(msg, Section((2,))) is None
    nested = parse(MIXED)
    assert binary_section(nested, Section((2,))) == body_section(nested, Section((2,)))


def test_binary_of_single_part_message() -> None:
    raw = b"MIME-Version: 1.0\nContent-Transfer-Encoding: base64\n\n" + base64.b64encode(b"x" * 100)
    msg = parse(raw)
    assert binary_section(msg, Section((1,))) == b"x" * 100
    assert binary_size(msg, Section((1,))) == 100


def test_rfc3501_bodystructure_example() -> None:
    """RFC 3501 7.4.2's BODYSTRUCTURE example, from a message written to match it."""
    # 23 lines in 1152 octets, and 73 lines in 4554 octets, CRLFs included.
    text1 = b"".join(b"t" * 48 + b"\r\n" for _ in range(22)) + b"t" * 50 + b"\r\n"
    text2 = b"".join(b"A" * 60 + b"\r\n" for _ in range(72)) + b"A" * 88 + b"\r\n"
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: MULTIPART/MIXED; BOUNDARY=b\r\n\r\n"
        b"--b\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
        b"Content-Transfer-Encoding: 7BIT\r\n\r\n" + text1 + b"\r\n--b\r\n"
        b'Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME="cc.diff"\r\n'
        b"Content-ID: <960723163407.20117h@cac.washington.edu>\r\n"
        b"Content-Description: Compiler diff\r\n"
        b"Content-Transfer-Encoding: BASE64\r\n\r\n" + text2 + b"\r\n--b--\r\n"
    )
    assert (len(text1), text1.count(b"\n"), len(text2), text2.count(b"\n")) == (1152, 23, 4554, 73)
    assert fmt(body_structure(parse(raw), extensible=False)) == (
        '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        '("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        '"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) '
        '"MIXED")'
    )


def test_rfc3501_envelope_example() -> None:
    raw = (
        b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
        b"From: Terry Gray <gray@cac.washington.edu>\r\n"
        b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
        b"To: imap@cac.washington.edu\r\n"
        b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
        b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nx\r\n"
    )
    assert fmt(envelope(parse(raw))) == (
        '("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        '(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        '(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        '(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        '((NIL NIL "imap" "cac.washington.edu")) '
        '((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        'NIL NIL "<B27397-0100000@cac.washington.edu>")'
    )


def test_message_global_is_encapsulated() -> None:
    # RFC 9051 7.5.2 / RFC 6532 3.5: message/global has envelope and body like message/rfc822
    # in IMAP4rev2; RFC 3501's grammar makes it body-type-basic (no envelope, body, lines).
    raw = b"Content-Type: message/global\n\nSubject: =?utf-8?q?x?= \xc3\xa9\n\nbody\n"
    bs = body_structure(parse(raw), extensible=False, rev2=True)
    assert bs[:2] == ["message", "global"]
    assert bs[7] == [None, "=?utf-8?q?x?= é", None, None, None, None, None, None, None, None]
    assert body_structure(parse(raw), extensible=False) == [
        "message",
        "global",
        None,
        None,
        None,
        "7bit",
        35,
    ]
    assert get(raw, "1.1") == b"body\r\n"


def test_nesting_is_bounded() -> None:
    deep = b"".join(
        b"Content-Type: multipart/mixed; boundary=%s\n\n--%s\n" % (b"q" * (i + 1), b"q" * (i + 1))
        for i in range(MAX_DEPTH + 50)
    )
    msg = parse(deep + b"\nleaf\n")
    assert max(p.depth for p in msg.root.walk()) == MAX_DEPTH - 1
    fmt(body_structure(msg))  # no recursion limit either
    rfc822 = parse(b"Content-Type: message/rfc822\n\n" * (MAX_DEPTH + 50) + b"\nx")
    assert max(p.depth for p in rfc822.root.walk()) == MAX_DEPTH - 1
    fmt(body_structure(rfc822))


def test_part_count_is_bounded() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=a\n\n" + b"--a\n\nx\n" * (MAX_PARTS + 500)
    msg = parse(raw)
    assert msg.parts_count == MAX_PARTS + 1
    assert len(body_structure(msg)) == MAX_PARTS + 5

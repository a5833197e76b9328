"""Decoded strings for SEARCH HEADER/SUBJECT/FROM/TO/CC/BCC/BODY/TEXT (RFC 3501 6.4.4)."""

from __future__ import annotations

from datetime import date

from carteiro.mime.parse import parse
from carteiro.mime.searchtext import (
    address_texts,
    body_texts,
    fold,
    header_texts,
    message_texts,
    sent_date,
    subject_texts,
)


def found(key: str, texts: list[str]) -> bool:
    """How the IMAP server matches: case-insensitive substring, within one text."""
    return any(fold(key) in fold(t) for t in texts)


def test_header_texts_decode_and_tell_existence() -> None:
    msg = parse(
        b"Subject: =?utf-8?q?caf=C3=A9?=\n  au lait\nX-Extra: hello beautiful header\n"
        b"X-Extra: second\nX-Blank:\n\nbody\n"
    )
    assert header_texts(msg, "subject") == ["café  au lait"]
    assert header_texts(msg, b"X-EXTRA") == ["hello beautiful header", "second"]
    assert header_texts(msg, "x-blank") == [""]  # HEADER x-blank "" matches
    assert header_texts(msg, "x-missing") == []  # ... and this does not
    assert subject_texts(msg) == ["café au lait"]
    assert found("EAUTIFUL HEAD", header_texts(msg, "x-extra"))


def test_address_texts_match_normalised_addresses() -> None:
    msg = parse(
        b"From: <user-from (comment)@ (comment) domain.org>\n"
        b"To: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>, groupname: groupuser1@domain.org;\n"
        b"Cc: RealCc <user-cc@domain.org>, user-cc2@domain.org (RealCc2)\n"
        b"Subject: not an address\n\nbody\n"
    )
    assert found("user-from@domain.org", address_texts(msg, "from"))
    assert found("ser-fro", address_texts(msg, "from"))
    assert found("jörg", address_texts(msg, "to"))
    assert found("groupname", address_texts(msg, "to"))
    assert found("groupuser1@domain.org", address_texts(msg, "to"))
    assert found("realcc2", address_texts(msg, "cc"))
    assert address_texts(msg, "bcc") == []
    assert address_texts(msg, "subject") == ["not an address"]


MULTI = (
    b"Subject: top\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
    b"preamble asdfghjkl\n"
    b"--b\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n"
    b"X-Part: =?utf-8?q?zxcvbnm?=\n\ncaf=E9 cr=\n=E8me\n"
    b"--b\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
    b"PGI+cXdlcnR5dWlvcDwvYj4=\n"
    b"--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    b"c2VjcmV0d29yZA==\n"
    b"--b\nContent-Type: message/delivery-status\n\nAction: failed\n"
    b"--b\nContent-Type: message/rfc822\n\nSubject: inner subject\n\ninner body\n"
    b"--b--\nepilogue\n"
)


def test_body_texts() -> None:
    texts = body_texts(parse(MULTI))
    assert texts == [
        "café crème",
        "<b>qwertyuiop</b>",
        "Action: failed",
        "inner body",
    ]
    assert not found("secretword", texts)  # non-text parts are not searched
    assert not found("asdfghjkl", texts)  # nor the preamble
    assert not found("inner subject", texts)  # nor any header


def test_message_texts_add_every_header_block() -> None:
    texts = message_texts(parse(MULTI))
    for key in ("top", "zxcvbnm", "inner subject", "crème", "qwertyuiop", "x-part: zxcvbnm"):
        assert found(key, texts), key
    assert not found("secretword", texts)
    assert not found("crème\r\ncontent", texts)  # a match never spans two parts


def test_charsets_and_unknown_encoding() -> None:
    msg = parse(
        b"Content-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: x-weird\n\n"
        b"\xf0\xd2\xc9\xd7\xc5\xd4"
    )
    assert body_texts(msg) == ["Привет"]
    assert body_texts(parse(b"\n\xff\xfeplain")) == ["ÿþplain"]


def test_sent_date_uses_the_first_date_field() -> None:
    msg = parse(b"Date: Sun, 25 Mar 2007 00:30:00 +0300\nDate: 1 Jan 2000 00:00 +0000\n\nx")
    assert sent_date(msg) == date(2007, 3, 25)
    assert sent_date(parse(b"Date: garbage\n\nx")) is None
    assert sent_date(parse(b"\nx")) is None

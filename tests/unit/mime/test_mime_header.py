"""Header value helpers: unfolding, RFC 2047 words, RFC 2231 parameters, addresses, dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from carteiro.mime.address import Address, format_address_list, parse_address_list
from carteiro.mime.dates import header_date, parse_date
from carteiro.mime.encoded_words import decode_charset, decode_words
from carteiro.mime.header import decode_header, decode_params, filename, unfold
from carteiro.mime.parse import parse
from carteiro.mime.rfc822 import (
    Scanner,
    parse_content_type,
    parse_disposition,
    parse_language,
    parse_params,
    parse_token_value,
)


def test_unfold() -> None:
    # RFC 5322 2.2.3: unfolding removes the CRLF, not the whitespace after it.
    assert unfold(b"a\r\n b\r\n\tc") == b"a b\tc"
    assert unfold(b"plain") == b"plain"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"=?UTF-8?Q?J=C3=B6rg?=", "Jörg"),
        (b"=?utf-8?b?SsO2cmc=?=", "Jörg"),
        (b"=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"),
        # RFC 2047 6.2: blanks between adjacent encoded words vanish, not other blanks.
        (b"=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
        (b"=?utf-8?q?a?=  \t =?utf-8?q?b?= c", "ab c"),
        (b"x =?utf-8?q?a?= y", "x a y"),
        (b"=?utf-8?q?a_b?=", "a b"),
        # A UTF-8 character split over two words.
        (b"=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?=", "café"),
        (b"=?UTF-8?B?w6k=?==?UTF-8?B?w6k=?=", "éé"),
        # RFC 2231 5 language suffix on the charset.
        (b"=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore"),
        # Lenient: unknown charset, bad padding, glued to text, inside quotes.
        (b"=?x-unknown?q?ok?=", "ok"),
        (b"=?utf-8?b?w6k?=", "é"),
        (b"pre=?utf-8?q?mid?=post", "premidpost"),
        (b'"=?utf-8?q?Quoted?=" <a@b>', '"Quoted" <a@b>'),
        # Malformed words stay as they are.
        (b"=?utf-8?x?nope?= =?broken?=", "=?utf-8?x?nope?= =?broken?="),
        (b"=?utf-8?q?bad=ZZescape?=", "bad=ZZescape"),
        # RFC 6532 raw UTF-8, and legacy 8-bit read as Windows-1252.
        ("naïve".encode(), "naïve"),
        (b"na\xefve", "naïve"),
    ],
)
def test_decode_words(raw: bytes, text: str) -> None:
    assert decode_words(raw) == text


def test_decode_header_unfolds_first() -> None:
    assert decode_header(b"=?utf-8?q?a?=\r\n =?utf-8?q?b?= and\r\n\tmore") == "ab and\tmore"


@pytest.mark.parametrize(
    ("data", "charset", "text"),
    [
        (b"caf\xe9", "iso-8859-1", "café"),
        (b"\x80", "iso-8859-1", "€"),  # WHATWG: latin-1 labels mean windows-1252
        (b"caf\xc3\xa9", "us-ascii", "café"),  # mislabelled UTF-8 still reads
        (b"\xa4", "iso-8859-15", "€"),
        (b"\xc1\xc2", "koi8-r", "\u0430\u0431"),
        (b"abc", "no-such-charset", "abc"),
        (b"\xe9", "no-such-charset", "é"),
        (b"x", "base64", "x"),  # not a text encoding: refused
        (b"xn--caf-dma", "idna", "xn--caf-dma"),  # refused: not a charset
        (b"\x1b$B$3$s$K$A$O\x1b(B", "iso-2022-jp", "こんにちは"),
    ],
)
def test_decode_charset(data: bytes, charset: str, text: str) -> None:
    assert decode_charset(data, charset) == text


def test_rfc2231_merging_like_dovecot() -> None:
    # RFC 2231 3: continuations merged; charset and %XX left for decode_params.
    value = (
        b"application/x-stuff; title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n"
        b" title*0*=us-ascii'en'This%20is%20even%20more%20; title*2=\"isn't it!\"; a=b"
    )
    mt, ret, params = parse_content_type(value)
    assert (mt, ret) == (b"application/x-stuff", 1)
    assert params == [
        (b"a", b"b"),
        (b"title*", b"us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn't it!"),
    ]
    assert decode_params(params) == {"a": "b", "title": "This is even more ***fun*** isn't it!"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Plain continuations are merged as they are.
        (b'; name*0="a "; name*1=b', [(b"name", b"a b")]),
        # A plain piece after an extended one is %-escaped so the value stays decodable.
        (b"; n*0*=utf-8''%41; n*1=50%", [(b"n*", b"utf-8''%4150%25")]),
        # An extended piece after a plain first one gets an empty charset'lang'.
        (b"; n*0=x; n*1*=%41", [(b"n*", b"''x%41")]),
        # Gaps in the numbering: the pieces are reported unmerged.
        (b"; n*0=a; n*2=c", [(b"n*0", b"a"), (b"n*2", b"c")]),
        # After a broken parameter the scanner skips to the next ";" - past the one ending
        # the broken parameter, so "a=1" is lost too (Dovecot does the same).
        (b'; junk; a=1; =; b="unterminated', [(b"", b"")]),
        (b"; junk ;; a=1", [(b"a", b"1")]),
        (b"; filename==?utf-8?b?w6k=?=; x=y", [(b"filename", b"=?utf-8?b?w6k=?="), (b"x", b"y")]),
        (b"; a=1 (comment) ; b = 2", [(b"a", b"1"), (b"b", b"2")]),
        (b';a="q\\"uote"', [(b"a", b'q"uote')]),
    ],
)
def test_parse_params(raw: bytes, expected: list[tuple[bytes, bytes]]) -> None:
    assert parse_params(Scanner(raw)) == expected


def test_decode_params() -> None:
    params = [
        (b"filename", b"plain.txt"),
        (b"filename*", b"UTF-8''na%C3%AFve.txt"),
        (b"name", b"=?utf-8?Q?r=C3=A9sum=C3=A9.txt?="),
        (b"Title*", b"iso-8859-1'fr'caf%E9"),
        (b"bare*", b"100%25"),
    ]
    assert decode_params(params) == {
        "filename": "naïve.txt",
        "name": "résumé.txt",
        "title": "café",
        "bare": "100%",
    }


def test_filename_prefers_disposition() -> None:
    msg = parse(
        b'Content-Type: text/plain; name="ct.txt"\n'
        b"Content-Disposition: attachment; filename*=utf-8''d%C3%A9.txt\n\nx"
    )
    assert filename(msg.root) == "dé.txt"
    assert filename(parse(b"Content-Type: image/png; name=a.png\n\nx").root) == "a.png"
    assert filename(parse(b"\nx").root) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"text/plain", (b"text/plain", 0)),
        (b" Text/HTML ; charset=x", (b"Text/HTML", 1)),
        (b"text/plain (comment)", (b"text/plain", 0)),
        (b"text", (b"text", -1)),
        (b"text/", (b"text", -1)),
        (b"", (b"", -1)),
        (b"; charset=x", (b"", -1)),
        (b"text/plain (unclosed", (b"text/plain", -1)),
    ],
)
def test_parse_content_type(value: bytes, expected: tuple[bytes, int]) -> None:
    assert parse_content_type(value)[:2] == expected


def test_small_field_parsers() -> None:
    assert parse_token_value(b" base64 ") == b"base64"
    assert parse_token_value(b"base64 junk") is None
    assert parse_token_value(b"?invalid") is None
    assert parse_token_value(b"") is None
    assert parse_disposition(b'attachment; filename="a b"') == (
        b"attachment",
        [(b"filename", b"a b")],
    )
    assert parse_disposition(b"; x=y") == (b"", [(b"x", b"y")])
    assert parse_language(b"en-GB, fr (French) ,de") == [b"en-GB", b"fr", b"de"]
    assert parse_language(b", en") == []


def addr(raw: bytes) -> list[tuple[bytes | None, ...]]:
    return [(a.name, a.route, a.mailbox, a.domain) for a in parse_address_list(raw)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'"Doe, John" <john@example.com>', [(b"Doe, John", None, b"john", b"example.com")]),
        (b"John (the man) Doe <j@x>", [(b"John Doe", None, b"j", b"x")]),
        (b"j@x (John Doe)", [(b"John Doe", None, b"j", b"x")]),
        (b"<user (c)@ (c) domain.org>", [(None, None, b"user", b"domain.org")]),
        (b"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
         [(b"Pete", None, b"pete", b"silly.test")]),
        # RFC 5322 4.4 obsolete forms: dots in names, spaces around dots, routes.
        (b"Mr. X <x @ example . org>", [(b"Mr. X", None, b"x", b"example.org")]),
        (b"<@a.example,@b.example:user@c.example>",
         [(None, b"@a.example,@b.example", b"user", b"c.example")]),
        (b"a@[192.0.2.1]", [(None, None, b"a", b"[192.0.2.1]")]),
        (b'"quoted local"@example.org', [(None, None, b"quoted local", b"example.org")]),
        # RFC 6854 groups, also in From; empty groups.
        (b"Undisclosed recipients:;", [(None, None, b"Undisclosed recipients", None),
                                       (None, None, None, None)]),
        (b"g: a@b, c@d;, e@f", [(None, None, b"g", None), (None, None, b"a", b"b"),
                                (None, None, b"c", b"d"), (None, None, None, None),
                                (None, None, b"e", b"f")]),
        # Broken input degrades like Dovecot's.
        (b"undisclosed-recipients", [(None, None, b"undisclosed-recipients", b"MISSING_DOMAIN")]),
        (b"Two Words", [(b"Two Words", None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
        (b"<>", [(None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
        (b"Name <a b>", [(b"Name", None, b"a", b"SYNTAX_ERROR")]),
        (b"<@route user@x>", [(None, b"INVALID_ROUTE", b"user", b"x")]),
        (b"a@b,, c@d", [(None, None, b"a", b"b"),
                        (None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN"),
                        (None, None, b"c", b"d")]),
        (b"", []),
        (b"  (just a comment) ", []),
        (b"=?utf-8?q?J=C3=B6rg?= <j@x>", [(b"=?utf-8?q?J=C3=B6rg?=", None, b"j", b"x")]),
    ],
)  # fmt: skip
def test_parse_address_list(raw: bytes, expected: list[tuple[bytes | None, ...]]) -> None:
    assert addr(raw) == expected


def test_format_address_list_for_search() -> None:
    addrs = parse_address_list(
        b'"Doe, J." <j (c)@x>, g: a@b;, solo@example.org, Bare', fill_missing=False
    )
    assert format_address_list(addrs) == (b'"Doe, J." <j@x>, g: <a@b>;, <solo@example.org>, <Bare>')
    assert format_address_list([Address(None, None, b"", None), Address()]) == b'"":;'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Thu, 15 Feb 2007 01:02:03 +0200",
         datetime(2007, 2, 15, 1, 2, 3, tzinfo=timezone(timedelta(hours=2)))),
        (b"15 Feb 2007 01:02 -0330",
         datetime(2007, 2, 15, 1, 2, tzinfo=timezone(-timedelta(hours=3, minutes=30)))),
        (b"Fri, 21 Nov 97 09:55:06 GMT", datetime(1997, 11, 21, 9, 55, 6, tzinfo=UTC)),
        (b"Fri, 21 Nov 1997 09:55:06 EST",
         datetime(1997, 11, 21, 9, 55, 6, tzinfo=timezone(timedelta(hours=-5)))),
        (b"1 Jan 101 00:00:00 Z", datetime(2001, 1, 1, tzinfo=UTC)),  # 3-digit year + 1900
        (b"Tue, 1 Jul 2003 10:52:37 +0200 (CEST)",
         datetime(2003, 7, 1, 10, 52, 37, tzinfo=timezone(timedelta(hours=2)))),
        (b" Sat,\r\n 01 Feb 2007 01:02:03 +0000", datetime(2007, 2, 1, 1, 2, 3, tzinfo=UTC)),
        (b"31 Dec 1999 23:59:60 +0000", datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (b"2 June 2024 10:00 +0000", datetime(2024, 6, 2, 10, 0, tzinfo=UTC)),
        (b"30 Feb 2007 01:02:03 +0200", None),
        (b"yesterday", None),
        (b"", None),
        (b"15 Foo 2007 01:02:03 +0200", None),
    ],
)  # fmt: skip
def test_parse_date(value: bytes, expected: datetime | None) -> None:
    assert parse_date(value) == expected


def test_header_date_ignores_time_and_zone() -> None:
    # RFC 3501 6.4.4 SENTBEFORE etc. disregard time and timezone: the date as written.
    assert header_date(b"Sun, 25 Mar 2007 01:30:00 +0300") == date(2007, 3, 25)
    assert header_date(b"Sat, 24 Mar 2007 23:30:00 -0800") == date(2007, 3, 24)
    assert header_date(b"nonsense") is None

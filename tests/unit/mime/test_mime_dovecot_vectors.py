"""carteiro.mime against the expected results published with Dovecot and imaptest.

The compliance suite compares our ENVELOPE/BODYSTRUCTURE with Dovecot's, so these vectors
(Dovecot's lib-imap/lib-mail unit tests and imaptest's fetch tests) are the reference.
"""

from __future__ import annotations

import pytest
from mime_imapfmt import fmt, fmt_inner

from carteiro.mime.address import parse_address_list
from carteiro.mime.bodystructure import body_structure, envelope
from carteiro.mime.parse import parse
from carteiro.mime.sections import binary_size, body_section, parse_section

# Dovecot src/lib-imap/test-imap-bodystructure.c: its test message and expected strings.
DOVECOT_MSG = (
    b"From: user@domain.org\n"
    b"Date: Sat, 24 Mar 2007 23:00:00 +0200\n"
    b"Mime-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="foo\n'
    b' bar"\n'
    b"\n"
    b"Root MIME prologue\n"
    b"\n"
    b"--foo bar\n"
    b'Content-Type: text/x-myown; charset=us-ascii; foo="quoted\\"string"\n'
    b"Content-ID: <foo@example.com>\n"
    b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
    b"Content-Disposition: inline; foo=bar\n"
    b"Content-Description: hellodescription\n"
    b"Content-Language: en, fi, se\n"
    b"Content-Location: http://example.com/test.txt\n"
    b"\n"
    b"hello\n"
    b"\n"
    b"--foo bar\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    b"From: sub@domain.org\n"
    b"To: sub-to1@domain.org, sub-to2@domain.org\n"
    b"Date: Sun, 12 Aug 2012 12:34:56 +0300\n"
    b"Subject: submsg\n"
    b'Content-Type: multipart/alternative; boundary="sub1"\n'
    b"\n"
    b"Sub MIME prologue\n"
    b"--sub1\n"
    b"Content-Type: text/html\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"<p>Hello world</p>\n"
    b"\n"
    b"--sub1\n"
    b"Content-Type: text/plain\n"
    b"Content-Transfer-Encoding: ?invalid\n"
    b"\n"
    b"Hello another world\n"
    b"\n"
    b"--sub1--\n"
    b"Sub MIME epilogue\n"
    b"\n"
    b"--foo bar--\n"
    b"Root MIME epilogue\n"
)
SUB_ENVELOPE = (
    '("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) '
    '((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) '
    '((NIL NIL "sub-to1" "domain.org")(NIL NIL "sub-to2" "domain.org")) NIL NIL NIL NIL)'
)
DOVECOT_BODYSTRUCTURE = (
    '("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\\"string") "<foo@example.com>" '
    '"hellodescription" "7bit" 7 1 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" ("foo" "bar")) '
    '("en" "fi" "se") "http://example.com/test.txt")'
    '("message" "rfc822" NIL NIL NIL "7bit" 412 ' + SUB_ENVELOPE + " "
    '(("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1 NIL NIL NIL NIL)'
    '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1 NIL NIL NIL NIL) '
    '"alternative" ("boundary" "sub1") NIL NIL NIL) 21 NIL NIL NIL NIL) '
    '"mixed" ("boundary" "foo bar") NIL NIL NIL'
)
DOVECOT_BODY = (
    '("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\\"string") "<foo@example.com>" '
    '"hellodescription" "7bit" 7 1)'
    '("message" "rfc822" NIL NIL NIL "7bit" 412 ' + SUB_ENVELOPE + " "
    '(("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1)'
    '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1) "alternative") 21) "mixed"'
)


def test_dovecot_bodystructure() -> None:
    msg = parse(DOVECOT_MSG)
    assert fmt_inner(body_structure(msg)) == DOVECOT_BODYSTRUCTURE


def test_dovecot_body() -> None:
    msg = parse(DOVECOT_MSG)
    assert fmt_inner(body_structure(msg, extensible=False)) == DOVECOT_BODY


def test_same_answer_for_crlf_input() -> None:
    crlf = DOVECOT_MSG.replace(b"\n", b"\r\n")
    assert fmt_inner(body_structure(parse(crlf))) == DOVECOT_BODYSTRUCTURE
    assert parse(crlf).data == parse(DOVECOT_MSG).data == crlf


# Dovecot src/lib-imap/test-imap-envelope.c (tests copied there from imaptest).
ENVELOPE_VECTORS = [
    (
        b"Message-ID: <msg@id>\nIn-Reply-To: <reply@to.id>\n"
        b"Date: Thu, 15 Feb 2007 01:02:03 +0200\nSubject: subject header\n"
        b"From: From Real <fromuser@fromdomain.org>\nTo: To Real <touser@todomain.org>\n"
        b"Cc: Cc Real <ccuser@ccdomain.org>\nBcc: Bcc Real <bccuser@bccdomain.org>\n"
        b"Sender: Sender Real <senderuser@senderdomain.org>\n"
        b"Reply-To: ReplyTo Real <replytouser@replytodomain.org>\n\nbody\n",
        '"Thu, 15 Feb 2007 01:02:03 +0200" "subject header" '
        '(("From Real" NIL "fromuser" "fromdomain.org")) '
        '(("Sender Real" NIL "senderuser" "senderdomain.org")) '
        '(("ReplyTo Real" NIL "replytouser" "replytodomain.org")) '
        '(("To Real" NIL "touser" "todomain.org")) (("Cc Real" NIL "ccuser" "ccdomain.org")) '
        '(("Bcc Real" NIL "bccuser" "bccdomain.org")) "<reply@to.id>" "<msg@id>"',
    ),
    (
        b"Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain\n\nbody\n",
        '"Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL NIL "user" "domain")) '
        '((NIL NIL "user" "domain")) ((NIL NIL "user" "domain")) NIL NIL NIL NIL NIL',
    ),
    (
        b"Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain (Real Name)\n"
        b"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\n"
        b"Cc: group:;, group2: (foo) ;\n\nbody\n",
        '"Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) '
        '(("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) '
        '((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)'
        '(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)) '
        '((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL)) '
        "NIL NIL NIL",
    ),
    (
        b"Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain (Real Name)\n"
        b"Sender: \nReply-To: \n\nbody\n",
        '"Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) '
        '(("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) '
        "NIL NIL NIL NIL NIL",
    ),
    (
        b"Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: <@route:user@domain>\n\nbody\n",
        '"Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL "@route" "user" "domain")) '
        '((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) '
        "NIL NIL NIL NIL NIL",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), ENVELOPE_VECTORS)
def test_dovecot_envelope(raw: bytes, expected: str) -> None:
    assert fmt_inner(envelope(parse(raw))) == expected


# Dovecot src/lib-mail/test-message-address.c (without fill_missing) plus the ENVELOPE forms.
ADDRESS_VECTORS = [
    (b"user@domain", (None, None, b"user", b"domain")),
    (b"<user@domain>", (None, None, b"user", b"domain")),
    (b"foo bar <user@domain>", (b"foo bar", None, b"user", b"domain")),
    (b'"foo bar" <user@domain>', (b"foo bar", None, b"user", b"domain")),
    (b"<@route:user@domain>", (None, b"@route", b"user", b"domain")),
    (b"<@route@route2:user@domain>", (None, b"@route,@route2", b"user", b"domain")),
    (b"hello <@route ,@route2:user@domain>", (b"hello", b"@route,@route2", b"user", b"domain")),
    (b"user (hello)", (b"hello", None, b"user", b"")),
    (b"hello <user>", (b"hello", None, b"user", b"")),
    (b"@domain", (None, None, b"", b"domain")),
]


@pytest.mark.parametrize(("raw", "expected"), ADDRESS_VECTORS)
def test_dovecot_address(raw: bytes, expected: tuple[bytes | None, ...]) -> None:
    (a,) = parse_address_list(raw, fill_missing=False)
    assert (a.name, a.route, a.mailbox, a.domain) == expected
    (b,) = parse_address_list(raw)  # ENVELOPE's form: the gaps are named
    assert b.mailbox == (expected[2] or b"MISSING_MAILBOX")
    assert b.domain == (expected[3] or b"MISSING_DOMAIN")


def test_dovecot_address_groups() -> None:
    group = b"group: " + b", \n ".join(raw for raw, exp in ADDRESS_VECTORS[:7]) + b";"
    addrs = parse_address_list(group, fill_missing=False)
    assert (addrs[0].mailbox, addrs[0].domain) == (b"group", None)
    assert [(a.name, a.route, a.mailbox, a.domain) for a in addrs[1:-1]] == [
        exp for _, exp in ADDRESS_VECTORS[:7]
    ]
    assert addrs[-1].is_group_end
    empty = parse_address_list(b"group:;")
    assert [(a.mailbox, a.domain) for a in empty] == [(b"group", None), (None, None)]


# imaptest src/tests/fetch-body-mime and fetch-binary-mime: the message and its section sizes.
IMAPTEST_MSG = b"""From: user@domain.org
Date: Sat, 24 Mar 2007 23:00:00 +0200
Mime-Version: 1.0
Content-Type: multipart/mixed; boundary="foo
 bar"

Root MIME prologue

--foo bar
Content-Type: text/x-myown; charset=us-ascii

hello

--foo bar
Content-Type: message/rfc822

From: sub@domain.org
Date: Sun, 12 Aug 2012 12:34:56 +0300
Subject: submsg
Content-Type: multipart/alternative; boundary="sub1"

Sub MIME prologue
--sub1
Content-Type: text/html

<p>Hello world</p>

--sub1
Content-Type: text/plain

Hello another world

--sub1--
Sub MIME epilogue

--foo bar--
Root MIME epilogue
"""
IMAPTEST_SIZES = {
    "": 602,
    "TEXT": 466,
    "1": 7,
    "1.MIME": 48,
    "2": 298,
    "2.MIME": 32,
    "2.HEADER": 134,
    "2.HEADER.FIELDS (from subject x-foo)": 41,
    "2.HEADER.FIELDS.NOT (from subject x-foo)": 95,
    "2.TEXT": 164,
    "2.1.MIME": 27,
    "2.1": 20,
    "2.2.MIME": 28,
    "2.2": 21,
}


@pytest.mark.parametrize(("spec", "size"), IMAPTEST_SIZES.items())
def test_imaptest_section_sizes(spec: str, size: int) -> None:
    msg = parse(IMAPTEST_MSG)
    section = parse_section(spec)
    assert section is not None
    assert binary_size(msg, section) == size
    out = body_section(msg, section)
    assert out is not None and len(out) == size


def test_imaptest_section_contents() -> None:
    msg = parse(IMAPTEST_MSG)

    def get(spec: str) -> bytes | None:
        section = parse_section(spec)
        assert section is not None
        return body_section(msg, section)

    assert get("1") == b"hello\r\n"
    assert get("1.MIME") == b"Content-Type: text/x-myown; charset=us-ascii\r\n\r\n"
    assert get("2.MIME") == b"Content-Type: message/rfc822\r\n\r\n"
    assert get("2.HEADER.FIELDS (from subject X-foo)") == (
        b"From: sub@domain.org\r\nSubject: submsg\r\n\r\n"
    )
    assert get("2.HEADER.FIELDS.NOT (from subject X-foo)") == (
        b"Date: Sun, 12 Aug 2012 12:34:56 +0300\r\n"
        b'Content-Type: multipart/alternative; boundary="sub1"\r\n\r\n'
    )
    assert get("2.1") == b"<p>Hello world</p>\r\n"
    assert get("2.2.MIME") == b"Content-Type: text/plain\r\n\r\n"
    text = get("2.TEXT")
    assert text is not None
    assert text.startswith(b"Sub MIME prologue\r\n--sub1\r\n")
    assert text.endswith(b"--sub1--\r\nSub MIME epilogue\r\n")


# imaptest fetch-body-message-rfc822-mime: a digest inside message/rfc822.
DIGEST_IN_RFC822 = b"""From: user@domain.org
Date: Sat, 24 Mar 2007 23:00:00 +0200
Mime-Version: 1.0
Content-Type: message/rfc822

From: sub@domain.org
Date: Sun, 12 Aug 2012 12:34:56 +0300
Subject: submsg
Content-Type: multipart/digest; boundary="foo"

prologue

--foo\x20

From: m1@example.com
Subject: m1

m1 body

--foo\x20
X-Mime: m2 header

From: m2@example.com
Subject: m2

m2 body

--foo--

epilogue
"""


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1.1", b"From: m1@example.com\r\nSubject: m1\r\n\r\nm1 body\r\n"),
        ("1.1.MIME", b"\r\n"),
        ("1.1.HEADER", b"From: m1@example.com\r\nSubject: m1\r\n\r\n"),
        ("1.1.TEXT", b"m1 body\r\n"),
        ("1.2.MIME", b"X-Mime: m2 header\r\n\r\n"),
        ("1.2.HEADER", b"From: m2@example.com\r\nSubject: m2\r\n\r\n"),
        ("1.2.TEXT", b"m2 body\r\n"),
        (
            "1.HEADER",
            b"From: sub@domain.org\r\nDate: Sun, 12 Aug 2012 12:34:56 +0300\r\n"
            b'Subject: submsg\r\nContent-Type: multipart/digest; boundary="foo"\r\n\r\n',
        ),
    ],
)
def test_imaptest_digest_in_message(spec: str, expected: bytes) -> None:
    section = parse_section(spec)
    assert section is not None
    assert body_section(parse(DIGEST_IN_RFC822), section) == expected


def test_imaptest_digest_bodystructure_nesting() -> None:
    bs = body_structure(parse(DIGEST_IN_RFC822), extensible=False)
    assert bs[:2] == ["message", "rfc822"]
    digest = bs[8]
    assert isinstance(digest, list)
    assert [part[:2] for part in digest[:2]] == [["message", "rfc822"], ["message", "rfc822"]]
    assert digest[2] == "digest"
    assert fmt(digest[0][7]) == (
        '(NIL "m1" ((NIL NIL "m1" "example.com")) ((NIL NIL "m1" "example.com")) '
        '((NIL NIL "m1" "example.com")) NIL NIL NIL NIL NIL)'
    )

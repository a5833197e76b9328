"""The tricky-message corpus in tests/data/mime: hand-checked ENVELOPE and BODYSTRUCTURE.

Expected strings were checked by hand against RFC 3501 7.4.2 and Dovecot's rules (see
docs/mime.md); the part contents in PART_BODIES are written from the .eml files, not from the
parser, and the sizes and line counts in BODYSTRUCTURE are checked against them.
"""

from __future__ import annotations

import pathlib
import sysconfig

import pytest
from mime_imapfmt import fmt

from carteiro.mime.bodystructure import ImapValue, body_structure, envelope
from carteiro.mime.parse import MESSAGE, MULTIPART, parse
from carteiro.mime.sections import body_section, find_part, parse_section

CORPUS = pathlib.Path(__file__).parents[2] / "data" / "mime"

EXPECTED: dict[str, tuple[str, str]] = {
    "boundary-edge-cases.eml": (
        "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
        '((("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 9 0 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 9 0 NIL NIL NIL NIL) "alternative" ("boundary" "foobar") NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 53 0 NIL NIL NIL NIL) "mixed" ("boundary" "foo") NIL NIL NIL)',
    ),
    "broken-structure.eml": (
        "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "alternative" NIL NIL NIL NIL)(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "related" ("boundary" "Y") NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) 0 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 11 0 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "x-uuencode" 11 0 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 0 NIL NIL NIL NIL) "mixed" ("boundary" "X") NIL NIL NIL)',
    ),
    "default-type-qp.eml": (
        '(NIL "no content type" ((NIL NIL "qp" "example.org")) ((NIL NIL "qp" "example.org")) ((NIL NIL "qp" "example.org")) NIL NIL NIL NIL NIL)',
        '("text" "plain" ("charset" "us-ascii") NIL NIL "Quoted-Printable" 51 2 NIL NIL NIL NIL)',
    ),
    "digest.eml": (
        '(NIL "Digest, Vol 1, Issue 2" ((NIL NIL "list-digest" "example.org")) ((NIL NIL "list-digest" "example.org")) ((NIL NIL "list-digest" "example.org")) ((NIL NIL "list" "example.org")) NIL NIL NIL NIL)',
        '(("message" "rfc822" NIL NIL NIL "7bit" 51 (NIL "first" ((NIL NIL "m1" "example.com")) ((NIL NIL "m1" "example.com")) ((NIL NIL "m1" "example.com")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 11 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 24 0 NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 52 (NIL "second" ((NIL NIL "m2" "example.com")) ((NIL NIL "m2" "example.com")) ((NIL NIL "m2" "example.com")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 11 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL) "digest" ("boundary" "==digest==") NIL NIL NIL)',
    ),
    "duplicates.eml": (
        '(NIL "second subject" NIL NIL NIL NIL NIL NIL NIL NIL)',
        '("text" "html" ("charset" "utf-8") NIL NIL "8bit" 11 1 NIL ("attachment" ("filename" "a.txt")) ("en") NIL)',
    ),
    "empty-body.eml": (
        '(NIL "empty body" ((NIL NIL "empty" "example.org")) ((NIL NIL "empty" "example.org")) ((NIL NIL "empty" "example.org")) NIL NIL NIL NIL NIL)',
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)',
    ),
    "encoded-words.eml": (
        '("Wed, 5 Jun 2024 12:00:00 +0100" "=?UTF-8?B?8J+Ygg==?= =?UTF-8?Q?_caf=C3?= =?UTF-8?Q?=A9?= and =?broken?= =?utf-8?x?nope?=" (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de")) (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de")) (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de")) (("=?ISO-8859-1?B?QW5kcuk=?=" NIL "andre" "example.fr")("=?bogus-charset?q?x_y?=" NIL "xy" "example.org")) NIL NIL NIL NIL)',
        '("text" "plain" ("charset" "iso-8859-1") NIL NIL "8bit" 14 1 NIL NIL NIL NIL)',
    ),
    "groups-and-routes.eml": (
        '("6 Jun 24 07:08 EST" "groups" ((NIL NIL "Team" NIL)(NIL NIL "alice" "example.org")("Bob B." NIL "bob" "example.org")(NIL NIL NIL NIL)) ((NIL "@relay1.example,@relay2.example" "postmaster" "example.org")) ((NIL NIL "Team" NIL)(NIL NIL "alice" "example.org")("Bob B." NIL "bob" "example.org")(NIL NIL NIL NIL)) ((NIL NIL "A Group" NIL)(NIL NIL NIL NIL)("Solo Person" NIL "solo" "example.net")(NIL NIL "bare" "example.net")) (("Quoted \\"Name\\"" NIL "q" "example.net")("spaced out" NIL "s" "example.net")) NIL "<a@example.org> <b@example.org>" "<groups@example.org>")',
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 1 NIL NIL NIL NIL)',
    ),
    "headerless.eml": (
        "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 35 1 NIL NIL NIL NIL)',
    ),
    "message-in-message.eml": (
        '(NIL "Fwd: original" ((NIL NIL "forwarder" "example.org")) ((NIL NIL "forwarder" "example.org")) ((NIL NIL "forwarder" "example.org")) NIL NIL NIL NIL NIL)',
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL)("message" "rfc822" ("name" "original.eml") NIL NIL "7bit" 251 ("Thu, 6 Jun 2024 08:00:00 +0000" "original" ((NIL NIL "original" "example.com")) ((NIL NIL "original" "example.com")) ((NIL NIL "original" "example.com")) ((NIL NIL "forwarder" "example.org")) NIL NIL NIL "<orig@example.com>") ("message" "rfc822" NIL NIL NIL "7bit" 56 (NIL "innermost" ((NIL NIL "inner" "example.com")) ((NIL NIL "inner" "example.com")) ((NIL NIL "inner" "example.com")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 9 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL) 11 NIL ("attachment" NIL) NIL NIL) "mixed" ("boundary" "fwd") NIL NIL NIL)',
    ),
    "missing-final-boundary.eml": (
        "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 48 2 NIL NIL NIL NIL) "mixed" ("boundary" "frontier") NIL NIL NIL)',
    ),
    "nested-alternative-related.eml": (
        '("Tue, 4 Jun 2024 09:15:00 -0400" "Quarterly report" (("Carol, Q." NIL "carol" "example.com")) (("Carol, Q." NIL "carol" "example.com")) (("Carol, Q." NIL "carol" "example.com")) (("Dave" NIL "dave" "example.net")("Eve (IT)" NIL "eve" "example.net")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL "<report-q2@example.com>")',
        '((("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 50 1 NIL NIL NIL NIL)(("text" "html" ("charset" "utf-8") NIL NIL "7bit" 49 1 NIL NIL NIL NIL)("image" "png" NIL "<logo@example.com>" NIL "base64" 12 NIL ("inline" NIL) NIL NIL) "related" ("boundary" "rel-456" "type" "text/html") NIL NIL NIL) "alternative" ("boundary" "alt-123") NIL NIL NIL)("application" "pdf" ("name" "report.pdf") NIL "Q2 report" "base64" 12 NIL ("attachment" ("filename" "report.pdf" "size" "12")) NIL NIL) "mixed" ("boundary" "outer-XYZ") NIL NIL NIL)',
    ),
    "no-separator.eml": (
        '(NIL "no blank line and no body" ((NIL NIL "nobody" "example.org")) ((NIL NIL "nobody" "example.org")) ((NIL NIL "nobody" "example.org")) NIL NIL NIL NIL NIL)',
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)',
    ),
    "not-mime-content-headers.eml": (
        '(NIL "old mailer" ((NIL NIL "legacy" "example.com")) ((NIL NIL "legacy" "example.com")) ((NIL NIL "legacy" "example.com")) ((NIL NIL "someone" "example.net")) NIL NIL NIL NIL)',
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 1 NIL NIL NIL NIL)',
    ),
    "plain-no-mime.eml": (
        '("Mon, 3 Jun 2024 11:59:30 +0200" "Lunch?" (("Alice Example" NIL "alice" "example.org")) (("Alice Example" NIL "alice" "example.org")) (("Alice Example" NIL "alice" "example.org")) ((NIL NIL "bob" "example.net")) NIL NIL NIL "<lunch-1@example.org>")',
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 42 4 NIL NIL NIL NIL)',
    ),
    "raw-8bit-headers.eml": (
        '(NIL {35}rÃ©sumÃ© in UTF-8, naïve in latin-1 ((NIL NIL "raw8bit" "example.org")) ((NIL NIL "raw8bit" "example.org")) ((NIL NIL "raw8bit" "example.org")) NIL NIL NIL NIL NIL)',
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)',
    ),
    "rfc2231.eml": (
        "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
        '(("application" "x-stuff" ("charset" "us-ascii" "title*" "us-ascii\'en\'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn\'t it!") NIL NIL "7bit" 5 NIL ("attachment" ("filename" "naive file.txt" "filename*" "UTF-8\'\'na%C3%AFve%20file.txt")) NIL NIL)("text" "plain" ("name" "=?utf-8?Q?r=C3=A9sum=C3=A9.txt?=" "format" "flowed" "charset" "us-ascii") NIL NIL "7bit" 4 0 NIL ("inline" ("filename" "long-name.txt")) NIL NIL)("application" "octet-stream" ("name*0" "gap" "name*2" "ped") NIL NIL "7bit" 6 "Q2hlY2sgSW50ZWdyaXR5IQ==" NIL ("en-GB" "fr") "http://example.com/x /y.bin") "mixed" ("boundary" "b") NIL NIL NIL)',
    ),
}


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_corpus_is_complete() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_envelope(name: str) -> None:
    assert fmt(envelope(parse(load(name)))) == EXPECTED[name][0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bodystructure(name: str) -> None:
    assert fmt(body_structure(parse(load(name)))) == EXPECTED[name][1]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_line_endings_do_not_matter(name: str) -> None:
    raw = load(name)
    crlf = raw.replace(b"\n", b"\r\n")
    lf, dos = parse(raw), parse(crlf)
    assert dos.data == crlf == lf.data
    assert body_structure(lf) == body_structure(dos)
    assert envelope(lf) == envelope(dos)


def bs_part(bs: ImapValue, path: tuple[int, ...]) -> list[ImapValue]:
    """The BODYSTRUCTURE node a section path names (the rules of RFC 3501 6.4.5)."""
    node = bs
    for i, n in enumerate(path):
        assert isinstance(node, list)
        if isinstance(node[0], list):  # multipart: its parts come first
            node = node[n - 1]
        else:
            assert n == 1
        assert isinstance(node, list)
        if i + 1 < len(path) and node[:2] == ["message", "rfc822"]:
            node = node[8]  # numbers go on inside the encapsulated message
    assert isinstance(node, list)
    return node


# (file, section path, the part's body as written in the file, text/* or message/rfc822?)
PART_BODIES = [
    ("plain-no-mime.eml", (1,), b"Are we still on for lunch?\n\n-- \nAlice\n", True),
    ("nested-alternative-related.eml", (1, 1),
     b"Hi Dave,\nThe report is attached. Caf=C3=A9 on me.", True),
    ("nested-alternative-related.eml", (1, 2, 1),
     b'<p>Hi Dave,<img src="cid:logo@example.com"></p>\n', True),
    ("nested-alternative-related.eml", (1, 2, 2), b"iVBORw0KGgo=", False),
    ("nested-alternative-related.eml", (2,), b"JVBERi0xLjQK", False),
    ("missing-final-boundary.eml", (1,), b"first part", True),
    ("missing-final-boundary.eml", (2,), b"second part, cut short\nand no close delimiter\n", True),
    ("boundary-edge-cases.eml", (1, 1), b"inner one", True),
    ("boundary-edge-cases.eml", (1, 2), b"inner two", True),
    ("boundary-edge-cases.eml", (2,),
     b"outer two; the inner multipart had no close delimiter", True),
    ("default-type-qp.eml", (1,), b"soft=\n break and =3D sign, trailing blanks   =20\n", True),
    ("digest.eml", (1,), b"From: m1@example.com\nSubject: first\n\nmessage one", True),
    ("digest.eml", (2,), b"not a message, just text", True),
    ("digest.eml", (3,), b"From: m2@example.com\nSubject: second\n\nmessage two", True),
    ("digest.eml", (3, 1), b"message two", True),
    ("encoded-words.eml", (1,), b"caf\xe9 au lait\n", True),
    ("rfc2231.eml", (1,), b"stuff", False),
    ("rfc2231.eml", (2,), b"text", True),
    ("rfc2231.eml", (3,), b"gapped", False),
    ("empty-body.eml", (1,), b"", True),
    ("no-separator.eml", (1,), b"", True),
    ("headerless.eml", (1,), b"this message has no header at all\n", True),
    ("broken-structure.eml", (1,), b"", True),
    ("broken-structure.eml", (4,), b"", True),
    ("broken-structure.eml", (5,), b"broken type", True),
    ("broken-structure.eml", (6,), b"begin 644 a", False),
    ("message-in-message.eml", (1,), b"See below.", True),
    ("message-in-message.eml", (2, 1),
     b"From: inner@example.com\nSubject: innermost\n\ndeep body", True),
    ("message-in-message.eml", (2, 1, 1), b"deep body", True),
]  # fmt: skip


@pytest.mark.parametrize(("name", "path", "body", "counted"), PART_BODIES)
def test_part_sizes_and_lines(name: str, path: tuple[int, ...], body: bytes, counted: bool) -> None:
    msg = parse(load(name))
    crlf_body = body.replace(b"\n", b"\r\n")
    section = parse_section(".".join(map(str, path)))
    assert section is not None
    assert body_section(msg, section) == crlf_body
    node = bs_part(body_structure(msg), path)
    assert node[6] == len(crlf_body)  # body-fld-octets
    part = find_part(msg, path)
    assert part is not None
    if counted:  # body-fld-lines: text/* after the basic fields, message/rfc822 after the body
        lines = node[9] if part.kind == MESSAGE else node[7]
        assert lines == crlf_body.count(b"\n")


def test_sizes_add_up_everywhere() -> None:
    """A multipart's body holds its children, in order, inside its own bytes."""
    for name in EXPECTED:
        msg = parse(load(name))
        for part in msg.root.walk():
            assert part.start <= part.body_start <= part.end <= msg.size
            last = part.body_start
            for child in part.children:
                assert last <= child.start <= child.end <= part.end
                last = child.end
            if part.kind == MESSAGE:
                (inner,) = part.children
                assert (inner.start, inner.end) == (part.body_start, part.end)
            if part.kind == MULTIPART and part.children:
                # RFC 2046 5.1.1: each body part follows a "--boundary" line.
                for child in part.children:
                    line_start = msg.data.rfind(b"\n", 0, child.start - 1) + 1
                    assert msg.data.startswith(b"--" + (part.boundary or b""), line_start)


STDLIB_EMAILS = pathlib.Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"


@pytest.mark.skipif(not STDLIB_EMAILS.is_dir(), reason="CPython's test emails are not installed")
def test_cpython_test_emails_parse_consistently() -> None:
    for path in sorted(STDLIB_EMAILS.glob("msg_*.txt")):
        msg = parse(path.read_bytes())
        bs = body_structure(msg)
        env = envelope(msg)
        assert len(env) == 10
        assert fmt(bs)  # only IMAP value types
        for part in msg.root.walk():
            assert part.start <= part.body_start <= part.end <= msg.size

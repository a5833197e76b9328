"""RFC 5256 2.1 base subject, the i;unicode-casemap key (RFC 5051) and the SORT/THREAD fields of
messages with encoded words, groups, missing and broken fields."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carteiro.mime.parse import parse
from carteiro.mime.sortkeys import _title, base_subject, casemap, sort_fields


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Meeting", "Meeting", False),
        ("Re: Meeting", "Meeting", True),
        ("RE:re: fw: FWD:Meeting", "Meeting", True),
        ("Re[2]: Meeting", "Meeting", True),  # subj-refwd may hold a blob
        ("Re : Meeting", "Meeting", True),  # *WSP before ":"
        ("[list] Re: Meeting", "Meeting", True),
        ("[list] Meeting", "Meeting", False),  # a blob goes when something is left (4)
        ("[PATCH]", "[PATCH]", False),  # ... and stays when it is all there is
        ("[a] [b]", "[b]", False),
        ("Meeting (fwd)", "Meeting", True),
        ("Meeting (FWD) (fwd)  ", "Meeting", True),
        ("[fwd: Re: Meeting]", "Meeting", True),  # (6), then again from (2)
        ("[Fwd: [fwd: Meeting (fwd)]]", "Meeting", True),
        ("Really important", "Really important", False),  # "re" not followed by ":"
        ("Fwdx: y", "Fwdx: y", False),
        ("  Re:\t  spaced\r\n   out  ", "spaced out", True),  # (1) blanks folded
        ("Re:", "", True),
        ("", "", False),
        ("[unclosed Re: x", "[unclosed Re: x", False),
    ],
)
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


@given(st.text(alphabet="Re:Fwd[] ()\tx", max_size=60))
def test_base_subject_is_idempotent_and_linear(subject: str) -> None:
    base, _ = base_subject(subject)
    assert base_subject(base)[0] == base


def test_base_subject_of_a_hostile_subject_is_quick() -> None:
    base_subject("[" * 100_000 + "Re: " * 10_000 + "x" + " (fwd)" * 10_000)
    base_subject("[a]" * 100_000)
    base_subject("[a]" * 1000 + "Re:" + "[b]" * 1000)


def test_casemap() -> None:
    assert casemap("abc") == casemap("ABC") == "ABC"
    assert casemap("café") == casemap("CAFÉ") == casemap("cafe\u0301")  # NFKD
    assert casemap("ǆ") == casemap("ǅ")  # titlecase
    assert casemap("") < casemap("a")  # the empty string first


def test_sort_fields() -> None:
    msg = parse(
        b"From: =?utf-8?q?J=C3=B6rg?= <Joerg@Example.test>, b@x\r\n"
        b"To: team: carl@example.test, dora@example.test;\r\n"
        b"Cc: <@route:cc@example.test>\r\n"
        b"Subject: =?utf-8?q?Re=3A_=C3=9Cber?= (fwd)\r\n"
        b"Date: Mon, 1 Jan 2024 11:30:00 +0200\r\n"
        b"Message-ID: <id (comment) @host>\r\n"
        b"References: <a@x> junk <b@x>\r\n <c@x>\r\n"
        b"In-Reply-To: <ignored@x>\r\n\r\nbody\r\n"
    )
    f = sort_fields(msg)
    assert (f.subject, f.reply) == ("Über", True)
    assert (f.from_, f.display_from) == ("Joerg", "Jörg")
    assert (f.to, f.display_to) == ("carl", "carl@example.test")  # the group's first member
    assert f.cc == "cc"
    assert f.date == 1704101400.0  # 09:30 UTC
    assert f.references == ("<a@x>", "<b@x>", "<c@x>")
    bare = sort_fields(parse(b"Subject: x\r\nDate: garbage\r\nIn-Reply-To: <p@x> <q@x>\r\n\r\n"))
    assert (bare.from_, bare.date, bare.message_id) == ("", None, "")
    assert bare.references == ("<p@x>",)  # In-Reply-To's first id when there are no References


UNICODE_DATA = Path("/usr/share/unicode/UnicodeData.txt")  # Debian's unicode-data


def simple_titlecase_errors(title: Callable[[str], str]) -> list[str]:
    """Characters (assigned in Python's unicodedata) whose `title` is not the simple titlecase
    mapping of UnicodeData.txt (field 14), which RFC 5051 2 step 2 names."""
    simple: dict[int, int] = {}
    for line in UNICODE_DATA.read_text().splitlines():
        f = line.split(";")
        if f[14]:
            simple[int(f[0], 16)] = int(f[14], 16)
    bad = []
    for cp in range(0x110000):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF or unicodedata.category(c) == "Cn":
            continue
        if title(c) != chr(simple.get(cp, cp)):
            bad.append(f"U+{cp:04X}")
    return bad


@pytest.mark.skipif(not UNICODE_DATA.exists(), reason="no UnicodeData.txt (apt unicode-data)")
def test_casemap_titlecase_is_the_simple_mapping() -> None:
    """Python exposes only the full titlecase mapping (SpecialCasing: "ß" -> "Ss"); keeping a
    character whose full mapping is longer than one gives exactly the simple mapping for every
    character, which a plain str.title() does not."""
    assert simple_titlecase_errors(_title) == []
    assert "U+00DF" in simple_titlecase_errors(lambda c: c.title())  # the check can fail


def test_casemap_rfc5051_keys() -> None:
    # titlecase then NFKD: case and canonical/compatibility variants meet...
    assert casemap("ǆ") == casemap("ǅ") == casemap("Ǆ") == "Dz\u030c"
    assert (
        casemap("\u03c2") == casemap("\u03c3") == casemap("\u03a3")
    )  # final, small, capital sigma
    assert casemap("\uff21") == casemap("a") == "A"  # fullwidth A: compatibility decomposition
    assert casemap("é") == casemap("E\u0301") == "E\u0301"
    # ...but the simple mappings only: no full case folding of ß or of ligatures
    assert casemap("ß") != casemap("SS")
    assert casemap("ﬁ") == "fi" != casemap("FI")

"""Issue 10.5: the Date parser and the quoted-printable decoder read hostile input in linear time,
and mean what the backtracking regexes they replace meant (short inputs keep those fast)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.mime import dates, sections

# The old patterns: O(n^4) on "Mon<blanks>1<blanks>Jan<blanks>x", quadratic on a blank run.
_OLD_DATE = re.compile(
    r"""^\s*(?:[A-Za-z]+\s*,?\s*)?
    (?P<day>\d{1,2})\s*[-\s]\s*(?P<mon>[A-Za-z]{3})[A-Za-z]*\.?\s*[-\s]\s*(?P<year>\d{2,4})
    (?:\s+(?P<h>\d{1,2})\s*:\s*(?P<m>\d{1,2})(?:\s*:\s*(?P<s>\d{1,2}))?(?:\.\d+)?)?
    \s*(?P<zone>[+-]\d{4}|[+-]\d{2}:?\d{2}|[A-Za-z]{1,5})?""",
    re.VERBOSE,
)
_OLD_TRAILING_BLANKS = re.compile(rb"[ \t]+(?=\r?\n|\Z)")

_SEP = st.sampled_from(["", " ", "  ", "-", " - ", "\t", ",", " ,", ", ", "--", "- "])
_PIECE = st.sampled_from(
    ["Mon", "Tuesday", "x", "1", "12", "123", "Jan", "January", "Jan.", "24", "2024", "20245",
     "10:20", "1:2:3", "10 : 20 : 30", "10:20:30.5", "10:", "+0100", "-01:00", "GMT", "abcdef"]
)  # fmt: skip


@settings(max_examples=800, deadline=None)
@given(st.lists(st.tuples(_PIECE, _SEP), max_size=8))
def test_date_pattern_matches_as_before(pieces: list[tuple[str, str]]) -> None:
    text = "".join(p + s for p, s in pieces)
    old, new = _OLD_DATE.match(text), dates._DATE.match(text)
    assert (old and (old.span(), old.groupdict())) == (new and (new.span(), new.groupdict()))


def test_well_formed_dates_still_parse() -> None:
    got = dates.parse_date("Mon, 3 Jan 2000 10:20:30 +0100")
    assert got is not None and got.isoformat() == "2000-01-03T10:20:30+01:00"
    got = dates.parse_date("3 - January -  99 (comment) 10 : 20 GMT")
    assert got is not None and got.isoformat() == "1999-01-03T10:20:00+00:00"


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from([b" ", b"\t", b"\r", b"\n", b"a", b"="]), max_size=16))
def test_trailing_blanks_stripped_as_before(octets: list[bytes]) -> None:
    body = b"".join(octets)
    assert sections._TRAILING_BLANKS.sub(b"", body) == _OLD_TRAILING_BLANKS.sub(b"", body)

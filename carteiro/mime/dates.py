"""Date header parsing (RFC 5322 3.3 with the obsolete forms of 4.3) for SEARCH SENT* and SORT.

Lenient: optional weekday, comments, 2- and 3-digit years, named and military zones, missing
seconds; None when no date can be read. Never raises.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
# RFC 5322 4.3 obs-zone; military zones are "not reliable" there, so they count as -0000.
_ZONES = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0,
    "est": -5 * 60, "edt": -4 * 60, "cst": -6 * 60, "cdt": -5 * 60,
    "mst": -7 * 60, "mdt": -6 * 60, "pst": -8 * 60, "pdt": -7 * 60,
}  # fmt: skip
_COMMENT = re.compile(r"\([^()]*\)")
# Possessive quantifiers (*+, ++) on every run of blanks: each separator can be read one way
# only, so a header of long blank runs that is no date fails in linear time. With plain "\s*"
# pairs (",?" and "[-\s]" between two of them) "Mon<200 blanks>1<200 blanks>Jan<200 blanks>x"
# took 80 s (O(n^4) backtracking) in SEARCH SENTBEFORE over a hostile message.
_DATE = re.compile(
    r"""^\s*+(?:[A-Za-z]++\s*+(?:,\s*+)?)?                         # day-of-week
    (?P<day>\d{1,2})(?=[-\s])\s*+-?+\s*+                          # day, then blanks or "-"
    (?P<mon>[A-Za-z]{3})[A-Za-z]*+\.?+(?=[-\s])\s*+-?+\s*+(?P<year>\d{2,4})
    (?:\s++(?P<h>\d{1,2})\s*+:\s*+(?P<m>\d{1,2})(?:\s*+:\s*+(?P<s>\d{1,2}))?(?:\.\d+)?)?
    \s*+(?P<zone>[+-]\d{4}|[+-]\d{2}:?\d{2}|[A-Za-z]{1,5})?""",
    re.VERBOSE,
)


def parse_date(value: bytes | str) -> datetime | None:
    """The instant a Date header value names, as an aware datetime in the header's own offset."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    if "(" in text:  # a comment needs one
        for _ in range(4):  # nested comments, innermost first
            text = _COMMENT.sub(" ", text)
    m = _DATE.match(text)
    if m is None:
        return None
    month = _MONTHS.get(m.group("mon").lower())
    if month is None:
        return None
    year = int(m.group("year"))
    ydigits = len(m.group("year"))
    if ydigits == 2:
        year += 2000 if year < 50 else 1900  # RFC 5322 4.3
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
            offset = _ZONES.get(zone.lower(), 0)
    try:
        return datetime(
            year,
            month,
            int(m.group("day")),
            int(m.group("h") or 0),
            int(m.group("m") or 0),
            min(int(m.group("s") or 0), 59),  # RFC 5322 3.3 allows a leap second 60
            tzinfo=_zone(offset),
        )
    except ValueError:
        return None


_TZ: dict[int, timezone] = {}


def _zone(minutes: int) -> timezone:
    # one object per offset (at most 2 * 24 * 60 of them: hh < 24, mm < 60)
    tz = _TZ.get(minutes)
    if tz is None:
        tz = _TZ[minutes] = timezone(timedelta(minutes=minutes))
    return tz


def header_date(value: bytes | str) -> date | None:
    """The calendar date written in a Date header, "disregarding time and timezone" as
    SEARCH SENTBEFORE/SENTON/SENTSINCE require (RFC 3501 6.4.4)."""
    dt = parse_date(value)
    return dt.date() if dt is not None else None

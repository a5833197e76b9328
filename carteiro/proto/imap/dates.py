"""IMAP dates (RFC 9051 9 date, date-time): parse the client's forms, render INTERNALDATE.

``date`` (SEARCH) is ``1-Feb-1994`` and may be quoted; ``date-time`` (APPEND, INTERNALDATE) is
always quoted: ``"17-Jul-1996 02:44:25 -0700"``. Month names are case-insensitive (ABNF strings).
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["DateError", "format_date_time", "parse_date", "parse_date_time"]

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m.lower(): i + 1 for i, m in enumerate(MONTHS)}

_DATE_RE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
# date-day-fixed = (SP DIGIT) / 2DIGIT
_DATE_TIME_RE = re.compile(
    r"( [0-9]|[0-9]{2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)


class DateError(ValueError):
    pass


def parse_date(text: str) -> dt.date:
    """``1-Feb-1994`` -> date (the caller strips the optional quotes)."""
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise DateError(f"invalid date {text[:30]!r}")
    month = _MONTH_NUMBER.get(m.group(2).lower())
    if month is None:
        raise DateError(f"invalid month {m.group(2)!r}")
    try:
        return dt.date(int(m.group(3)), month, int(m.group(1)))
    except ValueError as exc:
        raise DateError(f"invalid date {text!r}") from exc


def parse_date_time(text: str) -> dt.datetime:
    """``17-Jul-1996 02:44:25 -0700`` (without the quotes) -> an aware datetime."""
    m = _DATE_TIME_RE.fullmatch(text)
    if m is None:
        raise DateError(f"invalid date-time {text[:40]!r}")
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    month = _MONTH_NUMBER.get(mon.lower())
    if month is None:
        raise DateError(f"invalid month {mon!r}")
    offset_minutes = int(zh) * 60 + int(zm)
    if int(zm) >= 60 or offset_minutes >= 24 * 60:
        raise DateError(f"invalid zone {sign}{zh}{zm}")
    zone = dt.timezone(dt.timedelta(minutes=-offset_minutes if sign == "-" else offset_minutes))
    try:
        return dt.datetime(
            int(year), month, int(day.strip()), int(hh), int(mm), int(ss), tzinfo=zone
        )
    except ValueError as exc:
        raise DateError(f"invalid date-time {text!r}") from exc


def format_date_time(value: dt.datetime) -> str:
    """An aware (or UTC-assumed naive) datetime -> ``17-Jul-1996 02:44:25 -0700`` (no quotes)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    offset = value.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{value.day:2d}-{MONTHS[value.month - 1]}-{value.year:04d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )

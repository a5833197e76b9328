"""Durations in configuration: "90", "30s", "5m", "1h", "1d" -> seconds. Pure."""

from __future__ import annotations

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Raises ValueError for anything else, or a value that is not positive."""
    text = text.strip().lower()
    mult = 1
    if text and text[-1] in _UNITS:
        mult = _UNITS[text[-1]]
        text = text[:-1]
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError("a duration must be a positive number of s, m, h or d")
    return value * mult

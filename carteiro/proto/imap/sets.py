"""IMAP sequence sets (RFC 9051 9 sequence-set, RFC 5182 "$"): parse, resolve, render.

A SequenceSet keeps the ranges as written (``*`` included) and resolves them against the sorted
numbers of a mailbox with bisection, so ``1:4294967295`` or ``1:*`` costs O(ranges * log n) and is
never expanded. Rendering compresses runs (``1:5,7,9:12``) for COPYUID, APPENDUID and ESEARCH.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

__all__ = ["MAX_NUMBER", "STAR", "SequenceSet", "SequenceSetError", "render_numbers"]

STAR: Final = 0
"""The value standing for ``*`` in a range endpoint (0 is never a valid seq-number)."""
MAX_NUMBER: Final = 4294967295  # RFC 9051 9: nz-number, uniqueid are 32-bit

_SET_RE = re.compile(
    r"(?:[1-9][0-9]*|\*)(?::(?:[1-9][0-9]*|\*))?(?:,(?:[1-9][0-9]*|\*)(?::(?:[1-9][0-9]*|\*))?)*"
)


class SequenceSetError(ValueError):
    """Text that is not a valid sequence-set, or a set that cannot be resolved."""


class SequenceSet:
    """Ranges ``(first, last)`` as written, ``STAR`` for ``*``; or ``$`` (``saved``, RFC 5182)."""

    __slots__ = ("_resolved", "ranges", "saved")

    ranges: tuple[tuple[int, int], ...]
    saved: bool

    def __init__(self, ranges: Iterable[tuple[int, int]] = (), *, saved: bool = False) -> None:
        self.ranges = tuple(ranges)
        self.saved = saved
        if saved and self.ranges:
            raise SequenceSetError("$ stands alone")
        if not saved and not self.ranges:
            raise SequenceSetError("empty sequence set")
        # (largest, merged ranges): one attribute, so a shared instance never mixes two results
        self._resolved: tuple[int, tuple[tuple[int, int], ...]] = (-1, ())

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str | bytes, *, allow_saved: bool = True) -> SequenceSet:
        """``"1:3,5,7:*"`` or ``"$"``. Raises SequenceSetError."""
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        if text == "$":
            if not allow_saved:
                raise SequenceSetError("$ is not allowed here")
            return cls(saved=True)
        if _SET_RE.fullmatch(text) is None:
            raise SequenceSetError(f"invalid sequence set {text[:40]!r}")
        ranges: list[tuple[int, int]] = []
        for item in text.split(","):
            first, sep, last = item.partition(":")
            a = _number(first)
            b = _number(last) if sep else a
            ranges.append((a, b))
        return cls(ranges)

    @classmethod
    def from_numbers(cls, numbers: Iterable[int], *, sort: bool = True) -> SequenceSet:
        """The compact set of ``numbers`` (ascending runs become ranges). Empty input is an error."""
        return cls(_runs(numbers, sort=sort))

    # -- properties -----------------------------------------------------------------------------

    @property
    def uses_star(self) -> bool:
        return any(a == STAR or b == STAR for a, b in self.ranges)

    def max_number(self) -> int:
        """The largest number written (``*`` ignored): sessions check MSN sets against EXISTS."""
        return max((max(a, b) for a, b in self.ranges), default=0)

    # -- resolution -----------------------------------------------------------------------------

    def resolve(self, largest: int) -> tuple[tuple[int, int], ...]:
        """Sorted, merged, inclusive ranges with ``*`` = ``largest`` (the last MSN or UID)."""
        if self.saved:
            raise SequenceSetError("$ must be replaced by the saved result before use")
        cached = self._resolved
        if cached[0] == largest:
            return cached[1]
        spans: list[tuple[int, int]] = []
        for a, b in self.ranges:
            a = largest if a == STAR else a
            b = largest if b == STAR else b
            if a > b:  # RFC 9051 9: "2:4" and "4:2" are equivalent
                a, b = b, a
            spans.append((max(a, 1), b))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if b < a:
                continue
            if merged and a <= merged[-1][1] + 1:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        result = tuple(merged)
        self._resolved = (largest, result)
        return result

    def contains(self, number: int, largest: int) -> bool:
        for a, b in self.resolve(largest):
            if a <= number <= b:
                return True
            if a > number:
                break
        return False

    def indices(self, sorted_numbers: Sequence[int]) -> list[int]:
        """Positions in ``sorted_numbers`` (ascending UIDs) whose value is in the set.

        ``*`` is the last value. Position + 1 is the message sequence number.
        """
        if not sorted_numbers:
            return []
        out: list[int] = []
        for a, b in self.resolve(sorted_numbers[-1]):
            lo = bisect_left(sorted_numbers, a)
            hi = bisect_right(sorted_numbers, b, lo)
            out.extend(range(lo, hi))
        return out

    def filter(self, sorted_numbers: Sequence[int]) -> list[int]:
        """The values of ``sorted_numbers`` (ascending) that are in the set, ascending."""
        if not sorted_numbers:
            return []
        out: list[int] = []
        for a, b in self.resolve(sorted_numbers[-1]):
            lo = bisect_left(sorted_numbers, a)
            hi = bisect_right(sorted_numbers, b, lo)
            out.extend(sorted_numbers[lo:hi])
        return out

    def iter_numbers(self, largest: int) -> Iterator[int]:
        """Every number in the set up to ``largest``, ascending (MSN sets: largest = EXISTS)."""
        for a, b in self.resolve(largest):
            yield from range(a, min(b, largest) + 1)

    def count(self, largest: int) -> int:
        return sum(min(b, largest) - a + 1 for a, b in self.resolve(largest) if a <= largest)

    # -- rendering ------------------------------------------------------------------------------

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(_range_text(a, b) for a, b in self.ranges)

    def __repr__(self) -> str:
        return f"SequenceSet({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SequenceSet):
            return NotImplemented
        return self.ranges == other.ranges and self.saved == other.saved

    def __hash__(self) -> int:
        return hash((self.ranges, self.saved))


def render_numbers(numbers: Iterable[int], *, sort: bool = True) -> str:
    """``[1,2,3,4,5,7,9,10,11,12]`` -> ``"1:5,7,9:12"``; order kept when ``sort`` is False
    (COPYUID pairs source and destination UIDs by position, RFC 4315 3)."""
    return ",".join(_range_text(a, b) for a, b in _runs(numbers, sort=sort))


def _runs(numbers: Iterable[int], *, sort: bool) -> list[tuple[int, int]]:
    seq = sorted(set(numbers)) if sort else list(numbers)
    runs: list[tuple[int, int]] = []
    for n in seq:
        if n < 1 or n > MAX_NUMBER:
            raise SequenceSetError(f"{n} is not a valid message number")
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _range_text(a: int, b: int) -> str:
    left = "*" if a == STAR else str(a)
    if a == b:
        return left
    return left + ":" + ("*" if b == STAR else str(b))


def _number(text: str) -> int:
    if text == "*":
        return STAR
    if len(text) > 10 or int(text) > MAX_NUMBER:
        raise SequenceSetError(f"{text[:20]} is larger than 4294967295")
    return int(text)

"""Comparators (RFC 4790, RFC 5051) and match types (RFC 5228 2.7, RFC 5231 relational).

`:matches` uses no regex and never backtracks more than one "*": the pattern is cut at its
stars into segments that are found left to right (the first one anchored at the start, the last
at the end), so a match costs at most O(len(value) * len(pattern)) comparisons. The captures
follow RFC 5229 3.2: each "*" takes as little as it can, left to right; "?" captures its char.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable

COMPARATORS = frozenset({"i;octet", "i;ascii-casemap", "i;unicode-casemap", "i;ascii-numeric"})
RELATIONS = frozenset({"gt", "ge", "lt", "le", "eq", "ne"})

MatchCost = Callable[[int], None]  # charged with the work done, to bound a script's CPU


def _ascii_fold(s: str) -> str:
    return s.lower() if s.isascii() else "".join(c.lower() if c.isascii() else c for c in s)


def _unicode_fold(s: str) -> str:
    # RFC 5051 2: titlecase each character, then decompose (NFKD); we fold to lower case after
    # titlecasing so that e.g. "ß" and "SS" and "ss" compare equal, as Dovecot does.
    return unicodedata.normalize("NFKD", "".join(c.title() for c in s)).casefold()


def fold(comparator: str, s: str) -> str:
    if comparator == "i;ascii-casemap":
        return _ascii_fold(s)
    if comparator == "i;unicode-casemap":
        return _unicode_fold(s)
    return s


def _numeric(s: str) -> int | None:
    """RFC 4790 9.1: i;ascii-numeric reads the leading digits; none means "positive infinity"."""
    n = 0
    while n < len(s) and "0" <= s[n] <= "9":
        n += 1
    return int(s[:n]) if n else None


def relation(comparator: str, rel: str, value: str, key: str) -> bool:
    """RFC 5231 4: `value` REL `key` under the comparator's ordering."""
    if comparator == "i;ascii-numeric":
        a, b = _numeric(value), _numeric(key)
        # None (not a number) sorts after every number and equals itself.
        ka = (1, 0) if a is None else (0, a)
        kb = (1, 0) if b is None else (0, b)
        c = (ka > kb) - (ka < kb)
    else:
        fa, fb = fold(comparator, value), fold(comparator, key)
        if comparator == "i;octet":
            ea, eb = fa.encode("utf-8", "surrogateescape"), fb.encode("utf-8", "surrogateescape")
            c = (ea > eb) - (ea < eb)
        else:
            c = (fa > fb) - (fa < fb)
    return {
        "gt": c > 0,
        "ge": c >= 0,
        "lt": c < 0,
        "le": c <= 0,
        "eq": c == 0,
        "ne": c != 0,
    }[rel]


# ---- :matches ----------------------------------------------------------------------------------

_STAR = object()
_ONE = object()


def compile_glob(pattern: str) -> list[object]:
    """The pattern as a list of characters, _STAR and _ONE (RFC 5228 2.7.1: "\\" quotes)."""
    out: list[object] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(pattern[i + 1])
            i += 2
            continue
        if c == "*":
            out.append(_STAR)  # even "**": each "*" is a match variable (RFC 5229 3.2)
        elif c == "?":
            out.append(_ONE)
        else:
            out.append(c)
        i += 1
    return out


def _seg_at(seg: list[object], value: str, pos: int, eq: Callable[[str, str], bool]) -> bool:
    if pos + len(seg) > len(value):
        return False
    for k, p in enumerate(seg):
        if p is _ONE:
            continue
        assert isinstance(p, str)
        if not eq(p, value[pos + k]):
            return False
    return True


@functools.lru_cache(maxsize=4096)
def _segments(comparator: str, pattern: str) -> tuple[tuple[tuple[object, ...], ...], bool]:
    """The pattern (folded for the comparator) cut at its stars; and whether it has a "?"."""
    fp = compile_glob(fold(comparator, pattern) if comparator != "i;unicode-casemap" else pattern)
    segs: list[list[object]] = [[]]
    for p in fp:
        if p is _STAR:
            segs.append([])
        else:
            segs[-1].append(p)
    return tuple(tuple(seg) for seg in segs), any(p is _ONE for p in fp)


def _eq_unicode(p: str, v: str) -> bool:
    return _unicode_fold(p) == _unicode_fold(v)


def _eq_ascii(p: str, v: str) -> bool:
    return p == v or _ascii_fold(v) == p


def _eq_octet(p: str, v: str) -> bool:
    return p == v


def _fast_glob(segs: tuple[tuple[object, ...], ...], value: str, folded: str) -> list[str] | None:
    """Stars only (no "?"), a length-preserving comparator: str.find on the folded value."""
    words = ["".join(s) for s in segs]  # type: ignore[arg-type]
    first, last = words[0], words[-1]
    n = len(folded)
    if len(words) == 1:
        return [] if folded == first else None
    if not folded.startswith(first):
        return None
    pos = len(first)
    tail = n - len(last)
    caps: list[str] = []
    for w in words[1:-1]:
        found = folded.find(w, pos, tail)
        if found < 0:
            return None
        caps.append(value[pos:found])
        pos = found + len(w)
    if tail < pos or not folded.endswith(last):
        return None
    caps.append(value[pos:tail])
    return caps


def glob_match(
    comparator: str, pattern: str, value: str, cost: MatchCost | None = None
) -> list[str] | None:
    """None if `value` does not match; else the match variables ${1}.. (one per "*" and "?")."""
    segs_t, has_one = _segments(comparator, pattern)
    if cost is not None:
        cost(len(value) * max(1, sum(len(x) for x in segs_t) + len(segs_t)))
    if not has_one and comparator in ("i;octet", "i;ascii-casemap"):
        return _fast_glob(segs_t, value, fold(comparator, value))
    eq = {"i;unicode-casemap": _eq_unicode, "i;ascii-casemap": _eq_ascii}.get(comparator, _eq_octet)
    segs = [list(x) for x in segs_t]
    n = len(value)
    first, last = segs[0], segs[-1]
    if len(segs) == 1:
        if len(first) != n or not _seg_at(first, value, 0, eq):
            return None
        return [value[k] for k, p in enumerate(first) if p is _ONE]
    if not _seg_at(first, value, 0, eq):
        return None
    pos = len(first)
    positions: list[int] = []
    for seg in segs[1:-1]:
        # the leftmost place where this segment fits: the star before it takes the least
        limit = n - len(last) - len(seg)
        found = -1
        while pos <= limit:
            if _seg_at(seg, value, pos, eq):
                found = pos
                break
            pos += 1
        if found < 0:
            return None
        positions.append(found)
        pos = found + len(seg)
    tail = n - len(last)
    if tail < pos or not _seg_at(last, value, tail, eq):
        return None
    # Captures, in pattern order.
    caps: list[str] = [value[k] for k, p in enumerate(first) if p is _ONE]
    cur = len(first)
    for seg, at in zip(segs[1:-1], positions, strict=True):
        caps.append(value[cur:at])
        caps.extend(value[at + k] for k, p in enumerate(seg) if p is _ONE)
        cur = at + len(seg)
    caps.append(value[cur:tail])
    caps.extend(value[tail + k] for k, p in enumerate(last) if p is _ONE)
    return caps


def match(
    comparator: str,
    match_type: str,
    value: str,
    key: str,
    cost: MatchCost | None = None,
) -> list[str] | None:
    """Compare one value with one key. None: no match; else the match variables (only :matches
    has any; [] otherwise). `match_type` is "is", "contains" or "matches"."""
    if cost is not None:
        cost(len(value) + len(key))
    if match_type == "matches":
        return glob_match(comparator, key, value, cost)
    if comparator == "i;ascii-numeric":
        if match_type != "is":
            raise ValueError("i;ascii-numeric supports only :is and relational matches")
        return [] if relation(comparator, "eq", value, key) else None
    fv, fk = fold(comparator, value), fold(comparator, key)
    if match_type == "is":
        return [] if fv == fk else None
    if match_type == "contains":
        return [] if fk in fv else None
    raise ValueError(f"unknown match type {match_type}")

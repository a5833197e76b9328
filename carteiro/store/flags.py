"""Message flags: validation, a compact (bitmask, keywords) encoding and Maildir info letters.

System flags are canonicalised (RFC 3501 2.3.2); \\Recent is session state and never stored.
Decoded flag sets are cached so 100,000 messages share a handful of frozensets.
"""

from __future__ import annotations

from collections.abc import Iterable

from carteiro.store.api import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN, FlagOp, StoreError

BITS: dict[str, int] = {SEEN: 1, ANSWERED: 2, FLAGGED: 4, DELETED: 8, DRAFT: 16}
_CANONICAL = {name.lower(): name for name in BITS}
RECENT = "\\Recent"
# RFC 3501 9: atom-specials, which a keyword (an atom) cannot contain
_ATOM_SPECIALS = frozenset('(){ %*"\\]')
MAX_KEYWORD_OCTETS = 100

# Maildir info letters (maildir(5), Maildir++): P (passed) has no IMAP flag; keywords use a-z.
MAILDIR_LETTERS: dict[str, str] = {DRAFT: "D", FLAGGED: "F", ANSWERED: "R", SEEN: "S", DELETED: "T"}
_LETTER_FLAGS = {v: k for k, v in MAILDIR_LETTERS.items()}


class InvalidFlag(StoreError):
    """A flag that is neither a system flag nor a valid keyword atom."""


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """Canonical flag names; drops \\Recent; raises InvalidFlag for anything else unusable."""
    out: set[str] = set()
    for flag in flags:
        if not isinstance(flag, str) or not flag:
            raise InvalidFlag("empty flag")
        if flag.startswith("\\"):
            lowered = flag.lower()
            if lowered == RECENT.lower():
                continue
            canonical = _CANONICAL.get(lowered)
            if canonical is None:
                raise InvalidFlag(f"unknown system flag {flag!r}")
            out.add(canonical)
            continue
        if len(flag) > MAX_KEYWORD_OCTETS:
            raise InvalidFlag("keyword is too long")
        for ch in flag:
            if not ("\x21" <= ch <= "\x7e") or ch in _ATOM_SPECIALS:
                raise InvalidFlag(f"keyword {flag!r} is not an atom")
        out.add(flag)
    return frozenset(out)


def apply_op(current: frozenset[str], op: FlagOp, flags: frozenset[str]) -> frozenset[str]:
    if op is FlagOp.ADD:
        return current | flags
    if op is FlagOp.REMOVE:
        return current - flags
    return flags


class FlagCodec:
    """frozenset <-> (system-flag bitmask, space-separated sorted keywords), with a decode cache."""

    def __init__(self) -> None:
        self._decoded: dict[tuple[int, str], frozenset[str]] = {}

    @staticmethod
    def encode(flags: frozenset[str]) -> tuple[int, str]:
        mask = 0
        keywords: list[str] = []
        for flag in flags:
            bit = BITS.get(flag)
            if bit is None:
                keywords.append(flag)
            else:
                mask |= bit
        return mask, " ".join(sorted(keywords))

    def decode(self, mask: int, keywords: str) -> frozenset[str]:
        key = (mask, keywords)
        cached = self._decoded.get(key)
        if cached is None:
            names = {name for name, bit in BITS.items() if mask & bit}
            if keywords:
                names.update(keywords.split(" "))
            cached = frozenset(names)
            if len(self._decoded) < 65536:
                self._decoded[key] = cached
        return cached


def maildir_info(flags: frozenset[str], keyword_letters: dict[str, str]) -> str:
    """The ":2," info letters for a file name, ASCII-sorted as maildir(5) requires."""
    letters = [MAILDIR_LETTERS[f] for f in flags if f in MAILDIR_LETTERS]
    letters.extend(keyword_letters[f] for f in flags if f in keyword_letters)
    return "".join(sorted(letters))


def flags_from_info(info: str, letter_keywords: dict[str, str]) -> frozenset[str]:
    out = {_LETTER_FLAGS[ch] for ch in info if ch in _LETTER_FLAGS}
    out.update(letter_keywords[ch] for ch in info if ch in letter_keywords)
    return frozenset(out)

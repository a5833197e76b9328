"""LIST / LSUB mailbox patterns (RFC 9051 6.3.9): ``*`` matches anything, ``%`` anything but the
hierarchy separator.

Matching never backtracks: a pattern is simulated as a set of states (a bit set over pattern
positions), so one match costs O(len(name) * len(pattern) / word size) whatever the client sends.
A translation to a backtracking regex (``.*`` per ``*``) is exponential in the number of
wildcards: ``LIST "" "*%*%*%...x"`` took one CPU for minutes and stalled every session of the
process.
"""

from __future__ import annotations

import re
from typing import Final

from carteiro.proto.imap.utf7 import UndecodableName

SEPARATOR: Final = "/"
INBOX: Final = "INBOX"
_RUN: Final = re.compile(r"[*%]{2,}")


def collapse_wildcards(pattern: str) -> str:
    """A run of wildcards is one wildcard: ``*`` if the run holds a ``*``, else ``%``. The same
    names match; the pattern is just shorter. An UndecodableName matches nothing and is kept."""
    if isinstance(pattern, UndecodableName):
        return pattern
    return _RUN.sub(lambda m: "*" if "*" in m.group() else "%", pattern)


class MailboxPattern:
    """A compiled pattern; ``fullmatch(name)`` is true when the whole name matches. "INBOX" as the
    first level matches case-insensitively (names carry it as "INBOX")."""

    __slots__ = ("_any", "_final", "_literal", "_no_sep", "_sep", "pattern")

    def __init__(self, pattern: str, separator: str = SEPARATOR) -> None:
        head, sep, rest = pattern.partition(separator)
        if head.upper() == INBOX:
            pattern = INBOX + sep + rest
        pattern = collapse_wildcards(pattern)
        self.pattern = pattern
        literal: dict[str, int] = {}
        any_mask = no_sep = 0
        for i, ch in enumerate(pattern):
            bit = 1 << i
            if ch == "*":
                any_mask |= bit
            elif ch == "%":
                no_sep |= bit
            else:
                literal[ch] = literal.get(ch, 0) | bit
        self._literal = literal
        self._any = any_mask
        self._no_sep = no_sep
        self._final = 1 << len(pattern)
        self._sep = separator

    def _close(self, states: int) -> int:
        # a wildcard may match nothing: state i (before a wildcard) also stands for i + 1; runs
        # are collapsed, so one step is the whole closure
        return states | ((states & (self._any | self._no_sep)) << 1)

    def fullmatch(self, name: str) -> bool:
        states = self._close(1)
        literal, any_mask, no_sep, sep = self._literal, self._any, self._no_sep, self._sep
        for ch in name:
            stay = states & any_mask if ch == sep else states & (any_mask | no_sep)
            states = stay | ((states & literal.get(ch, 0)) << 1)
            if not states:
                return False
            states = states | ((states & (any_mask | no_sep)) << 1)
        return bool(states & self._final)

    def __repr__(self) -> str:
        return f"MailboxPattern({self.pattern!r})"


def compile_pattern(pattern: str, separator: str = SEPARATOR) -> MailboxPattern:
    return MailboxPattern(pattern, separator)

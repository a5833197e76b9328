"""LIST / LSUB patterns from a hostile client: wildcard runs must not make matching explode."""

from __future__ import annotations

import random
import re
import time

import pytest

from carteiro.proto.imap.commands import List, Lsub
from carteiro.proto.imap.parser import parse_wire
from carteiro.proto.imap.patterns import collapse_wildcards, compile_pattern


def reference_regex(pattern: str) -> re.Pattern[str]:
    """The obvious translation (exponential on many wildcards): the semantics to keep."""
    head, sep, rest = pattern.partition("/")
    if head.upper() == "INBOX":
        pattern = "INBOX" + sep + rest
    out = []
    for ch in pattern:
        out.append(".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def test_matcher_agrees_with_the_regex_translation() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        pattern = "".join(rng.choice("ab/*%") for _ in range(rng.randint(0, 7)))
        name = "".join(rng.choice("ab/") for _ in range(rng.randint(0, 8)))
        expected = reference_regex(pattern).fullmatch(name) is not None
        assert compile_pattern(pattern).fullmatch(name) is expected, (pattern, name)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("inbox", "INBOX", True),
        ("Inbox/%", "INBOX/Sub", True),
        ("INBOX*", "INBOXes", True),
        ("%", "a/b", False),
        ("*", "a/b", True),
        ("a/%/c", "a/b/c", True),
        ("", "", True),
        ("", "a", False),
    ],
)
def test_matcher_cases(pattern: str, name: str, expected: bool) -> None:
    assert compile_pattern(pattern).fullmatch(name) is expected


@pytest.mark.parametrize(
    "pattern",
    ["*%" * 30000 + "x", "*a" * 3000 + "*b", "%a" * 3000 + "%b", "*a*a*a*a*a*a*a*b"],
)
def test_pathological_patterns_are_fast(pattern: str) -> None:
    m = compile_pattern(pattern)
    t0 = time.monotonic()
    for name in ("a" * 250, "a/" * 120, "INBOX", "a" * 1000):
        assert not m.fullmatch(name)
    assert time.monotonic() - t0 < 2.0


def test_collapse_wildcards() -> None:
    assert collapse_wildcards("a**b%%c*%d%*") == "a*b%c*d*"
    assert collapse_wildcards("*%" * 1000 + "x") == "*x"


def test_parser_collapses_list_and_lsub_patterns() -> None:
    req = parse_wire(b'a LIST "" ("*%*%*%x" "%%%")\r\n')
    assert isinstance(req, List)
    assert req.patterns == ("*x", "%")
    req2 = parse_wire(b'a LSUB "a**" "%*%"\r\n')
    assert isinstance(req2, Lsub)
    assert (req2.reference, req2.pattern) == ("a*", "*")

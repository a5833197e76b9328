"""Runs tests/protocol/imap_commands.txt: RFC example commands through receiver + parser."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from carteiro.proto.imap import commands
from carteiro.proto.imap.parser import ParseError, parse_wire

DATA = Path(__file__).parents[2] / "protocol" / "imap_commands.txt"


@dataclass
class Case:
    line: int
    wire: bytes
    expect: str


def load() -> list[Case]:
    cases: list[Case] = []
    lines: list[str] = []
    start = 0
    for number, raw in enumerate(DATA.read_text(encoding="utf-8").splitlines(), 1):
        if raw.startswith("C:"):
            if not lines:
                start = number
            lines.append(raw[3:] if raw.startswith("C: ") else raw[2:])
        elif raw.startswith("=> "):
            assert lines, f"line {number}: => without C:"
            cases.append(
                Case(start, ("\r\n".join(lines) + "\r\n").encode("utf-8"), raw[3:].strip())
            )
            lines = []
    assert not lines, "C: lines without =>"
    return cases


CASES = load()


@pytest.mark.parametrize("case", CASES, ids=[f"line{c.line}" for c in CASES])
def test_rfc_example(case: Case) -> None:
    result = parse_wire(case.wire)
    kind, _, words = case.expect.partition(" ")
    if kind in ("BAD", "NO"):
        assert isinstance(result, ParseError), result
        assert result.status == kind
        assert words.lower() in result.reason.lower(), result.reason
    else:
        assert type(result) is getattr(commands, kind), result


def test_the_file_has_many_cases() -> None:
    assert len(CASES) > 90

"""A corpus of scripts, messages and the actions expected (tests/data/sieve/NAME.{sieve,eml,
expected}). An .expected file may start with "from:" / "to:" lines giving the envelope."""

from __future__ import annotations

from pathlib import Path

import pytest
from sievetest import actions

CORPUS = Path(__file__).parents[2] / "data" / "sieve"
CASES = sorted(p.stem for p in CORPUS.glob("*.sieve"))


@pytest.mark.parametrize("name", CASES)
def test_corpus(name: str) -> None:
    script = (CORPUS / f"{name}.sieve").read_text()
    message = (CORPUS / f"{name}.eml").read_bytes()
    env = {"mail_from": "sender@example.org", "rcpt_to": "alice@example.test"}
    expected: list[str] = []
    for line in (CORPUS / f"{name}.expected").read_text().splitlines():
        if line.startswith("from: "):
            env["mail_from"] = line[6:]
        elif line.startswith("to: "):
            env["rcpt_to"] = line[4:]
        else:
            expected.append(line.replace("\\r\\n", "\r\n"))
    assert actions(script, message, **env) == expected


def test_corpus_is_not_empty() -> None:
    assert len(CASES) >= 7

"""Command-line parsing (RFC 1939 3, 7; RFC 2449 3): typed commands or an error with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carteiro.proto.pop3.commands import OUT_OF_RANGE, Command, CommandError, _parse, parse_command


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"STAT", Command("STAT")),
        (b"stat", Command("STAT")),
        (b"LIST", Command("LIST")),
        (b"LIST 2", Command("LIST", ("2",), msg=2)),
        (b"RETR 1", Command("RETR", ("1",), msg=1)),
        (b"TOP 1 10", Command("TOP", ("1", "10"), msg=1, lines=10)),
        (b"TOP 1 0", Command("TOP", ("1", "0"), msg=1, lines=0)),
        (b"UIDL", Command("UIDL")),
        (b"USER alice@example.test", Command("USER", ("alice@example.test",))),
        (b"PASS  two  spaces ", Command("PASS", (" two  spaces ",))),
        (b"AUTH", Command("AUTH")),
        (b"AUTH PLAIN", Command("AUTH", ("PLAIN",))),
        (b"AUTH PLAIN AGFAYg==", Command("AUTH", ("PLAIN", "AGFAYg=="))),
        (b"QUIT ", Command("QUIT")),
        (
            b"RETR 99999999999999999999",
            Command("RETR", ("99999999999999999999",), msg=OUT_OF_RANGE),
        ),
        (b"RETR 0", Command("RETR", ("0",), msg=0)),
    ],
)
def test_valid(line: bytes, expected: Command) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "Empty command line"),
        (b"FOO", "Unknown command: FOO"),
        (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb", "APOP is not supported"),
        (b"RETR", "RETR needs one message number"),
        (b"RETR x", "RETR: x is not a message number"),
        (b"RETR -1", "RETR: -1 is not a message number"),
        (b"RETR 1 2", "RETR needs one message number"),
        (b"LIST 1 2", "LIST takes at most one message number"),
        (b"TOP 1", "TOP needs a message number and a number of lines"),
        (b"TOP 1 -1", "TOP: -1 is not a number of lines"),
        (b"STAT 1", "STAT takes no arguments"),
        (b"USER", "USER needs a user name"),
        (b"PASS", "PASS needs a password"),
        (b"NOOP\x00", "Control characters"),
        (b"RETR \xd9\xa1", "is not a message number"),  # a non-ASCII digit
        (b"X" * 300, "Unknown command: XXXXXXXXXXXXXXXXXXXX..."),
    ],
)
def test_invalid(line: bytes, reason: str) -> None:
    result = parse_command(line)
    assert isinstance(result, CommandError)
    assert reason in result.reason


@given(st.binary(max_size=300))
def test_never_raises_and_errors_are_printable(line: bytes) -> None:
    result = parse_command(line.replace(b"\n", b""))
    if isinstance(result, CommandError):
        assert result.reason and result.reason.isprintable()


_WORDS = st.sampled_from(
    [
        "RETR",
        "retr",
        "Retr",
        "rEtR",
        "TOP",
        "top",
        "Top",
        "DELE",
        "dele",
        "LIST",
        "UIDL",
        "uidl",
        "NOOP",
        "STAT",
    ]
)
_ARGS = st.text(alphabet="0123456789 \t-+x\u0661", max_size=30)


@given(_WORDS, st.sampled_from([" ", "  ", "", "\t"]), _ARGS)
def test_the_quick_path_parses_as_the_general_one(word: str, sep: str, args: str) -> None:
    """parse_command takes a short cut for "RETR 12", "TOP 12 0" and the like: whatever the
    line, its answer is the general parser's."""
    line = (word + sep + args).encode()
    assert parse_command(line) == _parse(line)
    for n in ("0", "7", "000012", "9" * 12, "9" * 13):
        line = f"{word} {n}".encode()
        assert parse_command(line) == _parse(line)
        line = f"{word} {n} {n}".encode()
        assert parse_command(line) == _parse(line)

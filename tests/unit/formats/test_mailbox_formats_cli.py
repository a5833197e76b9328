"""The CLI side of mailbox import/export: the progress bar and the argument surface."""

from __future__ import annotations

import io

from carteiro.cli import build_parser
from carteiro.cli_mailbox import FORMATS, INBOX, ProgressBar
from carteiro.formats.message import INBOX as FORMATS_INBOX
from carteiro.formats.message import Format


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_names_match() -> None:
    assert [f.value for f in Format] == FORMATS
    assert INBOX == FORMATS_INBOX


def test_no_bar_when_not_a_terminal() -> None:
    out = io.StringIO()
    clock = FakeClock()
    bar = ProgressBar("importing x", stream=out, clock=clock)
    clock.now += 60
    bar(5, 10)
    bar.clear()
    assert out.getvalue() == ""


def test_bar_on_a_terminal_after_the_delay() -> None:
    out = Terminal()
    clock = FakeClock()
    bar = ProgressBar("importing x", stream=out, clock=clock, delay=0.5)
    bar(1, 10)
    assert out.getvalue() == ""  # short runs never show a bar
    clock.now += 10
    bar(5, 10)
    line = "importing x [###############...............] 5/10  50%  0.5/s  ETA 0:00:10"
    assert out.getvalue() == "\r" + line
    clock.now += 0.01
    bar(6, 10)  # redrawn at most every 0.1 s
    assert out.getvalue() == "\r" + line
    clock.now += 1
    bar(10, 10)
    full = "importing x [" + "#" * 30 + "] 10/10 100%"
    assert out.getvalue().endswith("\r" + full.ljust(len(line)))  # blanks over the longer line
    bar.clear()
    assert out.getvalue().endswith("\r" + " " * len(full) + "\r")


def test_parser_accepts_the_documented_usage() -> None:
    p = build_parser()
    a = p.parse_args(
        ["mailbox", "import", "--format", "mbox", "FILE", "alice@example.test", "--folder", "F"]
    )
    assert (a.action, a.format, a.source, a.account, a.folder, a.all) == (
        "import",
        "mbox",
        "FILE",
        "alice@example.test",
        "F",
        False,
    )
    e = p.parse_args(["mailbox", "export", "--format", "mh", "alice@example.test", "DIR"])
    assert (e.action, e.format, e.account, e.dest, e.folder) == (
        "export",
        "mh",
        "alice@example.test",
        "DIR",
        "INBOX",
    )
    s = p.parse_args(["store", "check", "--account", "alice@example.test", "--data", "/d"])
    assert (s.action, s.account, s.data) == ("check", "alice@example.test", "/d")
    r = p.parse_args(["store", "reindex"])
    assert r.action == "reindex" and r.account is None

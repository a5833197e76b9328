"""`python -m carteiro mailbox import|export` and `store check|reindex` against a real data dir.

Each format's export is imported back and exported again as mbox: the two mbox files must match.
"""

from __future__ import annotations

import mailbox
import poplib
import re
import ssl
from pathlib import Path

import pytest

from carteiro.testing.server import ServerProcess, run_cli

ACCOUNT = "alice@example.test"
PASSWORD = "alice-password"

MESSAGES = [
    b"From: =?utf-8?q?Jos=C3=A9?= <jose@example.test>\nTo: alice@example.test\n"
    b"Subject: =?utf-8?b?T2zDoSwgbXVuZG8=?=\nDate: Tue, 14 Nov 2023 10:00:00 +0100\n"
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
    b"--XX\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
    b"Ol\xc3\xa1!\nFrom the desk of Jos\xc3\xa9\n>From quoted\n"
    b"--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    b"AAECAwQFBgcICQ==\n--XX--\n",
    "From: Jürgen <j@example.test>\nTo: alice@example.test\nSubject: Grüße\n"
    "Date: Wed, 15 Nov 2023 08:30:00 +0000\n\nSchöne Grüße\n".encode(),
    b"From: z@example.test\nSubject: plain\nDate: Thu, 16 Nov 2023 08:30:00 +0000\n\nbye\n",
]
GARBAGE = b"this line is not mbox\n"


def mbox_bytes() -> bytes:
    """An mboxrd file: body lines matching ^>*From get one more ">"."""
    out = GARBAGE
    for i, m in enumerate(MESSAGES):
        status = b"Status: RO\nX-Status: F\n" if i == 0 else b""
        m = re.sub(rb"(?m)^(>*From )", rb">\1", m)
        out += (
            f"From sender@example.test Sat Jan  {i + 3} 01:05:34 2021\n".encode()
            + status
            + m
            + b"\n"
        )
    return out


@pytest.fixture
def server(tmp_path: Path) -> ServerProcess:
    srv = ServerProcess(tmp_path, users={ACCOUNT: PASSWORD}, services=["pop3"])
    srv.init()
    return srv


def cli(srv: ServerProcess, *args: str, code: int = 0) -> tuple[str, str]:
    r = run_cli(srv.data, *args, check=False)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    return r.stdout, r.stderr


def test_import_reports_and_skips_garbage(server: ServerProcess, tmp_path: Path) -> None:
    src = tmp_path / "in.mbox"
    src.write_bytes(mbox_bytes())
    out, err = cli(
        server,
        "mailbox",
        "import",
        "--format",
        "mbox",
        str(src),
        ACCOUNT,
        "--folder",
        "Old",
        code=65,
    )
    assert out.strip() == f"imported 3 messages from mbox {src} into {ACCOUNT} Old; skipped 1"
    assert err.strip() == (
        f"carteiro: skipped {len(GARBAGE)} octets at byte offset 0: not part of any message (not mbox format)"
    )
    assert "\r" not in err  # no progress bar when stderr is not a terminal
    out, _ = cli(server, "store", "check")
    assert out.strip() == "store check: the files and the index agree"


def test_round_trip_through_cli(server: ServerProcess, tmp_path: Path) -> None:
    src = tmp_path / "in.mbox"
    src.write_bytes(mbox_bytes()[len(GARBAGE) :])
    cli(server, "mailbox", "import", str(src), ACCOUNT, "--folder", "Orig")  # format detected
    orig = tmp_path / "orig.mbox"
    cli(server, "mailbox", "export", "--format", "mbox", ACCOUNT, str(orig), "--folder", "Orig")
    strip_dates = re.compile(rb"^From (\S+) .*$", re.M)
    for fmt in ("mbox", "maildir", "mh", "babyl", "mmdf"):
        dest = tmp_path / f"export.{fmt}"
        out, err = cli(
            server, "mailbox", "export", "--format", fmt, ACCOUNT, str(dest), "--folder", "Orig"
        )
        assert out.startswith(f"exported 3 messages from {ACCOUNT} Orig to {fmt} {dest}; skipped 0")
        if fmt == "babyl":
            assert "has no place for \\Flagged (1 message)" in err
        back = f"Back-{fmt}"
        out, _ = cli(
            server, "mailbox", "import", "--format", fmt, str(dest), ACCOUNT, "--folder", back
        )
        assert "imported 3 messages" in out and "skipped 0" in out
        again = tmp_path / f"{back}.mbox"
        cli(server, "mailbox", "export", "--format", "mbox", ACCOUNT, str(again), "--folder", back)
        expected, got = orig.read_bytes(), again.read_bytes()
        if fmt == "babyl":  # no INTERNALDATE (it comes back from the Date field), no \Flagged
            expected = strip_dates.sub(rb"From \1", expected).replace(b"X-Status: F\n", b"")
            got = strip_dates.sub(rb"From \1", got)
        assert got == expected, fmt
    # Python's own reader agrees with what we wrote
    assert [m.get_from().split()[0] for m in mailbox.mbox(str(orig))] == [
        "jose@example.test",
        "j@example.test",
        "z@example.test",
    ]
    assert [set(m.get_flags()) for m in mailbox.mbox(str(orig))] == [set("ROF"), {"O"}, {"O"}]


def test_export_all_and_store_tools(server: ServerProcess, tmp_path: Path) -> None:
    src = tmp_path / "in.mbox"
    src.write_bytes(mbox_bytes()[len(GARBAGE) :])
    cli(server, "mailbox", "import", str(src), ACCOUNT, "--folder", "Archive/2021")
    cli(server, "mailbox", "import", str(src), ACCOUNT)
    out, _ = cli(
        server, "mailbox", "export", "--format", "maildir", "--all", ACCOUNT, str(tmp_path / "md")
    )
    assert (
        out.splitlines()[0]
        == f"exported 6 messages from 7 folders of {ACCOUNT} to maildir {tmp_path / 'md'}; skipped 0"
    )
    assert (tmp_path / "md" / ".Archive.2021" / "cur").is_dir()
    out, _ = cli(
        server, "mailbox", "import", "--all", str(tmp_path / "md"), ACCOUNT, "--folder", "Copy"
    )
    assert (
        out.splitlines()[0]
        == f"imported 6 messages from maildir {tmp_path / 'md'} into 7 folders of {ACCOUNT}; skipped 0"
    )
    out, _ = cli(server, "store", "reindex")
    assert "1 account, " in out and ", 12 messages" in out
    out, _ = cli(server, "store", "check", "--account", ACCOUNT)
    assert "agree" in out


def test_errors_are_one_line(server: ServerProcess, tmp_path: Path) -> None:
    _, err = cli(server, "mailbox", "import", str(tmp_path / "nope"), ACCOUNT, code=66)
    assert err.strip() == f"carteiro: {tmp_path / 'nope'} does not exist"
    _, err = cli(
        server, "mailbox", "import", "--format", "mbox", str(tmp_path), "bob@example.test", code=67
    )
    assert err.strip() == "carteiro: no account bob@example.test"
    (tmp_path / "notes.txt").write_text("mine\n")
    _, err = cli(
        server,
        "mailbox",
        "export",
        "--format",
        "mbox",
        ACCOUNT,
        str(tmp_path / "notes.txt"),
        code=73,
    )
    assert "is not a mbox file: not appending to it" in err
    _, err = cli(
        server,
        "mailbox",
        "export",
        "--format",
        "mh",
        ACCOUNT,
        str(tmp_path / "x"),
        "--folder",
        "Nope",
        code=65,
    )
    assert err.strip() == f"carteiro: no mailbox Nope in {ACCOUNT}"


def test_imported_mail_is_served_while_running(server: ServerProcess, tmp_path: Path) -> None:
    """Import into a live server's store: POP3 sees the messages, byte for byte (in CRLF)."""
    server.start()
    try:
        src = tmp_path / "in.mbox"
        src.write_bytes(mbox_bytes()[len(GARBAGE) :])
        cli(server, "mailbox", "import", str(src), ACCOUNT)
        pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
        try:
            pop.stls(ssl._create_unverified_context())  # self-signed test certificate
            pop.user(ACCOUNT)
            pop.pass_(PASSWORD)
            assert pop.stat()[0] == 3
            for i, expected in enumerate(MESSAGES, 1):
                lines = pop.retr(i)[1]
                assert b"\r\n".join(lines) + b"\r\n" == expected.replace(b"\n", b"\r\n")
        finally:
            pop.quit()
    finally:
        server.stop()

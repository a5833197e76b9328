"""Issue 12, Found 5: a session in IDLE hears of what another program did to the selected
mailbox's Maildir (a flag renamed by mutt, a file dropped into new/, a file deleted) without a
command: at once through an inotify watch on the folder, or where there is none, because IDLE
looks at the folder every few seconds (two stat calls)."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import os
import re
import time

import pytest
from imap_harness import (  # noqa: F401  (fixtures)
    IMAPTestServer,
    directory,
    start_server,
    tls_files,
)

from carteiro.servers.imap import idle
from carteiro.store import folder_watch, maildir_sync


async def wait_for(client: object, pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        try:
            line = await client.line(timeout=max(left, 0.01))  # type: ignore[attr-defined]
        except TimeoutError:
            raise AssertionError(f"no line matching {pattern!r}; got {seen}") from None
        if re.fullmatch(pattern, line):
            return line
        seen.append(line)


@pytest.mark.parametrize("start_server", ["sqlite"], indirect=True)
@pytest.mark.parametrize("how", ["polled", "watched"])
async def test_idle_announces_changes_made_in_the_maildir(  # type: ignore[no-untyped-def]
    start_server, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "polled":  # no inotify: IDLE's look every EXTERNAL_CHECK_INTERVAL
        monkeypatch.setattr(idle, "EXTERNAL_CHECK_INTERVAL", 0.1)
        monkeypatch.setattr(folder_watch, "_lib", lambda: None)
    else:  # the watch alone: no poll would come within the test's time
        monkeypatch.setattr(idle, "EXTERNAL_CHECK_INTERVAL", 60.0)
        monkeypatch.setattr(idle, "WATCHED_CHECK_INTERVAL", 60.0)
        monkeypatch.setattr(folder_watch, "SETTLE", 0.3)
    monkeypatch.setattr(maildir_sync, "SETTLE_NS", 200_000_000)
    srv: IMAPTestServer = await start_server()
    for i in range(2):
        await srv.deliver(f"Subject: m{i}\r\n\r\nbody\r\n".encode())
    await srv.store.flush_files()  # type: ignore[attr-defined]
    home = srv.store.data_dir / "mail" / "example.test" / "alice" / "Maildir"  # type: ignore[attr-defined]
    c = await srv.connect(login=True)
    assert (await c.cmd("SELECT INBOX"))[-1].split()[1] == "OK"
    await c.send(b"i1 IDLE\r\n")
    assert (await c.line()).startswith("+ ")

    name = next(n for n in os.listdir(home / "cur") if ",U=1:2," in n)
    os.rename(home / "cur" / name, home / "cur" / (name.rpartition(":2,")[0] + ":2,F"))
    await wait_for(c, r"\* 1 FETCH \((UID 1 )?FLAGS \(\\Flagged( \\Recent)?\)\)")

    (home / "tmp" / "x").write_bytes(b"Subject: dropped\n\nhello\n")
    os.rename(home / "tmp" / "x", home / "new" / "1700000000.M1P1.procmail")
    await wait_for(c, r"\* 3 EXISTS")

    name = next(n for n in os.listdir(home / "cur") if ",U=2:2," in n)
    os.unlink(home / "cur" / name)
    await wait_for(c, r"\* 2 EXPUNGE")  # IDLE may announce expunges (RFC 2177)

    await c.send(b"DONE\r\n")
    await wait_for(c, r"i1 OK .*")
    lines = await c.cmd("FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])")
    text = "\n".join(lines)
    assert lines[-1].split()[1] == "OK", lines
    assert re.search(r"UID 1 FLAGS \(\\Flagged", text)
    assert "UID 3 " in text and "UID 2 " not in text
    crlf = b"Subject: dropped\r\n\r\nhello\r\n"
    assert f"RFC822.SIZE {len(crlf)}" in text

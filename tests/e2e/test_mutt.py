"""mutt (Debian's mutt 2.2) against a real `carteiro serve`: mutt sends through submission
(STARTTLS, AUTH) in batch mode, then reads, flags and deletes over IMAPS in a terminal (tmux), as
a person would; the server's state is then checked with imaplib.

mutt trusts the server's self-signed certificate because it is in mutt's `certificate_file`
(what answering "(a)ccept always" at mutt's prompt writes), so no prompt can hang the test.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carteiro.testing.server import ServerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("mutt-e2e"),
    pytest.mark.skipif(
        shutil.which("mutt") is None or shutil.which("tmux") is None,
        reason="mutt and tmux are not installed (make apt-test)",
    ),
]

USER, PASSWORD = "mutt@example.test", "mutt-password"
FRIEND, FRIEND_PASSWORD = "friend@example.test", "friend-password"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(
        tmp_path_factory.mktemp("mutt"),
        users={USER: PASSWORD, FRIEND: FRIEND_PASSWORD},
        services=("smtp", "submission", "imap", "imaps"),
    ) as s:
        yield s


def muttrc(srv: ServerProcess, home: Path) -> Path:
    """A muttrc for USER: IMAPS for reading, submission with STARTTLS for sending."""
    user = USER.replace("@", "%40")
    rc = home / "muttrc"
    rc.write_text(
        f"""
set certificate_file = "{srv.data / "tls" / "cert.pem"}"
set ssl_verify_host = no
set ssl_force_tls = yes
set ssl_starttls = yes
set folder = "imaps://{user}@127.0.0.1:{srv.ports["imaps"]}/"
set spoolfile = "+INBOX"
set imap_pass = "{PASSWORD}"
set imap_check_subscribed = no
set smtp_url = "smtp://{user}@127.0.0.1:{srv.ports["submission"]}/"
set smtp_pass = "{PASSWORD}"
set from = "{USER}"
set realname = "Mutt User"
set use_from = yes
set record = ""
set postpone = no
set header_cache = ""
set message_cachedir = ""
set delete = yes
set quit = yes
set move = no
set mark_old = no
set confirmappend = no
set wait_key = no
set sort = date-sent
set timeout = 1
set mail_check = 1
"""
    )
    return rc


def imap(srv: ServerProcess, user: str, password: str) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context(cafile=str(srv.data / "tls" / "cert.pem"))
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=ctx)
    m.login(user, password)
    return m


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "TERM": "xterm-256color", "LANG": "C.UTF-8"}


def subjects_and_flags(m: imaplib.IMAP4_SSL, retry_expunged: bool = False) -> dict[str, str]:
    m.select("INBOX")
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    if retry_expunged and typ == "NO":
        # RFC 9051 7.1 EXPUNGEISSUED: a file deleted behind the server, not adopted yet: the
        # session hears the EXPUNGE at its next command
        return {}
    assert typ == "OK"
    out: dict[str, str] = {}
    for item in data:
        if isinstance(item, tuple):
            head = item[0].decode()
            subject = item[1].decode().strip().removeprefix("Subject: ")
            out[subject] = head[head.index("FLAGS (") + 7 : head.index(")", head.index("FLAGS ("))]
    return out


def test_mutt_sends_through_submission_with_starttls_and_auth(
    srv: ServerProcess, tmp_path: Path
) -> None:
    rc = muttrc(srv, tmp_path)
    done = subprocess.run(
        ["mutt", "-n", "-F", str(rc), "-s", "hello from mutt", "--", FRIEND],
        input=b"Sent by mutt in batch mode.\n",
        env=env(tmp_path),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    m = imap(srv, FRIEND, FRIEND_PASSWORD)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if "hello from mutt" in subjects_and_flags(m):
                break
            time.sleep(0.2)
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and isinstance(data[0], tuple)
        raw = data[0][1]
        assert b"Sent by mutt in batch mode." in raw
        assert b"From: Mutt User <mutt@example.test>" in raw
        # the submission server authenticated it: its Received line says so
        assert b"with ESMTPSA" in raw
    finally:
        m.logout()


class Tmux:
    """mutt in a detached tmux session of its own (a private socket), read by capture-pane."""

    def __init__(self, home: Path, command: list[str]) -> None:
        self.socket = str(home / "tmux.sock")
        self.env = env(home)
        self._tmux("new-session", "-d", "-s", "t", "-x", "120", "-y", "40", *command)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=20,
        )
        return done.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not on mutt's screen:\n{screen}")

    def close(self) -> None:
        self._tmux("kill-server")


def test_mutt_reads_flags_and_deletes_over_imaps(srv: ServerProcess, tmp_path: Path) -> None:
    m = imap(srv, USER, PASSWORD)
    try:
        for n, subject in enumerate(("first note", "second note", "third note")):
            msg = (
                f"From: someone@example.org\r\nTo: {USER}\r\nSubject: {subject}\r\n"
                f"Date: Tue, 1 Oct 2024 10:0{n}:00 +0000\r\nMessage-ID: <mutt{n}@example.org>\r\n"
                f"\r\nBody of the {subject}.\r\n"
            ).encode()
            assert m.append("INBOX", None, None, msg)[0] == "OK"
    finally:
        m.logout()

    rc = muttrc(srv, tmp_path)
    tmux = Tmux(tmp_path, ["mutt", "-n", "-F", str(rc)])
    try:
        tmux.wait_for("third note")
        # sorted by date: first note is message 1. Jump to it ("1" Enter), open it (Enter: mutt
        # sets \Seen), back to the index
        tmux.keys("1", "Enter", "Enter")
        tmux.wait_for("Body of the first note.")
        tmux.keys("i")
        tmux.wait_for("third note")
        # flag message 2, delete message 3, then sync the mailbox ($) and quit
        tmux.keys("2", "Enter", "F")
        tmux.keys("3", "Enter", "d")
        time.sleep(0.5)
        tmux.keys("$")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "third note" in tmux.screen():
            time.sleep(0.2)
        tmux.keys("q")
    finally:
        tmux.close()

    m = imap(srv, USER, PASSWORD)
    try:
        state = subjects_and_flags(m)
    finally:
        m.logout()
    assert set(state) == {"first note", "second note"}, state
    assert "\\Seen" in state["first note"] and "\\Flagged" not in state["first note"]
    assert "\\Flagged" in state["second note"] and "\\Seen" not in state["second note"]


def test_mutt_on_the_maildir_and_an_imap_client_see_each_other(
    srv: ServerProcess, tmp_path: Path
) -> None:
    """The classic host user: mutt opens the account's Maildir directly while an IMAP client
    stays connected. What mutt does by renaming (\\Seen) and unlinking (a deletion) is what the
    IMAP client then sees; mutt's screen shows no ^M (LF on disk)."""
    m = imap(srv, FRIEND, FRIEND_PASSWORD)
    try:
        for subject in ("local one", "local two"):
            msg = f"From: a@example.org\r\nSubject: {subject}\r\n\r\nText of {subject}.\r\n"
            assert m.append("INBOX", None, None, msg.encode())[0] == "OK"
        maildir = srv.data / "mail" / "example.test" / "friend" / "Maildir"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(os.listdir(maildir / "cur")) < 3:
            time.sleep(0.1)  # the hello from the first test, and these two
        rc = tmp_path / "muttrc"
        rc.write_text(
            f'set folder = "{tmp_path}"\nset spoolfile = "{maildir}"\n'
            "set mbox_type = Maildir\nset delete = yes\nset quit = yes\nset move = no\n"
            "set mark_old = no\nset wait_key = no\nset sort = mailbox-order\n"
            'set header_cache = ""\nset timeout = 1\n'
        )
        tmux = Tmux(tmp_path, ["mutt", "-n", "-F", str(rc), "-f", str(maildir)])
        try:
            screen = tmux.wait_for("local two")
            assert "^M" not in screen
            lines = [ln for ln in screen.splitlines() if "local one" in ln or "local two" in ln]
            one = next(ln for ln in lines if "local one" in ln).split()[0]
            two = next(ln for ln in lines if "local two" in ln).split()[0]
            tmux.keys(one, "Enter", "Enter")  # read it: mutt renames the file to add S
            tmux.wait_for("Text of local one.")
            assert "^M" not in tmux.screen()
            tmux.keys("i")
            tmux.wait_for("local two")
            tmux.keys(two, "Enter", "d", "$")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "local two" in tmux.screen():
                time.sleep(0.2)
            tmux.keys("q")
        finally:
            tmux.close()
        # the IMAP client (logged in all along) sees both once the server has adopted them
        deadline = time.monotonic() + 20
        state: dict[str, str] = {}
        while time.monotonic() < deadline:
            m.noop()
            state = subjects_and_flags(m, retry_expunged=True)
            if state and "local two" not in state and "\\Seen" in state.get("local one", ""):
                break
            time.sleep(0.3)
        assert "local two" not in state, state
        assert "\\Seen" in state["local one"], state
    finally:
        m.logout()

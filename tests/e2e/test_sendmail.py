"""`carteiro-sendmail` driven by real local mail programs (s-nail, git send-email) with and without
a running server: the maildrop keeps what is submitted while no server runs, the server picks it
up at its start or at once when woken, `-t` takes recipients from the headers and Bcc: never
reaches anyone, and `carteiro mailq` shows what waits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from carteiro.testing.server import ServerProcess, closed_to_others, free_port, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sendmail-e2e")]

ALICE = "alice@example.test"
FRIEND = "friend@remote.test"
SENDMAIL = str(Path(sys.executable).parent / "carteiro-sendmail")


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 OK"


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def make_server(tmp_path: Path, port: int) -> ServerProcess:
    s = ServerProcess(
        tmp_path,
        users={ALICE: "alice-pw"},
        services=("smtp",),
        extra_config=f'[relay]\nsmarthost = "127.0.0.1:{port}"\ntls = "none"\n',
    )
    s.init()
    return s


def env_for(s: ServerProcess, home: Path) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    return {**os.environ, "CARTEIRO_DATA": str(s.data), "HOME": str(home), "MAILRC": "/dev/null"}


def sendmail(
    s: ServerProcess, args: list[str], message: bytes, home: Path
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [SENDMAIL, *args],
        input=message,
        capture_output=True,
        timeout=60,
        env=env_for(s, home),
    )


def snail(
    s: ServerProcess, home: Path, subject: str, body: str, *rcpts: str, bcc: str | None = None
) -> None:
    exe = shutil.which("s-nail")
    if exe is None:
        pytest.skip("s-nail is not installed (make apt-test)")
    args = [exe, "-n", "-S", f"mta={SENDMAIL}", "-S", "sendwait", "-s", subject]
    args += ["-r", ALICE]
    if bcc:
        args += ["-b", bcc]
    r = subprocess.run(
        [*args, *rcpts], input=body.encode(), capture_output=True, timeout=60, env=env_for(s, home)
    )
    assert r.returncode == 0, r.stderr


def git_send_email(s: ServerProcess, tmp_path: Path, subject: str, to: str) -> None:
    if (
        shutil.which("git") is None
        or not Path(
            subprocess.run(["git", "--exec-path"], capture_output=True, text=True).stdout.strip(),
            "git-send-email",
        ).exists()
    ):
        pytest.skip("git send-email is not installed (make apt-test)")
    home = tmp_path / "git-home"
    env = env_for(s, home)
    env.update(GIT_AUTHOR_NAME="Alice", GIT_AUTHOR_EMAIL=ALICE)
    env.update(GIT_COMMITTER_NAME="Alice", GIT_COMMITTER_EMAIL=ALICE)
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True, env=env)
    (repo / "f.txt").write_text(subject + "\n")
    subprocess.run([*git, "add", "f.txt"], check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", subject], check=True, env=env)
    r = subprocess.run(
        [
            *git,
            "send-email",
            "--quiet",
            "--confirm=never",
            f"--smtp-server={SENDMAIL}",
            f"--from=Alice <{ALICE}>",
            f"--to={to}",
            "--suppress-cc=all",
            "-1",
        ],
        capture_output=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 0, r.stderr + r.stdout


def subjects(messages: list[bytes]) -> list[str]:
    out = []
    for m in messages:
        for line in m.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode())
                break
    return out


def test_sendmail_real_clients_without_then_with_a_server(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    got, port = sink
    s = make_server(tmp_path, port)
    home = tmp_path / "home"

    # No server: everything waits in the maildrop, and mailq shows it.
    snail(s, home, "snail offline", "hello from s-nail\n", ALICE, bcc=FRIEND)
    git_send_email(s, tmp_path, "git offline", ALICE)
    r = sendmail(
        s,
        ["-t", "-i", "-F", "Alice Example"],
        b"To: alice\nBcc: friend@remote.test\nSubject: dash t\n\nline\n.\nmore\n",
        home,
    )
    assert r.returncode == 0, r.stderr
    q = run_cli(s.data, "mailq").stdout
    assert q.count("+ ") == 3 and FRIEND in q and "Request" in q, q

    with s:
        wait_for(lambda: len(s.stored(ALICE)) == 3, what="the maildrop to be delivered at start")
        wait_for(lambda: len(got.got) == 2, what="the Bcc copies to be sent")
        msgs = s.stored(ALICE)
        assert sorted(subjects(msgs)) == sorted(["snail offline", "dash t", "[PATCH] git offline"])
        for m in msgs:
            assert b"\r\nBcc:" not in m and not m.startswith(b"Bcc:")
            assert b"Received: by mail.example.test (carteiro, from userid" in m
        dash_t = next(m for m in msgs if b"Subject: dash t" in m)
        assert b"\r\n\r\nline\r\n.\r\nmore\r\n" in dash_t  # -i: the lone dot is content
        assert b"From: Alice Example <" in dash_t
        assert all(rcpts == [FRIEND] for _, rcpts, _ in got.got)
        assert all(b"Bcc:" not in data for _, _, data in got.got)
        assert run_cli(s.data, "mailq").stdout.strip() == "Mail queue is empty"

        # Server running: woken at once, no poll interval to wait for.
        snail(s, home, "snail online", "hello again\n", ALICE)
        git_send_email(s, tmp_path, "git online", ALICE)
        r = sendmail(s, ["-v", ALICE], b"Subject: verbose\n\nbody\n", home)
        assert r.returncode == 0 and b"queued as" in r.stderr, r.stderr
        wait_for(lambda: len(s.stored(ALICE)) == 6, timeout=20, what="online submissions delivered")
        assert {"snail online", "[PATCH] git online", "verbose"} <= set(subjects(s.stored(ALICE)))


def test_sendmail_exit_codes_and_modes(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    _, port = sink
    s = make_server(tmp_path, port)
    home = tmp_path / "home"
    assert sendmail(s, [], b"Subject: x\n\n", home).returncode == 64  # no recipients
    assert sendmail(s, ["-Z", ALICE], b"", home).returncode == 64  # unknown option
    assert sendmail(s, ["bad@@address"], b"Subject: x\n\n", home).returncode == 65
    r = sendmail(s, ["-bv", "alice", "nobody@example.test", FRIEND], b"", home)
    assert r.returncode == 67
    out = r.stdout.decode()
    assert f"{ALICE}... deliverable" in out and "nobody@example.test... User unknown" in out
    assert f"{FRIEND}... deliverable: mailer smtp" in out
    # -bs: SMTP on stdin/stdout
    r = sendmail(
        s,
        ["-bs"],
        b"EHLO me\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
        b"DATA\r\nSubject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n",
        home,
    )
    assert r.returncode == 0
    assert b"250 2.0.0 Ok: queued as" in r.stdout and r.stdout.endswith(b"221 2.0.0 Bye\r\n")
    # -odq: kept for the next queue run, even by a running server
    assert sendmail(s, ["-odq", ALICE], b"Subject: deferred\n\nx\n", home).returncode == 0
    with s:
        wait_for(lambda: len(s.stored(ALICE)) == 1, what="the -bs message")
        assert subjects(s.stored(ALICE)) == ["bs"]
        assert "deferred" not in str(subjects(s.stored(ALICE)))
        assert "+ " in run_cli(s.data, "mailq").stdout
        assert sendmail(s, ["-q"], b"", home).returncode == 0
        wait_for(lambda: len(s.stored(ALICE)) == 2, what="the -odq message after -q")
        # -bp is mailq
        r = sendmail(s, ["-bp"], b"", home)
        assert r.returncode == 0 and r.stdout.strip() == b"Mail queue is empty"


def test_null_client_with_canonical_rewriting(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    """`[relay] null_client = true`: nothing is local, everything (even for our own domain) goes
    to the smarthost, with host.internal addresses rewritten to example.test by [canonical]."""
    got, port = sink
    s = ServerProcess(
        tmp_path,
        domains=("host.internal",),
        hostname="box.host.internal",
        users={"alice@host.internal": "pw"},
        services=("smtp",),
        extra_config=(
            f'[relay]\nnull_client = true\nsmarthost = "127.0.0.1:{port}"\ntls = "none"\n'
            '[canonical]\n"@host.internal" = "@example.test"\n'
        ),
    )
    s.init()
    home = tmp_path / "home"
    with s:
        r = sendmail(
            s,
            ["-t", "-f", "cron@host.internal"],
            b"To: Alice <alice@host.internal>\nSubject: nightly\n\nreport\n",
            home,
        )
        assert r.returncode == 0, r.stderr
        wait_for(lambda: len(got.got) == 1, timeout=30, what="the smarthost to get it")
    sender, rcpts, data = got.got[0]
    assert sender == "cron@example.test" and rcpts == ["alice@example.test"]
    assert b"To: Alice <alice@example.test>\r\n" in data
    assert b"From: cron@example.test\r\n" in data
    assert s.stored("alice@host.internal") == []  # nothing delivered locally


def test_another_local_user_submits_through_the_maildrop(sink: tuple[Sink, int]) -> None:
    """The documented multi-user set-up: `chmod 711 DATA DATA/queue`, and any local user's
    sendmail drops into the 1733 maildrop; the server (another uid) takes it with the sender
    named by the file's owner; that user cannot read the queue."""
    import pwd
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    # The other user runs this checkout's sendmail: every directory above it must let them in
    closed = closed_to_others(SENDMAIL)
    if closed is not None:
        pytest.skip(f"{closed} is not reachable by another user (mode 0700)")
    nobody = pwd.getpwnam("nobody")
    _, port = sink
    base = Path(tempfile.mkdtemp(prefix="carteiro-sendmail-"))  # traversable, unlike pytest's
    try:
        os.chmod(base, 0o711)
        s = make_server(base, port)
        os.chmod(s.data, 0o711)
        (s.data / "queue").mkdir(exist_ok=True)
        os.chmod(s.data / "queue", 0o711)
        as_nobody = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}"]
        as_nobody += ["--clear-groups", SENDMAIL, "-C", str(s.data)]
        with s:
            r = subprocess.run(
                [*as_nobody, "-v", ALICE],
                input=b"Subject: from nobody\n\nhi\n",
                capture_output=True,
                timeout=60,
            )
            assert r.returncode == 0, r.stderr
            assert b"queued as" in r.stderr  # the pickup socket woke the server
            wait_for(lambda: len(s.stored(ALICE)) == 1, what="nobody's message")
            (m,) = s.stored(ALICE)
            assert m.startswith(b"Return-Path: <nobody@example.test>")
            assert f"from userid {nobody.pw_uid} (nobody)".encode() in m
            r = subprocess.run([*as_nobody, "-bp"], capture_output=True, timeout=60)
            assert r.returncode == 77  # EX_NOPERM: the queue is the owner's
    finally:
        shutil.rmtree(base, ignore_errors=True)

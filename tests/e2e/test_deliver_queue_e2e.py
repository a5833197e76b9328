"""`carteiro deliver` (the standalone LDA) with an alias that also forwards to another domain: the
local copy and the queued copy are committed together, the real `carteiro serve` sends the queued
one through its smarthost (an aiosmtpd sink here) whether it was running or started later, and a
queue that refuses makes the LDA exit 75 with nothing delivered."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from carteiro.queue.service import QueueLock
from carteiro.testing.server import ServerProcess, free_port, run_cli

pytestmark = pytest.mark.slow

ALICE = "alice@example.test"
FWD = "fwd@example.test"  # -> alice, friend@remote.test
AWAY = "away@example.test"  # -> friend@remote.test only
FRIEND = "friend@remote.test"


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
    s.cli("alias", "add", FWD, ALICE)
    s.cli("alias", "add", FWD, FRIEND)
    s.cli("alias", "add", AWAY, FRIEND)
    return s


def lda(
    s: ServerProcess, to: str, message: bytes, *extra: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "carteiro", "deliver", "--to", to, *extra, "--data", str(s.data)],
        input=message,
        capture_output=True,
        timeout=120,
    )


def queued(s: ServerProcess) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(run_cli(s.data, "queue", "list", "--json").stdout)
    return out


def test_lda_queues_remote_alias_targets(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    got, port = sink
    s = make_server(tmp_path, port)

    # No server running: the LDA writes the spool itself; the next start sends it.
    r = lda(s, FWD, b"Subject: offline\n\nbody one\n", "--from", "x@example.org")
    assert r.returncode == 0, r.stderr
    (local,) = s.stored(ALICE)
    assert local.startswith(b"Return-Path: <x@example.org>\r\nSubject: offline\r\n")
    (m,) = queued(s)
    assert m["sender"] == "x@example.org"
    assert [x["address"] for x in m["recipients"]] == [FRIEND]
    assert got.got == []

    with s:
        wait_for(lambda: len(got.got) == 1, what="the offline message to be sent")
        assert got.got[0][:2] == ("x@example.org", [FRIEND])
        assert b"Subject: offline\r\n\r\nbody one\r\n" in got.got[0][2]
        assert b"Return-Path" not in got.got[0][2]

        # Server running: handed over on the control socket, sent without waiting for a retry.
        r = lda(s, FWD, b"Subject: online\n\nbody two\n", "--from", "y@example.org")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: len(got.got) == 2, timeout=30, what="the online message to be sent")
        assert got.got[1][:2] == ("y@example.org", [FRIEND])
        assert b"Subject: online\r\n" in got.got[1][2]
        assert sum(b"Subject: online" in msg for msg in s.stored(ALICE)) == 1

        # An alias that only forwards: queued and sent, exit 0 (no longer 69).
        r = lda(s, AWAY, b"Subject: away\n\nbody three\n", "--from", "z@example.org")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: len(got.got) == 3, timeout=30, what="the forward-only message")
        assert got.got[2][:2] == ("z@example.org", [FRIEND])
        wait_for(lambda: queued(s) == [], timeout=30, what="an empty queue")
    assert not any(b"Subject: away" in msg for msg in s.stored(ALICE))
    assert list((s.data / "queue" / "incoming").iterdir()) == []


def test_lda_tempfails_and_delivers_nothing_when_the_queue_refuses(tmp_path: Path) -> None:
    s = make_server(tmp_path, free_port())
    root = s.data / "queue"
    root.mkdir(parents=True, exist_ok=True)
    # A "server": holds the queue lock and refuses every request on the control socket.
    lock = QueueLock(root)
    lock.acquire()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(root / "control.sock"))
    listener.listen()
    requests: list[dict[str, Any]] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                line = conn.makefile("rb").readline()
                requests.append(json.loads(line))
                conn.sendall(b'{"ok": false, "error": "spool on fire"}\n')

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r = lda(s, FWD, b"Subject: refused\n\nx\n", "--from", "x@example.org")
    finally:
        listener.close()
        lock.release()
        t.join(5)
    assert r.returncode == 75, r.stderr
    assert b"spool on fire" in r.stderr and b"nothing delivered" in r.stderr
    assert [q["op"] for q in requests] == ["enqueue"]
    assert requests[0]["envelope"]["recipients"][0]["address"] == FRIEND
    assert requests[0]["envelope"]["recipients"][0]["orcpt"] == f"rfc822;{FWD}"
    assert s.stored(ALICE) == []  # the local copy was undone
    assert list((root / "incoming").iterdir()) == []

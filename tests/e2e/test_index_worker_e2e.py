"""`carteiro serve` indexes deliveries for SEARCH in a worker process of its own
(store/index_worker.py), at a lower CPU priority, and never leaves it behind: not after a stop,
not after a kill -9."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from carteiro.testing.procstat import alive
from carteiro.testing.server import ServerProcess, index_count

pytestmark = [pytest.mark.slow]

USER = "idx@example.test"


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def worker_of(pid: int) -> int:
    found: list[int] = []

    def look() -> bool:
        for child in children(pid):
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"carteiro.store.index_worker" in f.read():
                    found.append(child)
                    return True
        return False

    until(look)
    return found[0]


def until(what, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_serve_indexes_in_a_worker_that_goes_with_it(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, users={USER: "pw"}, services=("smtp",))
    with srv:
        assert srv.proc is not None
        worker = worker_of(srv.proc.pid)
        until(lambda: os.getpriority(os.PRIO_PROCESS, worker) >= 10)  # background work
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as c:
            for i in range(20):
                c.sendmail("x@remote.example", [USER], f"Subject: hello {i}\r\n\r\nbody {i}\r\n")
        until(lambda: index_count(srv.data, "SELECT count(*) FROM search_fields") == 20)
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        until(lambda: not alive(worker))
    srv.start()  # a restart gets a worker again
    try:
        assert srv.proc is not None
        worker = worker_of(srv.proc.pid)
    finally:
        srv.stop()
    until(lambda: not alive(worker))

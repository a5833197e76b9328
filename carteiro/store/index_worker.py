"""The search indexer in a process of its own, for `carteiro serve` (docs/search-index.md).

In the server's process the indexer's parsing holds the GIL the event loop needs, and its rows
were written by the store's writer thread, inside the group commits that deliveries wait for:
with 100 KB messages it cost a quarter of the delivery rate on two cores (bench/RESULTS.md).
Here it runs beside the server, at a lower CPU priority (nice 10): it parses with an interpreter
of its own and writes its rows and marks in transactions of its own. The work and its crash
safety are search_index's, unchanged: rows and the mark in one transaction, so a kill loses
no work, only repeats it; rows are idempotent.

The server talks to it over a pipe, one octet a word: WAKE (messages were appended), GARBAGE
(messages were expunged: purge their text rows when idle) and HURRY (a caller waits for it to be
idle: no gathering pause; it answers IDLE on its stdout once nothing is left). The end of the pipe, or the server's death (PR_SET_PDEATHSIG), ends
it. Its own transactions are synchronous=NORMAL: the index is a cache of the files, a WAL commit
stays atomic without its fsync, and a power loss only makes the indexer repeat a batch.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from carteiro.store import search_index
from carteiro.store.index import connect_index

log = logging.getLogger("carteiro.store")

WAKE, GARBAGE, HURRY = b"w", b"g", b"h"
IDLE = b"i"  # the worker's answer to HURRY, once nothing is left to do
NICE = 10
WAKE_EVERY = 0.05  # seconds: wakes closer together are one (the indexer gathers for 0.5 s)
RESPAWN_AFTER = 5.0  # seconds between restarts of a worker that died
WORKER_MODULE = "carteiro.store.index_worker"
EARLY_DEATH = 2.0  # a worker ending sooner after its start cannot run here: the thread instead


class IndexerProcess:
    """The server's handle on its worker: what the in-process Indexer offers the store (wake,
    note_garbage, wait_idle, stop). A worker that died is started again at the next wake. When
    no worker can run (the interpreter not executable by the user the server switched to, a
    worker that dies as it starts), the indexer thread (`fallback`) does the work instead."""

    def __init__(
        self,
        index_path: Path,
        mail_root: Path,
        reserve: Path,
        fallback: Callable[[], search_index.Indexer],
    ) -> None:
        self._args = [str(index_path), str(mail_root), str(reserve)]
        self._index_path = index_path
        self._fallback = fallback
        self.inner: search_index.Indexer | None = None  # the thread, when there is no worker
        self._lock = threading.Lock()
        self._waiting = threading.Lock()
        self._last_wake = 0.0
        self._started = 0.0
        self._stopped = False
        self.proc: subprocess.Popen[bytes] | None = None
        self._begun = False

    def start(self) -> None:
        """Start the worker (once; the first wake does too): `carteiro serve` calls it once its
        ports are bound, so that a start that fails there stays one line."""
        with self._lock:
            if self._begun:
                return
            self._begun = True
            try:
                self._start()
            except OSError as e:
                self._give_up(f"cannot start it: {e}")

    def _give_up(self, why: str) -> search_index.Indexer:
        log.warning("search index worker: %s; indexing in the server's process instead", why)
        self.proc = None
        self.inner = self._fallback()
        return self.inner

    def _start(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH", "")
        env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
        self._started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert self.proc.stdin is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        self._send(WAKE + GARBAGE)  # what was left unindexed or unpurged before it started

    def _send(self, word: bytes) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None:
            return
        try:
            os.write(proc.stdin.fileno(), word)
        except BlockingIOError:
            pass  # the pipe is full of words it has not read: it will look anyway
        except (OSError, ValueError):  # it died (EPIPE), or its pipe is closed already
            self._maybe_restart()

    def _maybe_restart(self) -> None:
        with self._lock:
            proc = self.proc
            if self._stopped or proc is None or proc.poll() is None:
                return
            lived = time.monotonic() - self._started
            early = lived < EARLY_DEATH and (proc.returncode or 0) > 0  # (not a kill)
            if lived < RESPAWN_AFTER and not early:
                return  # (its pipes stay open until then: writing to them fails quietly)
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
            if early:
                self._give_up(f"it ended as it started (status {proc.returncode})").wake()
                return
            log.warning("search index worker ended (status %s); starting it again", proc.returncode)
            try:
                self._start()
            except OSError as e:
                self._give_up(f"cannot start it again: {e}")

    def _thread(self) -> search_index.Indexer | None:
        """Start the worker if that is not done yet; the indexer thread when there is none."""
        if not self._begun:
            self.start()
        return self.inner

    def wake(self) -> None:
        if (thread := self._thread()) is not None:
            thread.wake()
            return
        if self.proc is not None and self.proc.poll() is not None:
            self._maybe_restart()  # (it sends WAKE as it starts)
            return
        now = time.monotonic()
        if now - self._last_wake < WAKE_EVERY:
            return
        self._last_wake = now
        self._send(WAKE)

    def note_garbage(self) -> None:
        if (thread := self._thread()) is not None:
            thread.note_garbage()
            return
        self._send(GARBAGE)

    def wait_idle(self, timeout: float) -> bool:
        """Until every message committed before the call is indexed and the text rows of
        expunged ones are purged (tests, benchmarks): the worker answers IDLE once it is."""
        if (thread := self._thread()) is not None:
            return thread.wait_idle(timeout)
        deadline = time.monotonic() + timeout
        with self._waiting:
            proc = self.proc
            if proc is None or proc.stdout is None or proc.stdout.closed:
                return False  # (between a worker's death and its successor)
            out = proc.stdout.fileno()
            while select.select([out], [], [], 0)[0]:  # an answer to an earlier wait
                if not os.read(out, 4096):
                    return False
            self._send(HURRY)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([out], [], [], left)[0]:
                    return False
                got = os.read(out, 4096)
                if not got:
                    return False  # the worker ended
                if IDLE in got:
                    return True

    def stop(self) -> None:
        self._stopped = True
        if self.inner is not None:
            self.inner.stop()
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # the worker ends at the end of its pipe
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _die_with_parent() -> None:
    """SIGTERM when the server dies, even by kill -9 (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1


Job = Callable[[sqlite3.Connection], None]


def _own_transactions(conn: sqlite3.Connection) -> Callable[[Job], threading.Event]:
    """The Indexer's `submit` here: the job in a transaction of this process's own."""

    def submit(fn: Job) -> threading.Event:
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        done = threading.Event()
        done.set()
        return done

    return submit


def _answer_idle(indexer: search_index.Indexer) -> None:
    if indexer.wait_idle(3600):
        with contextlib.suppress(OSError):
            os.write(1, IDLE)


def main(argv: list[str]) -> int:
    index_path, mail_root, reserve = (Path(a) for a in argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # nothing to flush: rows are idempotent
    with contextlib.suppress(OSError):
        os.nice(NICE)  # background work: deliveries and sessions first
    if os.getppid() == 1:
        return 0  # the server died before the prctl: nobody to work for

    def folder(acct_dir: str, mbox_dir: str) -> Path:
        base = mail_root / acct_dir / "Maildir"
        return base / mbox_dir if mbox_dir else base

    write = connect_index(index_path)
    write.execute("PRAGMA synchronous=NORMAL")
    indexer = search_index.Indexer(
        lambda: connect_index(index_path, readonly=True),
        search_index.file_reader(folder),
        _own_transactions(write),
        may_write=reserve.exists,
    )
    try:
        while True:
            try:
                words = os.read(0, 4096)
            except InterruptedError:
                continue
            if not words:
                break  # the server closed the pipe (stopping) or died
            if GARBAGE in words:
                indexer.note_garbage()
            if HURRY in words:
                threading.Thread(target=_answer_idle, args=(indexer,), daemon=True).start()
            if WAKE in words:
                indexer.wake()
    finally:
        indexer.stop()
        write.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

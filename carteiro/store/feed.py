"""The cross-process change feed: a changes log in the index, and unix datagram wake-ups.

Every write transaction appends its events to the `changes` table (with the writer's token). After
commit the writer publishes to local subscribers directly and sends a one-byte datagram to every
other process that listens (peers announce themselves by a file DATA/run/feed-<token>); each
listener then reads the log past the last id it saw. A poll of PRAGMA data_version every
`poll_interval` seconds covers a lost datagram. Never blocks a writer on a slow reader.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from carteiro.store.changes import ChangeHub, event_from_json

log = logging.getLogger(__name__)

PEER_PREFIX = "feed-"


class CrossProcessFeed:
    """Wakes other processes after commits, and (once someone subscribes) listens for theirs."""

    def __init__(
        self,
        run_dir: Path,
        token: str,
        hub: ChangeHub,
        connect: Callable[[], sqlite3.Connection],
        poll_interval: float = 0.25,
    ) -> None:
        self._run_dir = run_dir
        self._token = token
        self._hub = hub
        self._connect = connect
        self._poll_interval = poll_interval
        scope = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
        self._scope = scope
        self._send_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._send_sock.setblocking(False)
        self._lock = threading.Lock()
        self._listen_sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_id = 0
        self._peers: list[str] = []
        self._peers_stamp = -1
        self._peers_listed = 0.0

    def _address(self, token: str) -> bytes:
        # Linux abstract socket names: no path length limit, vanish with their process
        return f"\0carteiro/{self._scope}/{token}".encode()

    # ---- sending ----

    def wake_others(self) -> None:
        try:
            # the run dir changes only when a process starts or stops: list it only then
            stamp = os.stat(self._run_dir).st_mtime_ns
        except FileNotFoundError:
            return
        now = time.monotonic()
        # (and at least every second: a coarse mtime may hide an announcement in the same tick)
        if stamp != self._peers_stamp or now - self._peers_listed > 1.0:
            try:
                self._peers = [e for e in os.listdir(self._run_dir) if e.startswith(PEER_PREFIX)]
            except FileNotFoundError:
                return
            self._peers_stamp, self._peers_listed = stamp, now
        for entry in self._peers:
            token = entry[len(PEER_PREFIX) :]
            if token == self._token:
                continue
            try:
                self._send_sock.sendto(b"!", self._address(token))
            except (ConnectionRefusedError, FileNotFoundError):
                # nobody bound: the peer died; drop its announcement
                try:
                    os.unlink(self._run_dir / entry)
                except FileNotFoundError:
                    pass
            except OSError as exc:
                if exc.errno not in (
                    errno.EAGAIN,
                    errno.ENOBUFS,
                ):  # full: a wake-up is pending anyway
                    log.warning("change feed wake-up to %s failed: %s", token, exc)

    # ---- listening ----

    def ensure_listening(self) -> None:
        """Start the listener (idempotent); events committed from now on will be delivered."""
        with self._lock:
            if self._thread is not None:
                return
            conn = self._connect()
            row = conn.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()
            self._last_id = int(row[0])
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(self._address(self._token))
            sock.settimeout(self._poll_interval)
            self._listen_sock = sock
            (self._run_dir / f"{PEER_PREFIX}{self._token}").touch()
            self._thread = threading.Thread(
                target=self._listen, args=(conn,), name="carteiro-store-feed", daemon=True
            )
            self._thread.start()

    def _listen(self, conn: sqlite3.Connection) -> None:
        sock = self._listen_sock
        assert sock is not None
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        while not self._stop.is_set():
            try:
                sock.recv(16)
                while True:  # coalesce a burst of wake-ups into one read
                    sock.setblocking(False)
                    try:
                        sock.recv(16)
                    except BlockingIOError:
                        break
                sock.settimeout(self._poll_interval)
            except TimeoutError:
                now = conn.execute("PRAGMA data_version").fetchone()[0]
                if now == version:
                    continue
                version = now
            except OSError:
                if self._stop.is_set():
                    break
                raise
            try:
                self._read_log(conn)
            except sqlite3.Error:
                log.exception("reading the changes log failed; subscribers will resync")
                self._hub.resync_all()
        conn.close()

    def _read_log(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(
            "SELECT id, origin, account, event FROM changes WHERE id > ? ORDER BY id",
            (self._last_id,),
        ).fetchall()
        if not rows:
            return
        if rows[0][0] != self._last_id + 1:
            # the log was pruned past what we saw: we cannot know what we missed
            self._hub.resync_all()
        batch: dict[str, list[object]] = {}
        for _id, origin, account, text in rows:
            if origin != self._token:
                batch.setdefault(account, []).append(event_from_json(account, text))
        self._last_id = rows[-1][0]
        for account, events in batch.items():
            self._hub.publish(account, events)  # type: ignore[arg-type]

    def close(self) -> None:
        self._stop.set()
        if self._listen_sock is not None:
            try:
                os.unlink(self._run_dir / f"{PEER_PREFIX}{self._token}")
            except FileNotFoundError:
                pass
        if self._thread is not None:
            try:  # wake our own listener so it sees the stop flag now
                self._send_sock.sendto(b"!", self._address(self._token))
            except OSError:
                pass
            self._thread.join(timeout=5)
        if self._listen_sock is not None:
            self._listen_sock.close()
        self._send_sock.close()

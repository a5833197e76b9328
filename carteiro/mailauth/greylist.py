"""Greylisting (the triplet scheme of postgrey): the first message from a client network, sender
and recipient is deferred with 451; a retry after `delay` passes, and from then on the client
network passes at once for `keep` seconds. Senders that never retry (most spam software) are
stopped; real MTAs retry (RFC 5321 4.5.4.1). Off by default.

State is DATA/greylist.sqlite; `check` is blocking (call it from a thread). Client networks are
IPv4 /24 and IPv6 /64, as senders with pools of addresses retry from a neighbour.
"""

from __future__ import annotations

import hashlib
import ipaddress
import sqlite3
import threading
import time
from pathlib import Path
from typing import Literal

DB_NAME = "greylist.sqlite"


def client_net(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


class Greylist:
    def __init__(
        self,
        data_dir: Path,
        delay: float = 300.0,
        retry_window: float = 2 * 86400.0,
        keep: float = 36 * 86400.0,
    ) -> None:
        self.path = Path(data_dir) / DB_NAME
        self.delay = delay
        self.retry_window = retry_window
        self.keep = keep
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._known: dict[str, float] = {}  # client net -> whitelisted until (memory cache)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            conn.executescript(
                "CREATE TABLE IF NOT EXISTS triplets (key TEXT PRIMARY KEY, first REAL NOT NULL);"
                "CREATE TABLE IF NOT EXISTS clients (net TEXT PRIMARY KEY, until REAL NOT NULL);"
            )
            self._conn = conn
        return self._conn

    def known_client(self, ip: str, now: float | None = None) -> bool:
        """Cheap, without the database: a client network that passed before."""
        now = time.time() if now is None else now
        return self._known.get(client_net(ip), 0.0) > now

    def check(
        self, ip: str, sender: str, recipient: str, now: float | None = None
    ) -> Literal["pass", "defer"]:
        now = time.time() if now is None else now
        net = client_net(ip)
        if self._known.get(net, 0.0) > now:
            return "pass"
        key = hashlib.sha256(
            f"{net}\0{sender.lower()}\0{recipient.lower()}".encode("utf-8", "surrogateescape")
        ).hexdigest()[:32]
        with self._lock:
            db = self._db()
            with db:
                row = db.execute("SELECT until FROM clients WHERE net = ?", (net,)).fetchone()
                if row and row[0] > now:
                    self._remember(net, row[0])
                    return "pass"
                row = db.execute("SELECT first FROM triplets WHERE key = ?", (key,)).fetchone()
                if row is None or now - row[0] > self.retry_window:
                    db.execute(
                        "INSERT INTO triplets VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                        " SET first = excluded.first",
                        (key, now),
                    )
                    return "defer"
                if now - row[0] < self.delay:
                    return "defer"
                until = now + self.keep
                db.execute(
                    "INSERT INTO clients VALUES (?, ?) ON CONFLICT(net) DO UPDATE"
                    " SET until = excluded.until",
                    (net, until),
                )
                db.execute("DELETE FROM triplets WHERE key = ?", (key,))
                # old rows go now and then (an unbounded table is a slow leak)
                db.execute("DELETE FROM triplets WHERE first < ?", (now - self.retry_window,))
                db.execute("DELETE FROM clients WHERE until < ?", (now,))
        self._remember(net, until)
        return "pass"

    def _remember(self, net: str, until: float) -> None:
        if len(self._known) > 100_000:
            self._known.clear()
        self._known[net] = until

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

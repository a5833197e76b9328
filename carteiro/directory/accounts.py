"""Domains, accounts, aliases and password checks, kept in DATA/directory.sqlite.

Every lookup reads the database (SQLite answers from its page cache in microseconds), so changes made
by the CLI reach a running server without a restart. Passwords are stored only as Argon2id hashes;
successful verifications are remembered briefly as a keyed HMAC so reconnecting clients stay cheap.
Never store or log a password; never say whether an account exists to an unauthenticated caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from carteiro.core.address import (
    MAX_PATH,
    AddressError,
    canonical,
    check_domain,
    normalize_domain,
    parse_address,
    split_detail,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    delivery TEXT NOT NULL DEFAULT 'store',   -- 'store' | 'mbox'
    created REAL NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0     -- bumped on password change (drops cached logins)
);
-- Domains we relay for but hold (RFC 1985 ETRN, RFC 2645 ATRN): never local, mail waits in the
-- queue until the domain's host asks. atrn_user: the account that may ATRN for it ('' = none).
CREATE TABLE IF NOT EXISTS held_domains (
    name TEXT PRIMARY KEY,
    atrn_user TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS aliases (
    source TEXT NOT NULL,                     -- 'local@domain' or '@domain' (catch-all)
    target TEXT NOT NULL,
    PRIMARY KEY (source, target)
);
"""

MAX_ALIAS_DEPTH = 8
MAX_EXPANSION = 1000


class DirectoryError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where mail for one RCPT goes."""

    local_accounts: tuple[tuple[str, str], ...]  # (account, detail) pairs
    remote: tuple[str, ...]  # addresses outside our domains (alias targets)


def _hasher() -> PasswordHasher:
    # argon2-cffi defaults: Argon2id, t=3, m=64 MiB, p=4 (RFC 9106 second recommendation).
    return PasswordHasher()


class Directory:
    """Thread-safe; one SQLite connection per thread."""

    def __init__(
        self,
        path: Path,
        static_domains: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        # Domains from carteiro.toml: always local, cannot be deleted with `carteiro domain del`.
        self.static_domains = frozenset(normalize_domain(d) for d in static_domains)
        self._local = threading.local()
        self._ph = _hasher()
        self._clock = clock
        self._cache_key = os.urandom(32)
        # address -> (hmac of password, generation, expiry)
        self._cache: dict[str, tuple[bytes, int, float]] = {}
        self.cache_ttl = 300.0
        self._dummy_hash = self._ph.hash(os.urandom(16).hex())
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # ---- domains -----------------------------------------------------------------------------

    @staticmethod
    def _valid_domain(domain: str) -> str:
        """The normalised name (IDNA included), or DirectoryError saying why it is not one."""
        try:
            return check_domain(domain)
        except AddressError as e:
            raise DirectoryError(str(e)) from None

    def add_domain(self, domain: str) -> str:
        """Add a local domain (validated, IDNA included); returns its normalised name."""
        d = self._valid_domain(domain)
        if self.is_held_domain(d):
            raise DirectoryError(f"{d} is held for a client (ETRN/ATRN); `domain del` it first")
        self._db().execute("INSERT OR IGNORE INTO domains VALUES (?)", (d,))
        return d

    def del_domain(self, domain: str) -> None:
        d = self._valid_domain(domain)
        if d in self.static_domains:
            raise DirectoryError(f"domain {d} is listed in carteiro.toml; remove it there")
        db = self._db()
        n = db.execute(
            "SELECT count(*) FROM accounts WHERE address LIKE ?", (f"%@{d}",)
        ).fetchone()[0]
        if n:
            raise DirectoryError(f"domain {d} still has {n} account(s); delete them first")
        if db.execute("DELETE FROM domains WHERE name = ?", (d,)).rowcount == 0:
            raise DirectoryError(f"no domain {d}")

    def domains(self) -> list[str]:
        dynamic = {r[0] for r in self._db().execute("SELECT name FROM domains")}
        return sorted(dynamic | self.static_domains)

    def is_local_domain(self, domain: str) -> bool:
        d = normalize_domain(domain)
        if d in self.static_domains:
            return True
        return (
            self._db().execute("SELECT 1 FROM domains WHERE name = ?", (d,)).fetchone() is not None
        )

    # ---- held (relay) domains: ETRN / ATRN ---------------------------------------------------

    def add_held_domain(self, domain: str, atrn_user: str = "") -> str:
        """Hold mail for `domain` (validated like a local one); returns its normalised name."""
        d = self._valid_domain(domain)
        if self.is_local_domain(d):
            raise DirectoryError(f"{d} is a local domain; a held domain is relayed for a client")
        if atrn_user and not self.user_exists(atrn_user):
            raise DirectoryError(f"no account {atrn_user}")
        self._db().execute(
            "INSERT OR REPLACE INTO held_domains VALUES (?, ?)", (d, atrn_user.lower())
        )
        return d

    def del_held_domain(self, domain: str) -> bool:
        d = normalize_domain(domain)
        return self._db().execute("DELETE FROM held_domains WHERE name = ?", (d,)).rowcount > 0

    def held_domains(self) -> dict[str, str]:
        """domain -> the account that may ATRN for it ("" when none)."""
        return dict(self._db().execute("SELECT name, atrn_user FROM held_domains ORDER BY name"))

    def is_held_domain(self, domain: str) -> bool:
        d = normalize_domain(domain)
        row = self._db().execute("SELECT 1 FROM held_domains WHERE name = ?", (d,)).fetchone()
        return row is not None

    # ---- accounts ----------------------------------------------------------------------------

    def add_user(self, address: str, password: str, delivery: str = "store") -> str:
        addr = parse_address(address)
        if not self.is_local_domain(addr.domain):
            raise DirectoryError(
                f"{addr.domain} is not one of our domains (carteiro domain add {addr.domain})"
            )
        if delivery not in ("store", "mbox"):
            raise DirectoryError(f"delivery must be store or mbox, not {delivery!r}")
        if not password:
            raise DirectoryError("empty password")
        acct = addr.canonical
        try:
            self._db().execute(
                "INSERT INTO accounts (address, hash, delivery, created) VALUES (?, ?, ?, ?)",
                (acct, self._ph.hash(password), delivery, time.time()),
            )
        except sqlite3.IntegrityError:
            raise DirectoryError(f"account {acct} exists") from None
        return acct

    def del_user(self, address: str) -> str:
        acct = canonical(address)
        cur = self._db().execute("DELETE FROM accounts WHERE address = ?", (acct,))
        if not cur.rowcount:
            raise DirectoryError(f"no account {acct}")
        self._cache.pop(acct, None)
        return acct

    def set_password(self, address: str, password: str) -> None:
        acct = canonical(address)
        if not password:
            raise DirectoryError("empty password")
        cur = self._db().execute(
            "UPDATE accounts SET hash = ?, generation = generation + 1 WHERE address = ?",
            (self._ph.hash(password), acct),
        )
        if not cur.rowcount:
            raise DirectoryError(f"no account {acct}")
        self._cache.pop(acct, None)

    def set_delivery(self, address: str, delivery: str) -> None:
        if delivery not in ("store", "mbox"):
            raise DirectoryError(f"delivery must be store or mbox, not {delivery!r}")
        cur = self._db().execute(
            "UPDATE accounts SET delivery = ? WHERE address = ?", (delivery, canonical(address))
        )
        if not cur.rowcount:
            raise DirectoryError(f"no account {address}")

    def users(self) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT address FROM accounts ORDER BY address")]

    def user_exists(self, address: str) -> bool:
        try:
            acct = canonical(address)
        except AddressError:
            return False
        return (
            self._db().execute("SELECT 1 FROM accounts WHERE address = ?", (acct,)).fetchone()
            is not None
        )

    def delivery_of(self, account: str) -> str:
        row = (
            self._db()
            .execute("SELECT delivery FROM accounts WHERE address = ?", (account,))
            .fetchone()
        )
        return str(row[0]) if row else "store"

    # ---- passwords ---------------------------------------------------------------------------

    def _mac(self, account: str, password: str) -> bytes:
        return hmac.new(self._cache_key, f"{account}\0{password}".encode(), hashlib.sha256).digest()

    def verify_sync(self, username: str, password: str) -> str | None:
        """The canonical account if the password is right, else None. Costs one Argon2id check
        unless a recent success with the same password is cached. Unknown users cost the same."""
        try:
            acct = canonical(username)
        except AddressError:
            acct = ""
        row = (
            self._db()
            .execute("SELECT hash, generation FROM accounts WHERE address = ?", (acct,))
            .fetchone()
            if acct
            else None
        )
        if row is None:
            # Same work as a real check: no user enumeration by timing.
            try:
                self._ph.verify(self._dummy_hash, password)
            except (VerificationError, InvalidHashError):
                pass
            return None
        stored_hash, generation = str(row[0]), int(row[1])
        mac = self._mac(acct, password)
        cached = self._cache.get(acct)
        now = self._clock()
        if (
            cached
            and cached[1] == generation
            and cached[2] > now
            and hmac.compare_digest(cached[0], mac)
        ):
            return acct
        try:
            self._ph.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if self._ph.check_needs_rehash(stored_hash):
            self._db().execute(
                "UPDATE accounts SET hash = ? WHERE address = ? AND generation = ?",
                (self._ph.hash(password), acct, generation),
            )
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[acct] = (mac, generation, now + self.cache_ttl)
        return acct

    async def verify(self, username: str, password: str) -> str | None:
        """verify_sync in a worker thread (Argon2 releases the GIL), so sessions keep running."""
        return await asyncio.to_thread(self.verify_sync, username, password)

    # ---- aliases -----------------------------------------------------------------------------

    @staticmethod
    def _alias_source(source: str) -> str:
        if source.startswith("@"):
            return "@" + normalize_domain(source[1:])
        return canonical(source)

    def add_alias(self, source: str, target: str) -> None:
        src = self._alias_source(source)
        dom = src.rpartition("@")[2]
        if not self.is_local_domain(dom):
            raise DirectoryError(f"{dom} is not one of our domains")
        tgt = canonical(target)
        self._db().execute("INSERT OR IGNORE INTO aliases VALUES (?, ?)", (src, tgt))

    def del_alias(self, source: str, target: str | None = None) -> int:
        src = self._alias_source(source)
        if target is None:
            cur = self._db().execute("DELETE FROM aliases WHERE source = ?", (src,))
        else:
            cur = self._db().execute(
                "DELETE FROM aliases WHERE source = ? AND target = ?", (src, canonical(target))
            )
        return cur.rowcount

    def aliases(self) -> list[tuple[str, str]]:
        return [
            (r[0], r[1])
            for r in self._db().execute(
                "SELECT source, target FROM aliases ORDER BY source, target"
            )
        ]

    def aliases_of(self, account: str) -> list[str]:
        """Addresses that deliver to `account` (for MAIL FROM checks on submission)."""
        rows = self._db().execute("SELECT source FROM aliases WHERE target = ?", (account,))
        return [r[0] for r in rows if not r[0].startswith("@")]

    def _targets(self, source: str) -> list[str]:
        return [
            r[0]
            for r in self._db().execute("SELECT target FROM aliases WHERE source = ?", (source,))
        ]

    def resolve(self, address: str) -> Resolution | None:
        """Expand aliases, plus-addressing and catch-alls. None when the address is ours but unknown
        (550 5.1.1), or raises DirectoryError for loops/over-expansion. Remote-domain addresses
        given directly come back as `remote`. A local part over 64 octets is looked up like any
        other (a list's VERP bounce address, LIST-bounces+member=domain@, may pass 64)."""
        addr = parse_address(address, max_local=MAX_PATH)
        if not self.is_local_domain(addr.domain):
            return Resolution((), (addr.canonical,))
        local: dict[str, str] = {}
        remote: dict[str, None] = {}
        if not self._expand(addr.canonical, "", local, remote, 0, set()):
            return None
        return Resolution(tuple(local.items()), tuple(remote))

    def _expand(
        self,
        addr: str,
        detail: str,
        local: dict[str, str],
        remote: dict[str, None],
        depth: int,
        seen: set[str],
    ) -> bool:
        if depth > MAX_ALIAS_DEPTH or len(local) + len(remote) > MAX_EXPANSION:
            raise DirectoryError("alias expansion too deep or too large")
        if addr in seen:
            return True  # a loop: already being expanded
        seen.add(addr)
        lp, _, dom = addr.rpartition("@")
        if not self.is_local_domain(dom):
            remote[addr] = None
            return True
        targets = self._targets(addr)
        if targets:
            for t in targets:
                if t == addr and self.user_exists(t):
                    local.setdefault(t, detail)
                else:
                    self._expand(t, detail, local, remote, depth + 1, seen)
            return True
        if self.user_exists(addr):
            local.setdefault(addr, detail)
            return True
        base, det = split_detail(lp)
        if det and not detail:
            return self._expand(f"{base}@{dom}", det, local, remote, depth + 1, seen)
        catchall = self._targets(f"@{dom}")
        if catchall:
            for t in catchall:
                self._expand(t, detail, local, remote, depth + 1, seen)
            return True
        return False

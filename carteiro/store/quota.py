"""Mail quotas of the SQLite store (RFC 9208 STORAGE and MESSAGE): per-account limits over the
configured defaults, usage, and the check made before anything is added to an account.

The check reads the usage before the write is queued, so writes racing each other may pass it
together and end a little over the limit (as Dovecot's do); nothing is ever refused after it was
acknowledged. Knows no protocol.
"""

from __future__ import annotations

import sqlite3

from carteiro.store.api import OverQuota, Quota, QuotaLimits, StoreError

# An account's row of `quotas` as stored: (storage, messages), each NULL for the default and 0 for
# no limit; (None, None) when the account has no row.
Stored = tuple[int | None, int | None]

# The account's id and stored limits, by name, with one statement (the writer's append run reads
# its accounts this way, so it can tell whether a caller checked against the limits in force).
ACCOUNT_LIMITS_BY_NAME = (
    "SELECT a.id, a.deleted, q.storage, q.messages FROM accounts a"
    " LEFT JOIN quotas q ON q.account_id = a.id WHERE a.name = ?"
)


class LimitsChanged(StoreError):
    """An append checked against limits that changed before its COMMIT (the writer compares):
    the caller checks again and retries. Never reaches a protocol."""


def effective(stored: Stored, defaults: QuotaLimits) -> QuotaLimits:
    storage, messages = stored
    # NULL: the default; 0: no limit for this account
    return QuotaLimits(
        defaults.storage if storage is None else (storage or None),
        defaults.messages if messages is None else (messages or None),
    )


def stored_limits(conn: sqlite3.Connection, account_id: int) -> Stored:
    row = conn.execute(
        "SELECT storage, messages FROM quotas WHERE account_id = ?", (account_id,)
    ).fetchone()
    return (None, None) if row is None else (row[0], row[1])


def limits(conn: sqlite3.Connection, account_id: int, defaults: QuotaLimits) -> QuotaLimits:
    return effective(stored_limits(conn, account_id), defaults)


def usage(conn: sqlite3.Connection, account_id: int) -> tuple[int, int]:
    """(octets, messages) of every mailbox of the account."""
    n, size = conn.execute(
        "SELECT count(*), coalesce(sum(m.size), 0) FROM mailboxes b JOIN messages m"
        " ON m.mailbox_id = b.id WHERE b.account_id = ?",
        (account_id,),
    ).fetchone()
    return int(size), int(n)


def quota(conn: sqlite3.Connection, account_id: int, defaults: QuotaLimits) -> Quota:
    lim = limits(conn, account_id, defaults)
    octets, n = usage(conn, account_id)
    return Quota(lim.storage, lim.messages, octets, n)


def check(
    conn: sqlite3.Connection, account_id: int, defaults: QuotaLimits, octets: int, messages: int
) -> None:
    """Raise OverQuota if adding `messages` messages of `octets` would pass a limit."""
    lim = limits(conn, account_id, defaults)
    if lim.storage is None and lim.messages is None:
        return
    used, n = usage(conn, account_id)
    if lim.storage is not None and used + octets > lim.storage:
        raise OverQuota(f"storage quota of {lim.storage} octets reached")
    if lim.messages is not None and n + messages > lim.messages:
        raise OverQuota(f"quota of {lim.messages} messages reached")


def set_limits(
    conn: sqlite3.Connection, account_id: int, storage: int | None, messages: int | None
) -> None:
    """None: back to the default; 0: no limit; n: n octets / messages."""
    conn.execute(
        "INSERT INTO quotas (account_id, storage, messages, warned) VALUES (?, ?, ?, 0)"
        " ON CONFLICT (account_id) DO UPDATE SET storage = excluded.storage,"
        " messages = excluded.messages",
        (account_id, storage, messages),
    )


def warned(conn: sqlite3.Connection, account_id: int) -> bool:
    row = conn.execute("SELECT warned FROM quotas WHERE account_id = ?", (account_id,)).fetchone()
    return bool(row[0]) if row else False


def note_warning(conn: sqlite3.Connection, account_id: int, above: bool) -> bool:
    """Record whether the account is above QUOTA_WARN; True when it just went above."""
    row = conn.execute("SELECT warned FROM quotas WHERE account_id = ?", (account_id,)).fetchone()
    was = bool(row[0]) if row else False
    if was == above:
        return False
    conn.execute(
        "INSERT INTO quotas (account_id, storage, messages, warned) VALUES (?, NULL, NULL, ?)"
        " ON CONFLICT (account_id) DO UPDATE SET warned = excluded.warned",
        (account_id, int(above)),
    )
    return above

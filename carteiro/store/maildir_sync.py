"""Changes made in a Maildir behind the store's back (a Maildir client such as mutt, another
delivery agent): found cheaply, adopted into the index.

As Dovecot's maildir sync does: each folder's new/ and cur/ mtimes, as seen by the last scan,
are kept in the index (table `maildir_sync`); a check is two stat calls. Only when they moved is
the folder listed and compared with its rows: files in new/ (or unknown files in cur/) become
messages, a renamed info part changes flags, a removed file expunges its message. A timestamp
taken within SETTLE of the moment it was read may hide a later change in the same clock tick, so
such a stamp is trusted only until SETTLE has passed, then the folder is scanned once more.

Never deletes a file, and never adopts a file that the store itself may still be committing
(a live or crashed writer's token in its name) or removing (`pending_unlink`); a row whose bytes
are still in the index (`unsynced`) is not missing. See docs/store.md.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field

from carteiro.store import maildir
from carteiro.store.flags import flags_from_info

# A directory mtime read less than this after it was set may hide a change made in the same
# clock tick (file system timestamps come from a coarse clock): such a stamp is checked again.
SETTLE_NS = 2_000_000_000
# While the store keeps changing a folder itself, the rescan its own changes call for waits for
# a quiet moment, but never longer than this.
MAX_DEFER_NS = 10_000_000_000


@dataclass(frozen=True, slots=True)
class Stamp:
    """What the last scan of a folder saw (or a check that put a scan off)."""

    new: int  # mtime of new/, ns
    cur: int  # mtime of cur/, ns
    checked: int  # when they were read (time.time_ns())
    modseq: int  # the mailbox's HIGHESTMODSEQ then
    settled: bool  # the scan was conclusive and both mtimes were older than SETTLE_NS then
    deferred_since: int = 0  # a scan has been put off since (0: none)


NONE, DEFER, SCAN = "none", "defer", "scan"


def stat_pair(folder: str) -> tuple[int, int] | None:
    """mtimes (ns) of the folder's new/ and cur/: two stat calls. None if one is missing."""
    try:
        return os.stat(folder + "/new").st_mtime_ns, os.stat(folder + "/cur").st_mtime_ns
    except OSError:
        return None


def decide(stamp: Stamp | None, pair: tuple[int, int], now: int, highestmodseq: int) -> str:
    """NONE: nothing changed; SCAN: list the folder now; DEFER: cur/ changed just now, and the
    store itself changed the mailbox since the stamp (or the stamp is due for a second look
    anyway): put the scan off until the folder is quiet (the new stamp is unsettled, so a scan
    follows once SETTLE_NS has passed, MAX_DEFER_NS at the latest). new/ is never the store's:
    a change there is scanned at once."""
    if stamp is None:
        return SCAN
    new, cur = pair
    if new == stamp.new and cur == stamp.cur:
        if stamp.settled or now - stamp.checked < SETTLE_NS:
            return NONE
        return SCAN
    if (
        new == stamp.new
        # the store changed the mailbox since, or the stamp is young and will be checked again
        # anyway (the file worker's writes and unlinks follow their COMMIT, after the stamp)
        and (highestmodseq > stamp.modseq or not stamp.settled)
        and now - cur < SETTLE_NS
        and (stamp.deferred_since == 0 or now - stamp.deferred_since < MAX_DEFER_NS)
    ):
        return DEFER
    return SCAN


def deferred(stamp: Stamp, pair: tuple[int, int], now: int, highestmodseq: int) -> Stamp:
    return Stamp(pair[0], pair[1], now, highestmodseq, False, stamp.deferred_since or now)


def stamp_after_scan(folder: str, conclusive: bool, highestmodseq: int) -> Stamp | None:
    """The stamp to record after a scan (its own renames included: a stamp read just after them
    is unsettled, so one more scan follows later and sees anything that raced with this one)."""
    pair = stat_pair(folder)
    if pair is None:
        return None
    now = time.time_ns()
    settled = conclusive and now - max(pair) >= SETTLE_NS
    return Stamp(pair[0], pair[1], now, highestmodseq, settled)


def load_stamp(conn: sqlite3.Connection, mailbox_id: int) -> Stamp | None:
    row = conn.execute(
        "SELECT new_mtime, cur_mtime, checked, modseq, settled FROM maildir_sync"
        " WHERE mailbox_id = ?",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        return None
    return Stamp(row[0], row[1], row[2], row[3], bool(row[4]))


def save_stamp(conn: sqlite3.Connection, mailbox_id: int, stamp: Stamp) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO maildir_sync VALUES (?, ?, ?, ?, ?, ?)",
        (mailbox_id, stamp.new, stamp.cur, stamp.checked, stamp.modseq, int(stamp.settled)),
    )


@dataclass
class FolderDiff:
    """What a scan found: the rows and files that disagree."""

    gone: list[tuple[int, str, str]] = field(default_factory=list)  # (uid, base, info): no file
    # (uid, old info, file info, flags bitmask, keywords): renamed by someone else
    renamed: list[tuple[int, str, str, int, str]] = field(default_factory=list)
    from_new: list[tuple[str, str]] = field(default_factory=list)  # (file name, indexed name)
    adopt: list[tuple[str, str]] = field(default_factory=list)  # (sub, file name): no row
    conclusive: bool = True  # False: a row's file is still to be written (look again later)


def list_folder(folder: str) -> tuple[list[str], list[str]]:
    """Names in new/ and cur/ (a Maildir reader ignores names starting with a dot)."""
    out: list[list[str]] = []
    for sub in ("new", "cur"):
        try:
            out.append([n for n in os.listdir(f"{folder}/{sub}") if not n.startswith(".")])
        except FileNotFoundError:
            out.append([])
    return out[0], out[1]


def compare(
    conn: sqlite3.Connection, mailbox_id: int, new_names: list[str], cur_names: list[str]
) -> FolderDiff:
    """Compare the folder's file names with its rows (the caller holds the write lock and the
    folder lock, so no transaction or file worker of the store is half-way)."""
    if not new_names:
        # the usual answer (a look the store's own writes called for): every file is where and
        # as its row says. One column built by SQLite and two sets, ~3x cheaper than row by row.
        expected = conn.execute(
            "SELECT base || ':2,' || info FROM messages WHERE mailbox_id = ?", (mailbox_id,)
        ).fetchall()
        if len(expected) == len(cur_names) and {r[0] for r in expected} == set(cur_names):
            return FolderDiff()
    files: dict[str, tuple[str, str, str]] = {}  # base -> (sub, name, info)
    for name in cur_names:
        base, sep, info = name.partition(":2,")
        if not sep:
            base, info = name.partition(":")[0], ""
        files[base] = ("cur", name, info)
    for name in new_names:
        base, sep, info = name.partition(":2,")
        if not sep:
            base, info = name.partition(":")[0], ""
        files.setdefault(base, ("new", name, info))
    diff = FolderDiff()
    unwritten: set[int] | None = None
    for uid, base, info, mask, kws in conn.execute(
        "SELECT uid, base, info, flags, keywords FROM messages WHERE mailbox_id = ?",
        (mailbox_id,),
    ):
        found = files.pop(base, None)
        if found is None:
            if unwritten is None:
                unwritten = {
                    r[0]
                    for r in conn.execute(
                        "SELECT uid FROM unsynced WHERE mailbox_id = ?", (mailbox_id,)
                    )
                }
            if uid in unwritten:
                diff.conclusive = False  # committed with its bytes; its file comes shortly
            else:
                diff.gone.append((uid, base, info))
            continue
        sub, name, finfo = found
        if sub == "new":
            diff.from_new.append((name, maildir.file_name(base, finfo)))
        if finfo != info:
            diff.renamed.append((uid, info, finfo, mask, kws))
    if files:
        unlinking = {
            maildir.parse_name(r[0].partition("/")[2]).base
            for r in conn.execute(
                "SELECT path FROM pending_unlink WHERE path >= ? AND path < ?",
                (f"@{mailbox_id}/", f"@{mailbox_id}0"),
            )
        }
        writers = {r[0] for r in conn.execute("SELECT token FROM writers")}
        for base, (sub, name, _info) in files.items():
            if base in unlinking:
                continue  # expunged, its file about to go
            if maildir.token_of(base) in writers:
                continue  # a writer's (maybe uncommitted) file: recovery decides
            diff.adopt.append((sub, name))
        diff.adopt.sort(key=lambda t: t[1])  # maildir(5) names start with the delivery time
    return diff


def merge_flags(
    current: frozenset[str], old_info: str, new_info: str, letters: dict[str, str]
) -> frozenset[str]:
    """Apply what a rename changed (old info -> new info) to the indexed flags: flags the name
    cannot show (keywords past z) and changes not yet in the name are kept."""
    before = flags_from_info(old_info, letters)
    after = flags_from_info(new_info, letters)
    return (current - (before - after)) | (after - before)


def adopted_base(name: str, size: int, uid: int, disk_size: int | None) -> str:
    """The store's base name for a file another program delivered: its unique part (up to the
    first comma, so Dovecot's ,S= ,W= fields go) with the store's S=, W= and U= fields."""
    unique = maildir.parse_name(name).base.split(",", 1)[0]
    return maildir.make_base(unique, size, uid, disk_size)

"""Store maintenance: crash recovery at open, `check` (files vs index) and `reindex` (index from files).

check() only reads. reindex() rewrites the index rows of the accounts it scans from their Maildir
files, keeping UIDVALIDITY, UIDs and flags where the files carry them. Both take the index's write
lock while they look, so they see no half-done transaction. They never delete a message file.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from carteiro.store import maildir, names, search_index
from carteiro.store.api import CheckReport, InvalidName, StoreError, local_zone
from carteiro.store.flags import FlagCodec, flags_from_info
from carteiro.store.index import (
    INDEX_NAME,
    MODSEQ_LEASE,
    UID_LEASE,
    IndexCorrupt,
    connect_index,
    emailid_of,
    index_state,
    init_index,
)
from carteiro.store.locks import FolderLock, try_flock

Progress = Callable[[int, int], None]  # (done, total): the CLI's progress bar
PROGRESS_EVERY = 1000  # messages between two calls inside one mailbox

log = logging.getLogger(__name__)


# ---- recovery at open ------------------------------------------------------------------------


class OpeningStore(Protocol):
    """What recovery needs of the store being opened (sqlite_maildir.SqliteMaildirStore): its
    paths, its writer's token and folder lock, and how it removes a pending_unlink entry. A
    protocol, so that this module does not import the store that calls it."""

    token: str
    data_dir: Path
    run_dir: Path
    tmp_dir: Path
    writer_folders: FolderLock

    def maildir_of(self, acct_dir: str) -> Path: ...

    def folder(self, acct_dir: str, mbox_dir: str) -> Path: ...

    def unlink_pending_path(self, rel: str, conn: sqlite3.Connection | None = None) -> None: ...


def recover(store: OpeningStore, conn: sqlite3.Connection) -> None:
    """Finish what crashed processes left: committed deletions, uncommitted links, moved folders.

    Runs under the write lock, so no live writer is between linking files and committing.
    """
    conn.execute("BEGIN IMMEDIATE")
    folders = store.writer_folders.acquire()  # no live process's file work sees a folder mid-move
    try:
        # 0. folders a crash left mid-rename or mid-delete go back to where the index has them
        # (before anything below resolves a path through the index)
        _relocate_folders(store, conn)
        # 1. files of committed expunges/deletions whose unlink did not happen
        pending = [r[0] for r in conn.execute("SELECT path FROM pending_unlink")]
        for rel in pending:
            store.unlink_pending_path(rel, conn)
        conn.execute("DELETE FROM pending_unlink")
        # 2. writers that died: remove the files they linked but never committed
        dead: set[str] = set()
        for (token,) in conn.execute(
            "SELECT token FROM writers WHERE token != ?", (store.token,)
        ).fetchall():
            lock_path = store.run_dir / f"writer-{token}.lock"
            fd = try_flock(lock_path, create=False)
            if fd is None and lock_path.exists():
                continue  # alive
            dead.add(token)
            try:
                _forget_writer(store, conn, token)
                conn.execute("DELETE FROM writers WHERE token = ?", (token,))
                lock_path.unlink(missing_ok=True)
            finally:
                if fd is not None:
                    os.close(fd)
        # 3. folders that uncommitted transactions created (a CREATE, the new mailbox of a RENAME
        # of INBOX): rolled back, so that a later CREATE of that name does not evict them
        _sweep_uncommitted_folders(store, conn, dead)
        # 4. message files of dead writers committed through `bodies` and maybe not fsynced
        # (first the temp files of a restore that a crash interrupted: restores run only under
        # this write lock, so none is running now)
        for entry in os.listdir(store.tmp_dir):
            if entry.startswith(RESTORE_PREFIX):
                (store.tmp_dir / entry).unlink(missing_ok=True)
        restore_bodies(store.data_dir, conn, live_only=True)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        folders.release()


RESTORE_PREFIX = "restore-"


def unlink_pending(
    mail_root: Path,
    conn: sqlite3.Connection,
    entry: str,
    folders: dict[int, Path | None] | None = None,
) -> None:
    """Carry out one pending_unlink entry: `@<mailbox id>/<file name>` names an expunged
    message's file by its mailbox, whose folder is looked up now (it may have moved since the
    expunge); an absolute path is a deleted folder's tombstone; anything else is a path under
    DATA/mail written by an older version. A file a Maildir client renamed (new flags) is found
    by its base name. `folders` caches mailbox folders while the caller holds the folder lock."""
    if entry.startswith("/"):
        maildir.remove_tree(Path(entry))
        return
    if entry.startswith("@"):
        mailbox_id, _, name = entry[1:].partition("/")
        mbid = int(mailbox_id)
        if folders is not None and mbid in folders:
            found_folder = folders[mbid]
        else:
            row = conn.execute(
                "SELECT b.dir, a.dir FROM mailboxes b JOIN accounts a ON a.id = b.account_id"
                " WHERE b.id = ?",
                (mbid,),
            ).fetchone()
            found_folder = None
            if row is not None:
                home = mail_root / row[1] / "Maildir"
                found_folder = home / row[0] if row[0] else home
            if folders is not None:
                folders[mbid] = found_folder
        if found_folder is None:
            return  # the mailbox went too: its folder went to a tombstone with the file
        folder = found_folder
        path = folder / "cur" / name
    else:
        path = mail_root / entry
        folder = path.parent.parent
    # a message file nearly always: unlink first, look at what it was only if that fails
    # (one syscall per expunged message instead of a stat and an unlink)
    try:
        os.unlink(path)
    except (IsADirectoryError, PermissionError):  # Linux: EISDIR; POSIX allows EPERM
        if not path.is_dir():
            raise
        maildir.remove_tree(path)
    except FileNotFoundError:
        parsed = maildir.parse_name(path.name)
        found = maildir.locate(folder, parsed.base, parsed.info)
        if found is not None:
            found.unlink(missing_ok=True)


def _sweep_uncommitted_folders(
    store: OpeningStore, conn: sqlite3.Connection, dead: set[str]
) -> None:
    """Remove a folder no mailbox row names when it is ours (it has a metadata file whose guid
    the index does not know) and every message file in it was linked by a writer that died:
    what a transaction that never committed created. Anything else that is not indexed (a
    folder made by another Maildir program, a file we did not write) stays, for eviction to
    lost+found when its name is wanted."""
    known = {r[0] for r in conn.execute("SELECT guid FROM mailboxes")}
    for acct_id, adir in conn.execute("SELECT id, dir FROM accounts").fetchall():
        home = store.maildir_of(adir)
        try:
            entries = [e for e in os.listdir(home) if e.startswith(".") and e not in (".", "..")]
        except FileNotFoundError:
            continue
        used = {
            r[0] for r in conn.execute("SELECT dir FROM mailboxes WHERE account_id = ?", (acct_id,))
        }
        for entry in entries:
            folder = home / entry
            if entry in used or not folder.is_dir():
                continue
            meta = maildir.read_meta(folder)
            if meta is None or meta.get("guid") in known:
                continue
            files: list[str] = []
            for sub in maildir.SUBDIRS:
                try:
                    files += os.listdir(folder / sub)
                except FileNotFoundError:
                    pass
            if all(maildir.token_of(f) in dead for f in files):
                log.warning("removing folder %s of a transaction that never committed", entry)
                maildir.remove_tree(folder)


def restore_bodies(data_dir: Path, conn: sqlite3.Connection, live_only: bool = False) -> int:
    """Make the files of messages committed through `bodies` (their file not known to be fsynced)
    durable: a file that is missing or differs from the committed bytes (a power cut between the
    COMMIT and the file's fsync) is rewritten from them; then the bodies go. With `live_only`,
    bodies of writers still running are left to them. Runs inside the caller's write transaction;
    returns how many files were rewritten."""
    sql = "SELECT id, data FROM bodies"
    if live_only:
        sql += " WHERE token NOT IN (SELECT token FROM writers)"
    rewritten = 0
    done: list[tuple[int]] = []
    for body_id, data in conn.execute(sql).fetchall():
        dirs: set[Path] = set()
        for base, info, when, mdir, adir in conn.execute(
            "SELECT m.base, m.info, m.internaldate, b.dir, a.dir FROM unsynced u"
            " JOIN messages m ON m.mailbox_id = u.mailbox_id AND m.uid = u.uid"
            " JOIN mailboxes b ON b.id = u.mailbox_id JOIN accounts a ON a.id = b.account_id"
            " WHERE u.body_id = ?",
            (body_id,),
        ).fetchall():
            home = data_dir / "mail" / adir / "Maildir"
            folder = home / mdir if mdir else home
            path = maildir.locate(folder, base, info)
            disk = maildir.disk_bytes(bytes(data), base)  # the form its name says
            if path is not None:
                try:
                    with open(path, "rb") as f:
                        same = f.read() == disk
                except OSError:
                    same = False
                if same:
                    maildir.fsync_dir(path)  # by path: opens the file read-only and fsyncs it
                    dirs.add(path.parent)
                    continue
            target = path or folder / "cur" / maildir.file_name(base, info)
            tmp = data_dir / "tmp" / f"{RESTORE_PREFIX}{secrets.token_hex(8)}"
            maildir.stage_bytes(str(tmp), disk, float(when), sync=True)
            os.rename(tmp, target)
            dirs.add(target.parent)
            rewritten += 1
        for d in dirs:
            maildir.fsync_dir(d)
        done.append((body_id,))
    conn.executemany("DELETE FROM unsynced WHERE body_id = ?", done)
    conn.executemany("DELETE FROM bodies WHERE id = ?", done)
    if rewritten:
        log.warning("rewrote %d message files from the index after a crash", rewritten)
    return rewritten


def _forget_writer(store: OpeningStore, conn: sqlite3.Connection, token: str) -> None:
    marker = f"R{token}."
    for entry in os.listdir(store.tmp_dir):
        if marker in entry:  # staged message files, folders being made (folder-<unique>)
            maildir.remove_tree(store.tmp_dir / entry)
    rows = conn.execute(
        "SELECT b.id, b.dir, a.dir FROM mailboxes b JOIN accounts a ON a.id = b.account_id"
    ).fetchall()
    removed = 0
    for mbid, mdir, adir in rows:
        folder = store.folder(adir, mdir)
        for sub in ("cur", "new"):
            try:
                entries = [e for e in os.listdir(folder / sub) if marker in e]
            except FileNotFoundError:
                continue
            if not entries:
                continue
            known = {
                r[0]
                for r in conn.execute("SELECT base FROM messages WHERE mailbox_id = ?", (mbid,))
            }
            for entry in entries:
                if maildir.parse_name(entry).base not in known:
                    (folder / sub / entry).unlink(missing_ok=True)
                    removed += 1
    if removed:
        log.warning("removed %d uncommitted message files of crashed writer %s", removed, token)


def _relocate_folders(store: OpeningStore, conn: sqlite3.Connection) -> None:
    """Put every folder back where the index says, with the name the index says.

    The index is the truth: a folder move (RENAME) or removal (DELETE) happens inside its
    transaction, so a crash before COMMIT leaves the folder moved but the rows as they were. Such
    a move is rolled back: the folder (found by the guid in its metadata file) returns to its
    place and gets its old name back, and a tombstone of an uncommitted delete comes back."""
    rows = conn.execute(
        "SELECT b.id, b.dir, b.guid, b.name, b.uidvalidity, b.uid_lease, b.modseq_lease,"
        " b.special_use, a.dir FROM mailboxes b JOIN accounts a ON a.id = b.account_id"
    ).fetchall()
    by_guid: dict[str, dict[str, str]] = {}
    for mbid, mdir, guid, name, uidvalidity, uid_lease, modseq_lease, special, adir in rows:
        path = store.folder(adir, mdir)
        meta_wanted = {
            "guid": guid,
            "name": name,
            "uidvalidity": uidvalidity,
            "uid_lease": uid_lease,
            "modseq_lease": modseq_lease,
            "special_use": special,
        }
        if not path.exists():
            tomb = store.tmp_dir / f"deleted-{guid}"
            if mdir and tomb.exists():  # deletion rolled back by the crash
                os.rename(tomb, path)
            elif mdir:
                if adir not in by_guid:
                    by_guid[adir] = {}
                    home = store.maildir_of(adir)
                    for entry in os.listdir(home) if home.exists() else []:
                        meta = maildir.read_meta(home / entry) if entry.startswith(".") else None
                        if meta and isinstance(meta.get("guid"), str):
                            by_guid[adir][str(meta["guid"])] = entry
                found = by_guid[adir].pop(guid, None)
                if found is None:
                    log.error("folder %s of mailbox %d is missing", path, mbid)
                    continue
                # a rename whose commit the crash lost: move the folder back
                log.warning("rolling back an uncommitted move of %s to %s", path.name, found)
                os.rename(store.maildir_of(adir) / found, path)
                maildir.fsync_dir(path.parent)
            else:
                continue
        meta = maildir.read_meta(path)
        if meta is not None and meta.get("guid") == guid and meta.get("name") != name:
            # the new name was written before the move (or the move was undone): the row's wins
            maildir.write_meta(path, {**meta, **meta_wanted})


# ---- check -----------------------------------------------------------------------------------


def _connect(data_dir: Path) -> sqlite3.Connection:
    path = Path(data_dir) / INDEX_NAME
    try:
        init_index(path)
        return connect_index(path)
    except sqlite3.DatabaseError as e:
        raise IndexCorrupt(path, str(e)) from None


def _count_files(home: Path) -> int:
    """Message files in a Maildir and its folders (the total of reindex's progress)."""
    n = 0
    for folder in [home, *(home / e for e in os.listdir(home) if e.startswith("."))]:
        for sub in ("cur", "new"):
            try:
                n += sum(1 for e in os.listdir(folder / sub) if not e.startswith("."))
            except (FileNotFoundError, NotADirectoryError):
                continue
    return n


def _listing(folder: Path) -> dict[str, str]:
    """base -> path relative to the folder, for cur/ and new/."""
    out: dict[str, str] = {}
    for sub in ("cur", "new"):
        try:
            entries = os.listdir(folder / sub)
        except FileNotFoundError:
            continue
        for entry in entries:
            if not entry.startswith("."):
                out[maildir.parse_name(entry).base] = f"{sub}/{entry}"
    return out


def check(
    data_dir: Path | str, account: str | None = None, progress: Progress | None = None
) -> CheckReport:
    """Compare the Maildir files with the index: index rows without a file (missing_files), files
    without a row (orphan_files, paths relative to the data dir) and size mismatches.

    Holds the index write lock while it runs, so writers wait and nothing is half-written.
    """
    data_dir = Path(data_dir)
    mail_root = data_dir / "mail"
    report = CheckReport()
    if index_state(data_dir) == "lost":
        raise StoreError(
            f"the mail index {data_dir / INDEX_NAME} is missing or empty beside existing mail;"
            f" run `carteiro store reindex --data {data_dir}` to rebuild it from the files"
        )
    conn = _connect(data_dir)
    try:
        conn.execute("BEGIN IMMEDIATE")
        accounts = conn.execute("SELECT id, name, dir FROM accounts").fetchall()
        total = done = 0
        if progress is not None:
            total = conn.execute(
                "SELECT count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
                " JOIN accounts a ON a.id = b.account_id WHERE ? IS NULL OR a.name = ?",
                (account, account),
            ).fetchone()[0]
            progress(0, total)
        # committed with their bytes, their file written shortly after by a running server
        unwritten = {(m, u) for m, u in conn.execute("SELECT mailbox_id, uid FROM unsynced")}
        # expunged, their file removed shortly after by a running server's file worker
        unlinking: set[tuple[int, str]] = set()
        for (entry,) in conn.execute("SELECT path FROM pending_unlink WHERE path LIKE '@%'"):
            mbid, _, fname = entry[1:].partition("/")
            unlinking.add((int(mbid), maildir.parse_name(fname).base))
        for acct_id, name, adir in accounts:
            if account is not None and name != account:
                continue
            home = mail_root / adir / "Maildir"
            indexed_dirs = set()
            for mbid, mname, mdir in conn.execute(
                "SELECT id, name, dir FROM mailboxes WHERE account_id = ?", (acct_id,)
            ).fetchall():
                indexed_dirs.add(mdir)
                folder = home / mdir if mdir else home
                files = _listing(folder)
                for uid, base, size, info in conn.execute(
                    "SELECT uid, base, size, info FROM messages WHERE mailbox_id = ?", (mbid,)
                ):
                    done += 1
                    if progress is not None and done % PROGRESS_EVERY == 0:
                        progress(done, total)
                    rel = files.pop(base, None)
                    if rel is None:
                        if (mbid, uid) not in unwritten:
                            report.missing_files.append((name, mname, uid))
                        continue
                    try:
                        actual = os.stat(folder / rel).st_size
                    except FileNotFoundError:
                        report.missing_files.append((name, mname, uid))
                        continue
                    parsed = maildir.parse_name(base)
                    if parsed.wire is not None:  # an LF file: S= is its size, W= the message's
                        if actual != parsed.size or parsed.wire != size:
                            report.size_mismatches.append((name, mname, uid))
                    elif actual != size:
                        report.size_mismatches.append((name, mname, uid))
                    if not rel.startswith("cur/") or maildir.parse_name(rel[4:]).info != info:
                        report.flag_mismatches.append((name, mname, uid))
                for base, rel in files.items():
                    if (mbid, base) not in unlinking:
                        report.orphan_files.append(str((folder / rel).relative_to(data_dir)))
            if home.exists():
                for entry in sorted(os.listdir(home)):
                    if (
                        entry.startswith(".")
                        and entry not in indexed_dirs
                        and (home / entry / "cur").is_dir()
                    ):
                        for rel in _listing(home / entry).values():
                            report.orphan_files.append(
                                str((home / entry / rel).relative_to(data_dir))
                            )
        if account is None:
            report.search_index = search_index.check(conn)
        conn.execute("ROLLBACK")
        if progress is not None:
            progress(total, total)
    finally:
        conn.close()
    return report


# ---- reindex ---------------------------------------------------------------------------------


@dataclass
class ReindexReport:
    """What `carteiro store reindex` rebuilt."""

    accounts: int = 0
    mailboxes: int = 0
    messages: int = 0
    new_uidvalidity: list[tuple[str, str]] = field(default_factory=list)  # account, mailbox
    skipped: list[str] = field(default_factory=list)  # paths that could not be indexed, and why
    searchable: int = 0  # messages parsed into the search index


def reindex(
    data_dir: Path | str, account: str | None = None, progress: Progress | None = None
) -> ReindexReport:
    """Rebuild the index rows of `account` (or of every account found under DATA/mail) from the
    Maildir files. UIDVALIDITY and UIDs are kept when the folder's metadata file and the file names
    carry them (else the folder gets a new UIDVALIDITY and fresh UIDs); flags come from the file
    names (keywords via the account's keywords file). UIDNEXT and HIGHESTMODSEQ restart above the
    leases recorded in the metadata, so no UID is reused and MODSEQ never goes backwards.
    A corrupt index is moved aside first. Running servers receive a Resync.
    """

    data_dir = Path(data_dir)
    index = data_dir / INDEX_NAME
    if index.exists():
        try:
            probe = connect_index(index)
            ok = probe.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            probe.close()
        except sqlite3.DatabaseError:
            ok = False
        if not ok:
            aside = index.with_name(f"{INDEX_NAME}.corrupt-{int(time.time())}")
            log.error("index is corrupt; moving it to %s", aside)
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(index) + suffix)
                if src.exists():
                    os.rename(src, str(aside) + suffix)
    report = ReindexReport()
    mail_root = data_dir / "mail"
    homes: list[tuple[str, str]] = []
    for domain_dir in sorted(os.listdir(mail_root)) if mail_root.exists() else []:
        for local_dir in sorted(os.listdir(mail_root / domain_dir)):
            if (mail_root / domain_dir / local_dir / "Maildir" / "cur").is_dir():
                name = names.account_from_path_parts(domain_dir, local_dir)
                if account is None or name == account:
                    homes.append((name, f"{domain_dir}/{local_dir}"))
    conn = _connect(data_dir)
    codec = FlagCodec()
    try:
        conn.execute("BEGIN IMMEDIATE")
        # the files of messages committed through `bodies` first, so that scanning finds them,
        # and the unlinks of committed expunges, so that it does not bring them back
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'bodies'").fetchone():
            restore_bodies(data_dir, conn)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'pending_unlink'").fetchone():
            for (entry,) in conn.execute("SELECT path FROM pending_unlink").fetchall():
                unlink_pending(data_dir / "mail", conn, entry)
            conn.execute("DELETE FROM pending_unlink")
        # one bar: the files scanned, then the messages parsed for SEARCH (its total grows
        # by their number once the scan is done)
        files = (
            sum(_count_files(mail_root / adir / "Maildir") for _, adir in homes)
            if progress is not None
            else 0
        )
        tick = None if progress is None else (lambda: progress(report.messages, files))
        for name, adir in homes:
            _reindex_account(
                conn, codec, data_dir, name, adir, report, UID_LEASE, MODSEQ_LEASE, tick
            )
        conn.execute("COMMIT")
        scanned = report.messages
        search_index.ensure_format(conn)
        to_parse = search_index.unindexed(conn) if progress is not None else 0
        # the search index of what was rebuilt (and of anything else not indexed yet), now
        # rather than by the next server's background indexer
        report.searchable = search_index.build(
            conn,
            search_index.file_reader(
                lambda adir, mdir: (
                    mail_root / adir / "Maildir" / mdir if mdir else mail_root / adir / "Maildir"
                )
            ),
            None if progress is None else (lambda n: progress(scanned + n, scanned + to_parse)),
        )
        if progress is not None:
            progress(scanned + to_parse, scanned + to_parse)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return report


def _reindex_account(
    conn: sqlite3.Connection,
    codec: FlagCodec,
    data_dir: Path,
    name: str,
    adir: str,
    report: ReindexReport,
    uid_lease: int,
    modseq_lease: int,
    tick: Callable[[], None] | None = None,
) -> None:
    home = data_dir / "mail" / adir / "Maildir"
    row = conn.execute(
        "SELECT id, last_uidvalidity FROM accounts WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        cur = conn.execute("INSERT INTO accounts (name, dir) VALUES (?, ?)", (name, adir))
        acct_id, last_uv = int(cur.lastrowid or 0), 0
    else:
        acct_id, last_uv = int(row[0]), int(row[1])
        conn.execute("UPDATE accounts SET dir = ? WHERE id = ?", (adir, acct_id))
    letters = maildir.read_keywords(home)
    keywords = [letters[ch] for ch in sorted(letters)]
    conn.execute("UPDATE accounts SET keywords = ? WHERE id = ?", (" ".join(keywords), acct_id))
    old: dict[
        str, tuple[int, int, int, int]
    ] = {}  # guid -> id, uidvalidity, uidnext, highestmodseq
    for mbid, guid, uv, uidnext, hms in conn.execute(
        "SELECT id, guid, uidvalidity, uidnext, highestmodseq FROM mailboxes WHERE account_id = ?",
        (acct_id,),
    ).fetchall():
        old[guid] = (mbid, uv, uidnext, hms)
    old_ids = [v[0] for v in old.values()]
    old_uids: dict[int, set[int]] = {}  # for the expunged log: listings and QRESYNC rely on it
    # EMAILID, SAVEDATE and INTERNALDATE's zone of each file's unique name (the part of its
    # name no rename changes): the files do not carry them, so they are kept from the index
    # being rebuilt when it is readable; otherwise EMAILID is derived from the unique name,
    # SAVEDATE is unknown and the zone is the server's local zone at the file's mtime.
    kept: dict[str, tuple[str | None, float | None, int | None]] = {}
    for mbid in old_ids:
        uids_here = old_uids[mbid] = set()
        for uid, base, emailid, savedate, tz in conn.execute(
            "SELECT uid, base, emailid, savedate, internaldate_tz FROM messages"
            " WHERE mailbox_id = ?",
            (mbid,),
        ):
            uids_here.add(uid)
            kept[base.split(",", 1)[0]] = (emailid, savedate, tz)
    for table in ("messages", "dirty_files", "listings", "maildir_sync"):
        conn.executemany(f"DELETE FROM {table} WHERE mailbox_id = ?", [(i,) for i in old_ids])
    search_index.clear(conn, old_ids)  # built again from the files once the index is
    conn.execute("DELETE FROM mailboxes WHERE account_id = ?", (acct_id,))
    subfolders = sorted(
        e for e in os.listdir(home) if e.startswith(".") and (home / e / "cur").is_dir()
    )
    folders = ["", *subfolders]
    seen_names: set[str] = set()
    kept_ids: set[int] = set()
    for mdir in folders:
        folder = home / mdir if mdir else home
        meta = maildir.read_meta(folder) or {}
        mname = meta.get("name") if isinstance(meta.get("name"), str) else None
        if mname is not None:
            try:
                mname = names.normalize_mailbox_name(str(mname))
            except InvalidName:
                mname = None
        if mname is None:
            mname = names.name_from_folder_dir(mdir)
        if mdir == "":
            mname = names.INBOX
        if mname is None or mname in seen_names:
            report.skipped.append(f"{folder}: no usable mailbox name")
            continue
        seen_names.add(mname)
        guid = meta.get("guid") if isinstance(meta.get("guid"), str) else None
        guid = str(guid) if guid else secrets.token_hex(16)
        files: list[tuple[maildir.ParsedName, str, os.stat_result, str]] = []
        for sub in ("cur", "new"):
            for entry in os.listdir(folder / sub):
                if entry.startswith("."):
                    continue
                try:
                    st = os.stat(folder / sub / entry)
                except FileNotFoundError:
                    continue
                files.append((maildir.parse_name(entry), sub, st, entry))
        uids = [p.uid for p, _, _, _ in files]
        meta_uv = meta.get("uidvalidity")
        keep = (
            isinstance(meta_uv, int)
            and meta_uv > 0
            and all(u is not None and u > 0 for u in uids)
            and len(set(uids)) == len(uids)
        )
        prev = old.get(guid)
        if keep:
            assert isinstance(meta_uv, int)
            uidvalidity = meta_uv
            uid_floor = max([int(meta.get("uid_lease") or 1)] + [u + 1 for u in uids if u])  # type: ignore[call-overload]
            modseq_floor = int(meta.get("modseq_lease") or 1)  # type: ignore[call-overload]
            if prev is not None and prev[1] == uidvalidity:
                uid_floor = max(uid_floor, prev[2])
                modseq_floor = max(modseq_floor, prev[3])
        else:
            uidvalidity = max(int(time.time()), last_uv + 1) & 0xFFFFFFFF or 1
            last_uv = uidvalidity
            files.sort(key=lambda f: (f[2].st_mtime, f[0].base))
            uid_floor = len(files) + 1
            modseq_floor = 1
            report.new_uidvalidity.append((name, mname))
            conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", (prev[0] if prev else -1,))
        modseq = modseq_floor + 1
        mbid = prev[0] if prev is not None and prev[0] not in kept_ids else None
        special = meta.get("special_use") if isinstance(meta.get("special_use"), str) else None
        params: tuple[Any, ...] = (
            acct_id,
            mname,
            mdir,
            guid,
            uidvalidity,
            uid_floor,
            modseq,
            special,
            1,
            uid_floor + uid_lease,
            modseq + modseq_lease,
        )
        if mbid is None:
            cur = conn.execute(
                "INSERT INTO mailboxes (account_id, name, dir, guid, uidvalidity, uidnext,"
                " highestmodseq, special_use, selectable, uid_lease, modseq_lease)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                params,
            )
            mbid = int(cur.lastrowid or 0)
        else:
            conn.execute(
                "INSERT INTO mailboxes (id, account_id, name, dir, guid, uidvalidity, uidnext,"
                " highestmodseq, special_use, selectable, uid_lease, modseq_lease)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (mbid, *params),
            )
        kept_ids.add(mbid)
        maildir.write_meta(
            folder,
            {
                "guid": guid,
                "name": mname,
                "uidvalidity": uidvalidity,
                "special_use": special,
                "uid_lease": uid_floor + uid_lease,
                "modseq_lease": modseq + modseq_lease,
            },
        )
        rows = []
        for i, (parsed, sub, st, entry) in enumerate(files):
            uid = parsed.uid if keep else i + 1
            assert uid is not None
            base = parsed.base
            src = folder / sub / entry
            size, disk = st.st_size, None
            if parsed.wire is not None:  # an LF file (W=: its message's size)
                if parsed.size == st.st_size:
                    size, disk = parsed.wire, st.st_size
                else:  # changed by hand since it was named: look at what it holds now
                    size, disk = maildir.wire_size(str(src))
            if not keep or (parsed.wire is not None and (size, disk) != (parsed.wire, parsed.size)):
                # the file name must carry the new UID, and the form its bytes are in
                unique = base.split(",", 1)[0]
                base = maildir.make_base(unique, size, uid, disk)
            dst = folder / "cur" / maildir.file_name(base, parsed.info)
            if src != dst:
                os.rename(src, dst)
            flags = flags_from_info(parsed.info, letters)
            mask, kws = codec.encode(flags)
            unique = base.split(",", 1)[0]
            emailid, savedate, tz = kept.get(unique, (None, None, None))
            rows.append(
                (
                    mbid,
                    uid,
                    modseq,
                    mask,
                    kws,
                    st.st_mtime,
                    size,
                    base,
                    parsed.info,
                    emailid or emailid_of(unique),
                    savedate,
                    local_zone(st.st_mtime) if tz is None else tz,
                )
            )
        conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        if keep and prev is not None and prev[0] == mbid and prev[1] == uidvalidity:
            vanished = old_uids.get(mbid, set()) - {r[1] for r in rows}
            conn.executemany(
                "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                [(mbid, uid, modseq) for uid in sorted(vanished)],
            )
        report.mailboxes += 1
        report.messages += len(rows)
        if tick is not None:
            tick()
    conn.execute(
        "INSERT OR IGNORE INTO subscriptions (account_id, name) SELECT account_id, name FROM mailboxes"
        " WHERE account_id = ? AND NOT EXISTS (SELECT 1 FROM subscriptions WHERE account_id = ?)",
        (acct_id, acct_id),
    )
    conn.execute("UPDATE accounts SET last_uidvalidity = ? WHERE id = ?", (last_uv, acct_id))
    conn.execute(
        'INSERT INTO changes (origin, account, event) VALUES (\'reindex\', ?, \'{"t":"r","m":null}\')',
        (name,),
    )
    report.accounts += 1

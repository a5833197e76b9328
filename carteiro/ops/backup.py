"""`carteiro backup` and `carteiro restore`: a verifiable copy of a data dir, taken while it serves.

What goes in: carteiro.toml, the directory (SQLite backup API), the store (store/snapshot.py: its
index and Maildir files cut at one instant), the outbound queue (its SQLite file by the backup API,
its message files linked first so none is lost in between), DKIM keys, the TLS pair and mbox
spools (each copied under the spool's own lock). manifest.json lists every file with its size and
SHA-256 and the message count of every mailbox; `verify` checks all of it, and `restore` checks
again before it writes anything, then opens the restored store (recovery), runs `store check`
and compares the counts. What stays out: locks, sockets, temp files, the server's pid and state.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carteiro.config import CONFIG_NAME, Config
from carteiro.mail.metadata_db import METADATA_FILE

FORMAT = "carteiro-backup 1"
MANIFEST = "manifest.json"
Progress = Callable[[int, int], None]
ProgressFactory = Callable[[str], Progress]


class BackupError(Exception):
    """A backup that cannot be made, verified or restored; the message says what and where."""


@dataclass
class BackupReport:
    dest: Path
    files: int = 0
    bytes: int = 0
    messages: int = 0
    mailboxes: int = 0
    queued: int = 0
    locked_seconds: float = 0.0  # how long the store's writers waited for the cut
    warnings: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (its WAL included), as one file."""
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=60)
    try:
        out = sqlite3.connect(dst)
        try:
            source.backup(out)
            out.execute("PRAGMA journal_mode=DELETE")
        finally:
            out.close()
    finally:
        source.close()
    os.chmod(dst, 0o600)


def _copy_tree(src: Path, dst: Path) -> int:
    n = 0
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True, mode=0o700)
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".tmp"):
                continue
            shutil.copy2(os.path.join(root, name), dst / rel / name)
            n += 1
    return n


def _files(root: Path) -> Iterator[Path]:
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            yield Path(dirpath, name)


def _backup_queue(data: Path, dest: Path, report: BackupReport) -> None:
    from carteiro.queue.service import QUEUE_DIR, snapshot

    qdir = data / QUEUE_DIR
    if not (qdir / "queue.sqlite").exists():
        return
    staging = data / f".backup-queue-{secrets.token_hex(6)}"
    staging.mkdir(mode=0o700)
    try:
        msgdir = qdir / "msg"
        if msgdir.is_dir():
            # linked before the index is copied: a message sent (and its file removed) in
            # between still has its bytes here
            for p in msgdir.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    os.link(p, staging / p.name)
        _sqlite_copy(qdir / "queue.sqlite", dest / QUEUE_DIR / "queue.sqlite")
        (dest / QUEUE_DIR / "msg").mkdir(parents=True, exist_ok=True, mode=0o700)
        msgs = snapshot(dest / QUEUE_DIR)
        # reading it through the spool's connection turned it to WAL: one file again
        conn = sqlite3.connect(dest / QUEUE_DIR / "queue.sqlite")
        try:
            conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            conn.close()
        report.queued = len(msgs)
        for m in msgs:
            if m.inline:
                continue
            src = staging / m.id
            if not src.exists():  # queued after the links were made: its file is there now
                with contextlib.suppress(FileNotFoundError):
                    os.link(msgdir / m.id, src)
            if src.exists():
                shutil.copy2(src, dest / QUEUE_DIR / "msg" / m.id)
            else:
                report.warnings.append(f"queued message {m.id}: its file went before the copy")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _backup_mbox(cfg: Config, dest: Path) -> None:
    from carteiro.mail.mbox_spool import MboxSpool

    src = cfg.path(cfg.smtp.mbox_dir)
    if not src.is_dir():
        return
    spool = MboxSpool(src, cfg.smtp.mbox_lock_timeout)
    out = dest / "mbox"
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    from carteiro.app import open_directory

    directory = open_directory(cfg)
    try:
        owners = {spool.path_for(u).name: u for u in directory.users()}
    finally:
        directory.close()
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.name.endswith(".lock"):
            continue
        account = owners.get(p.name)
        if account is None:
            shutil.copy2(p, out / p.name)
            continue
        with spool.locked([account]):  # no delivery half-written into the copy
            shutil.copy2(p, out / p.name)


def backup(cfg: Config, dest: Path, progress: ProgressFactory | None = None) -> BackupReport:
    """Copy the data dir of `cfg` to the new directory `dest` (online: the server may run)."""
    from carteiro.mailauth.dkim import DKIM_DIR
    from carteiro.store.snapshot import snapshot

    data = cfg.data_dir
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} exists and is not empty: give a new directory")
    if dest.resolve().is_relative_to(data.resolve()):
        raise BackupError(f"{dest} is inside the data dir {data}: give a directory outside it")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(dest, 0o700)
    report = BackupReport(dest)
    shutil.copy2(data / CONFIG_NAME, dest / CONFIG_NAME)
    if (data / "directory.sqlite").exists():
        _sqlite_copy(data / "directory.sqlite", dest / "directory.sqlite")
    if (data / METADATA_FILE).exists():  # IMAP METADATA entries (keyed by mailbox ids)
        _sqlite_copy(data / METADATA_FILE, dest / METADATA_FILE)
    store_progress = progress("copying messages") if progress else None
    snap = snapshot(data, data / f".backup-{secrets.token_hex(6)}", dest, store_progress)
    _backup_queue(data, dest, report)
    for name in (DKIM_DIR,):
        if (data / name).is_dir():
            _copy_tree(data / name, dest / name)
    for key in (cfg.tls.cert, cfg.tls.key):
        p = cfg.path(key)
        if p.is_file() and p.resolve().is_relative_to(data.resolve()):
            target = dest / p.resolve().relative_to(data.resolve())
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copy2(p, target)
        elif p.is_file():
            report.warnings.append(f"{p} is outside the data dir: not in the backup")
    _backup_mbox(cfg, dest)
    report.mailboxes = sum(len(v) for v in snap.counts.values())
    report.messages = sum(n for v in snap.counts.values() for n in v.values())
    report.locked_seconds = snap.locked_seconds
    files: dict[str, dict[str, Any]] = {}
    paths = list(_files(dest))
    hashing = progress("checksums") if progress else None
    for i, p in enumerate(paths, 1):
        rel = p.relative_to(dest).as_posix()
        files[rel] = {"size": p.stat().st_size, "sha256": _sha256(p)}
        report.bytes += files[rel]["size"]
        if hashing:
            hashing(i, len(paths))
    report.files = len(files)
    manifest = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": str(data.resolve()),
        "hostname": cfg.hostname,
        "store": snap.counts,
        "queued": report.queued,
        "files": files,
    }
    tmp = dest / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    os.chmod(tmp, 0o600)
    _fsync_tree(dest)
    os.replace(tmp, dest / MANIFEST)  # last: a backup without its manifest is not a backup
    _fsync_dir(dest)
    return report


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Everything written under `root` durable: one sync(2) flushes the whole filesystem's dirty
    pages at once, where an fsync per file would wait for each (measured: bench/backup.py)."""
    os.sync()
    for dirpath, _dirs, _files in os.walk(root):
        _fsync_dir(Path(dirpath))


def read_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest: Any = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(
            f"{src}: no {MANIFEST}: not a carteiro backup (or an unfinished one)"
        ) from None
    except ValueError as e:
        raise BackupError(f"{src / MANIFEST}: unreadable: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{src / MANIFEST}: not a {FORMAT} manifest")
    return manifest


def verify(src: Path, progress: Progress | None = None) -> list[str]:
    """Every problem of the backup at `src` (empty: it is whole): files missing, changed or
    extra, and an index that SQLite finds damaged."""
    manifest = read_manifest(src)
    files: dict[str, Any] = manifest["files"]
    problems: list[str] = []
    for i, (rel, info) in enumerate(sorted(files.items()), 1):
        p = src / rel
        if not p.is_file():
            problems.append(f"missing: {rel}")
        elif p.stat().st_size != info["size"] or _sha256(p) != info["sha256"]:
            problems.append(f"changed since the backup: {rel}")
        if progress:
            progress(i, len(files))
    for p in _files(src):
        rel = p.relative_to(src).as_posix()
        if rel != MANIFEST and rel not in files:
            problems.append(f"not in the manifest: {rel}")
    for db in ("index.sqlite", "directory.sqlite", "queue/queue.sqlite", METADATA_FILE):
        if (src / db).is_file() and not problems:
            # immutable: reading leaves no -wal/-shm beside a backup's files
            conn = sqlite3.connect(f"file:{src / db}?mode=ro&immutable=1", uri=True)
            try:
                (result,) = conn.execute("PRAGMA integrity_check").fetchone()
            finally:
                conn.close()
            if result != "ok":
                problems.append(f"{db}: SQLite integrity check: {result}")
    return problems


@dataclass
class RestoreReport:
    data_dir: Path
    files: int = 0
    messages: int = 0
    mailboxes: int = 0
    problems: list[str] = field(default_factory=list)


async def restore(
    src: Path, data_dir: Path, progress: ProgressFactory | None = None
) -> RestoreReport:
    """Restore the backup `src` into the new or empty `data_dir`; verified before and after."""
    from carteiro.app import open_store
    from carteiro.config import load
    from carteiro.store import maintenance
    from carteiro.store.snapshot import mailbox_counts

    src, data_dir = Path(src), Path(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty: restore into a new or empty directory")
    manifest = read_manifest(src)
    problems = verify(src, progress("verifying the backup") if progress else None)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BackupError(f"{src}: the backup is damaged: {'; '.join(problems[:5])}{more}")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    report = RestoreReport(data_dir)
    files: dict[str, Any] = manifest["files"]
    copying = progress("restoring files") if progress else None
    for i, rel in enumerate(sorted(files), 1):
        target = data_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(src / rel, target)
        os.chmod(target, 0o600)
        if copying:
            copying(i, len(files))
    report.files = len(files)
    _fsync_tree(data_dir)
    # the restored store opens as after a crash: recovery writes what the index holds and the
    # files lack (messages committed with their bytes, flag renames), then the usual checks
    store = open_store(load(data_dir))
    await store.close()
    check = maintenance.check(data_dir)
    for acct, mbox, uid in check.missing_files:
        report.problems.append(f"missing file: {acct} {mbox} UID {uid}")
    for path in check.orphan_files:
        report.problems.append(f"file not in the index: {path}")
    for acct, mbox, uid in check.size_mismatches:
        report.problems.append(f"size differs from the index: {acct} {mbox} UID {uid}")
    counts = mailbox_counts(data_dir / "index.sqlite")
    if counts != manifest["store"]:
        report.problems.append("mailbox counts differ from the backup's manifest")
    report.mailboxes = sum(len(v) for v in counts.values())
    report.messages = sum(n for v in counts.values() for n in v.values())
    return report

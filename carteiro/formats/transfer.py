"""Import and export between an account's mailboxes and a mailbox in one of the formats.

Message bytes are carried unchanged except for line endings (LF in these Unix formats, CRLF in the
store) and each format's own metadata; flags go where the format has a place for them. A malformed
input message is reported with its position and skipped, never dropped silently. Never modifies a
source; never rewrites an existing destination, only appends to it.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from carteiro.formats.message import (
    INBOX,
    Format,
    Progress,
    Reader,
    Report,
    Skipped,
    Summary,
    Unrepresentable,
    to_crlf,
    to_lf,
)
from carteiro.formats.registry import (
    dest_folder_path,
    file_signature_ok,
    open_reader,
    open_writer,
    source_folders,
    target_mailbox,
)
from carteiro.store import names
from carteiro.store.api import (
    AccountStore,
    InvalidName,
    MailboxExists,
    MailboxNotFound,
    MessageMeta,
    OverQuota,
    StoreError,
)
from carteiro.store.flags import normalize_flags


def _valid_flags(flags: frozenset[str], dropped: Counter[str]) -> frozenset[str]:
    out: set[str] = set()
    for f in flags:
        try:
            out |= normalize_flags([f])
        except StoreError:
            dropped[f] += 1
    return frozenset(out)


async def _ensure_mailbox(account: AccountStore, name: str) -> None:
    try:
        info = await account.get_mailbox(name)
        if info.selectable:
            return
    except MailboxNotFound:
        pass
    try:
        await account.create_mailbox(name)
    except MailboxExists:
        pass


async def import_mailbox(
    account: AccountStore,
    fmt: Format,
    source: Path,
    folder: str = INBOX,
    *,
    all_folders: bool = False,
    max_size: int | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    report: Report | None = None,
) -> Summary:
    """Appends every message of `source` to `folder` (created if missing), in file order.

    With `all_folders`, `source` is a folder tree (see source_folders): its root goes to `folder`,
    sub-folders to mailboxes of the same name (under `folder` unless that is INBOX). Raises
    MailboxFormatError when `source` cannot be read at all; anything per message is in the Summary.
    """
    summary = Summary()
    dropped: Counter[str] = Counter()

    def skip(s: Skipped) -> None:
        summary.skipped.append(s)
        if report:
            report(s)

    names.normalize_mailbox_name(folder)  # raises InvalidName before anything happens
    plan: list[tuple[str, Reader]] = []
    trees = source_folders(fmt, source) if all_folders else [("", source)]
    for rel, path in trees:
        label = ""
        if all_folders:  # positions name the folder: "Sent.sbd/2023: message 4 at byte offset 9"
            label = str(path.relative_to(source)) if path != source else source.name
        try:
            target = target_mailbox(folder, rel)
        except InvalidName as e:
            skip(Skipped(label or str(path), f"no mailbox name for this folder: {e}"))
            continue
        if all_folders and fmt.single_file and not file_signature_ok(fmt, path):
            skip(Skipped(label, f"not a {fmt.value} file"))
            continue
        plan.append((target, open_reader(fmt, path, max_size, label, summary.warnings.append)))

    total = sum(r.count for _, r in plan)
    done = 0
    for target, reader in plan:
        if not dry_run:
            await _ensure_mailbox(account, target)
        n = 0
        for item in reader:
            done += 1
            if isinstance(item, Skipped):
                skip(item)
            else:
                flags = _valid_flags(item.flags, dropped)
                try:
                    if not dry_run:
                        await account.append(target, to_crlf(item.data), flags, item.internaldate)
                except OverQuota as e:
                    skip(Skipped(item.position, f"refused by the store: {e or 'over quota'}"))
                    summary.stopped = f"over quota in {target}"
                    break
                except StoreError as e:
                    skip(Skipped(item.position, f"refused by the store: {e}"))
                else:
                    n += 1
                    summary.done += 1
            if progress:
                progress(done, total)
        summary.folders.append((target, n))
        if summary.stopped:
            break
    for kw, count in sorted(dropped.items()):
        summary.warnings.append(
            f"keyword {kw!r} is not a valid IMAP keyword: left off {count} message(s)"
        )
    return summary


async def _read_ahead(
    account: AccountStore,
    mailbox_id: int,
    metas: Sequence[MessageMeta],
    window: int = 8,
    max_bytes: int = 16 * 1024 * 1024,
) -> AsyncIterator[tuple[MessageMeta, bytes | None]]:
    """(meta, bytes or None if expunged meanwhile), in order, reading a few messages ahead so the
    store's reads overlap our (blocking) writes."""
    pending: deque[tuple[MessageMeta, asyncio.Future[bytes]]] = deque()
    upcoming = iter(metas)
    in_flight = 0
    try:
        while True:
            while len(pending) < window and (not pending or in_flight < max_bytes):
                meta = next(upcoming, None)
                if meta is None:
                    break
                pending.append(
                    (meta, asyncio.ensure_future(account.read_message(mailbox_id, meta.uid)))
                )
                in_flight += meta.size
            if not pending:
                return
            meta, fut = pending.popleft()
            in_flight -= meta.size
            try:
                data: bytes | None = await fut
            except KeyError:
                data = None
            yield meta, data
    finally:
        for _, fut in pending:
            fut.cancel()


async def export_mailbox(
    account: AccountStore,
    fmt: Format,
    dest: Path,
    folder: str = INBOX,
    *,
    all_folders: bool = False,
    progress: Progress | None = None,
    report: Report | None = None,
) -> Summary:
    """Appends the messages of `folder` (or, with `all_folders`, of every mailbox, laid out as
    dest_folder_path says) to `dest`, in UID order. Flags the format cannot carry are counted in
    Summary.lost_flags; a message the format cannot hold is skipped and reported."""
    summary = Summary()

    def skip(s: Skipped) -> None:
        summary.skipped.append(s)
        if report:
            report(s)

    if all_folders:
        # INBOX first: for Maildir and MH it is the root that the other folders live in
        boxes = sorted(
            (b for b in await account.list_mailboxes() if b.selectable),
            key=lambda b: (b.name != INBOX, b.name),
        )
    else:
        boxes = [await account.get_mailbox(folder)]
    plan = [(b, await account.list_messages(b.id)) for b in boxes]
    total = sum(len(metas) for _, metas in plan)
    done = 0
    for box, metas in plan:
        path = dest_folder_path(fmt, dest, box.name) if all_folders else dest
        keywords = {f for m in metas for f in m.flags if not f.startswith("\\")}
        writer = open_writer(fmt, path, keywords, subfolder=all_folders and box.name != INBOX)
        n = 0
        try:
            async for meta, data in _read_ahead(account, box.id, metas):
                done += 1
                pos = f"{box.name} UID {meta.uid}"
                try:
                    if data is None:
                        raise KeyError(meta.uid)
                    lost = writer.add(to_lf(data), meta.flags, meta.internaldate)
                except KeyError:
                    skip(Skipped(pos, "expunged during the export"))
                except Unrepresentable as e:
                    skip(Skipped(pos, f"cannot be stored in {fmt.value}: {e}"))
                else:
                    summary.lost_flags.update(lost)
                    summary.done += 1
                    n += 1
                if progress:
                    progress(done, total)
        finally:
            writer.close()
        summary.folders.append((box.name, n))
    return summary

"""`carteiro mailbox import|export` and `carteiro store check|reindex`.

Thin: arguments, a progress bar on stderr (only when it is a terminal), one line per skipped message
on stderr, a summary on stdout, and sysexits-style exit statuses. The work happens in
carteiro.formats (transfer.py) and carteiro.store.maintenance.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from carteiro.cli import EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_USAGE, CLIError, load_config
from carteiro.core.address import AddressError, canonical
from carteiro.core.plural import plural

if TYPE_CHECKING:  # imported when a command runs, so other commands start fast
    from carteiro.config import Config
    from carteiro.formats.message import Skipped, Summary

EX_NOINPUT = 66  # the source cannot be read
EX_CANTCREAT = 73  # the destination cannot be written

FORMATS = ["mbox", "maildir", "mh", "babyl", "mmdf"]  # formats.message.Format values
INBOX = "INBOX"
T = TypeVar("T")


class ProgressBar:
    """`label [#####.....] 1234/5000  24%  820/s  ETA 0:00:04` redrawn in place on a terminal.

    Shows nothing for runs shorter than `delay` seconds, and nothing at all when the stream is not a
    terminal (logs and pipes get only the summary). Call clear() before printing another line.
    """

    WIDTH = 30

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        delay: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.delay = delay
        self.clock = clock
        self.start = clock()
        self.last = 0.0
        self.drawn = 0  # characters on the line now

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        elapsed = now - self.start
        if elapsed < self.delay or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        frac = done / total if total else 1.0
        filled = int(self.WIDTH * frac)
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{done}/{total} {int(frac * 100):3d}%"
        )
        if 0 < done < total:
            left = int(elapsed / done * (total - done))
            rate = done / elapsed if elapsed > 0 else 0.0
            line += f"  {rate:.1f}/s" if rate < 10 else f"  {rate:.0f}/s"
            line += f"  ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
        self.stream.write("\r" + line.ljust(self.drawn))
        self.stream.flush()
        self.drawn = len(line)

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * self.drawn + "\r")
            self.stream.flush()
            self.drawn = 0


_plural = plural


def _account(name: str) -> str:
    """The store's name for an account: the canonical address (a bare name stays as it is)."""
    try:
        return canonical(name)
    except AddressError:
        return name


def _report_to(bar: ProgressBar) -> Callable[[Skipped], None]:
    def report(s: Skipped) -> None:
        bar.clear()
        print(f"carteiro: skipped {s}", file=sys.stderr)

    return report


def _finish(summary: Summary, bar: ProgressBar) -> int:
    bar.clear()
    for w in summary.warnings:
        print(f"carteiro: warning: {w}", file=sys.stderr)
    if summary.stopped:
        print(f"carteiro: stopped early: {summary.stopped}", file=sys.stderr)
        return EX_TEMPFAIL
    return EX_DATAERR if summary.skipped else 0


def _print_folders(summary: Summary) -> None:
    if len(summary.folders) > 1:
        for name, n in summary.folders:
            print(f"  {name}: {n}")


def cmd_mailbox(args: argparse.Namespace) -> int:
    from carteiro.app import open_directory, open_store
    from carteiro.formats.message import Format, MailboxFormatError
    from carteiro.formats.registry import detect_format
    from carteiro.formats.transfer import export_mailbox, import_mailbox
    from carteiro.store.api import MailboxNotFound

    cfg = load_config(args)
    directory = open_directory(cfg)
    try:
        acct = _account(args.account)
        if not directory.user_exists(acct):
            raise CLIError(f"no account {acct}", EX_NOUSER)
    finally:
        directory.close()

    if args.action == "import":
        source = Path(args.source)
        if not source.exists():
            raise CLIError(f"{source} does not exist", EX_NOINPUT)
        if args.format:
            fmt = Format(args.format)
        else:
            found = detect_format(source)
            if found is None:
                raise CLIError(f"cannot tell the format of {source}: give --format", EX_USAGE)
            fmt = found
        max_size = cfg.imap.max_literal_size if args.max_size is None else args.max_size
        bar = ProgressBar(f"importing {source.name}")

        async def run_import() -> Summary:
            store = open_store(cfg)
            try:
                account = await store.account(acct)
                return await import_mailbox(
                    account,
                    fmt,
                    source,
                    args.folder,
                    all_folders=args.all,
                    max_size=max_size or None,
                    dry_run=args.dry_run,
                    progress=bar,
                    report=_report_to(bar),
                )
            finally:
                await store.close()

        try:
            summary = asyncio.run(run_import())
        except MailboxFormatError as e:
            raise CLIError(str(e), EX_NOINPUT) from None
        except OSError as e:
            raise CLIError(f"cannot read {source}: {e.strerror or e}", EX_NOINPUT) from None
        code = _finish(summary, bar)
        verb = "would import" if args.dry_run else "imported"
        where = (
            f"{_plural(len(summary.folders), 'folder')} of {acct}"
            if args.all
            else f"{acct} {summary.folders[0][0] if summary.folders else args.folder}"
        )
        print(
            f"{verb} {_plural(summary.done, 'message')} from {fmt.value} {source} into {where}; "
            f"skipped {len(summary.skipped)}"
        )
        _print_folders(summary)
        return code

    fmt = Format(args.format)
    dest = Path(args.dest)
    bar = ProgressBar(f"exporting to {dest.name}")

    async def run_export() -> Summary:
        store = open_store(cfg)
        try:
            account = await store.account(acct)
            return await export_mailbox(
                account,
                fmt,
                dest,
                args.folder,
                all_folders=args.all,
                progress=bar,
                report=_report_to(bar),
            )
        finally:
            await store.close()

    try:
        summary = asyncio.run(run_export())
    except MailboxNotFound:
        raise CLIError(f"no mailbox {args.folder} in {acct}", EX_DATAERR) from None
    except MailboxFormatError as e:
        raise CLIError(str(e), EX_CANTCREAT) from None
    except OSError as e:
        raise CLIError(f"cannot write {dest}: {e.strerror or e}", EX_CANTCREAT) from None
    code = _finish(summary, bar)
    if summary.lost_flags:
        lost = ", ".join(
            f"{flag} ({_plural(n, 'message')})" for flag, n in sorted(summary.lost_flags.items())
        )
        print(f"carteiro: warning: {fmt.value} has no place for {lost}: left out", file=sys.stderr)
    what = (
        f"{_plural(len(summary.folders), 'folder')} of {acct}"
        if args.all
        else f"{acct} {args.folder}"
    )
    print(
        f"exported {_plural(summary.done, 'message')} from {what} to {fmt.value} {dest}; "
        f"skipped {len(summary.skipped)}"
    )
    _print_folders(summary)
    return code


def cmd_store(args: argparse.Namespace) -> int:
    from carteiro.ops.progress import progress_bar
    from carteiro.store import maintenance

    cfg = load_config(args)
    account = _account(args.account) if args.account else None
    _finish_crash_work(cfg)
    if args.action == "check":
        report = maintenance.check(cfg.data_dir, account, progress=progress_bar("checking"))
        for acct, mbox, uid in report.missing_files:
            print(f"missing file: {acct} {mbox} UID {uid}")
        for path in report.orphan_files:
            print(f"file not in the index: {path}")
        for acct, mbox, uid in report.size_mismatches:
            print(f"size differs from the index: {acct} {mbox} UID {uid}")
        for acct, mbox, uid in report.flag_mismatches:
            print(f"flags in the file name differ from the index: {acct} {mbox} UID {uid}")
        for problem in report.search_index:
            print(f"search index: {problem}")
        if report.ok:
            print("store check: the files and the index agree")
            return 0
        problems = (
            len(report.missing_files)
            + len(report.orphan_files)
            + len(report.size_mismatches)
            + len(report.flag_mismatches)
            + len(report.search_index)
        )
        if report.missing_files or report.orphan_files or report.flag_mismatches:
            # what a Maildir client (mutt) or another delivery agent did: a server adopts it
            print(
                "changes made in the Maildir behind the server (deleted files, files in new/,"
                " renamed flags) are adopted by a running server when the mailbox is next"
                " opened or polled"
            )
        print(
            f"store check: {_plural(problems, 'problem')}; "
            "`carteiro store reindex` rebuilds the index from the files"
        )
        return 1
    result = maintenance.reindex(cfg.data_dir, account, progress=progress_bar("reindexing"))
    for acct, mbox in result.new_uidvalidity:
        print(f"new UIDVALIDITY (clients will resynchronise): {acct} {mbox}")
    for why in result.skipped:
        print(f"carteiro: not indexed: {why}", file=sys.stderr)
    print(
        f"reindexed {_plural(result.accounts, 'account')}, {_plural(result.mailboxes, 'mailbox')}, "
        f"{_plural(result.messages, 'message')} ({result.searchable} parsed for SEARCH)"
    )
    return EX_DATAERR if result.skipped else 0


def _finish_crash_work(cfg: Config) -> None:
    """Open and close the store once: its recovery finishes what a crashed writer left (files of
    a transaction that never committed, a folder move half done, unlinks and file writes still
    owed), as any start of a server or of `carteiro deliver` would. Without this, `check` counts
    those leftovers as damage and `reindex` adopts them: a MOVE killed before its COMMIT gave
    every message a second copy. Safe beside a running server (recovery takes the write lock and
    only touches dead writers' work). An index that is missing or corrupt is left to check (which
    names the repair) and to reindex (which rebuilds it)."""
    from carteiro.app import open_store
    from carteiro.store.api import StoreError
    from carteiro.store.index import index_state

    try:
        if index_state(cfg.data_dir) != "ok":
            return
    except StoreError:
        return

    async def open_close() -> None:
        store = open_store(cfg)
        await store.close()

    asyncio.run(open_close())


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="data dir (default: $CARTEIRO_DATA, then ./var)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "mailbox",
        help="import and export mail: mbox, Maildir, MH, Babyl, MMDF",
        description="Copy mail between an account and the formats of Python's mailbox module. "
        "Exit status: 0 all done, 65 some messages skipped (listed on stderr), 75 stopped early "
        "(over quota), 66 source unreadable, 67 no such account, 73 destination unwritable.",
    )
    ms = s.add_subparsers(dest="action", required=True)

    a = ms.add_parser(
        "import",
        help="append the messages of a mailbox file or directory to an account",
        description="Append every message to FOLDER (created if missing). Malformed messages are "
        "reported with their position and skipped. Running it twice imports twice.",
    )
    a.add_argument("source", metavar="SOURCE", help="mbox/MMDF/Babyl file, or Maildir/MH directory")
    a.add_argument("account", metavar="ACCOUNT")
    a.add_argument("--format", choices=FORMATS, help="the source's format (default: detected)")
    a.add_argument("--folder", default=INBOX, help="destination mailbox (default INBOX)")
    a.add_argument(
        "--all",
        action="store_true",
        help="SOURCE is a folder tree (Maildir++ folders, MH sub-folders, or a directory of "
        "single-file mailboxes): import each into the mailbox of the same name under --folder",
    )
    a.add_argument(
        "--max-size",
        type=int,
        metavar="OCTETS",
        help="skip larger messages (default: imap.max_literal_size; 0: no limit)",
    )
    a.add_argument("--dry-run", action="store_true", help="read and check, store nothing")
    _data_arg(a)
    a.set_defaults(func=cmd_mailbox)

    e = ms.add_parser(
        "export",
        help="append the messages of an account's mailbox to a mailbox file or directory",
        description="Append the messages of FOLDER, in UID order, to DEST (created if missing; an "
        "existing DEST of the same format is appended to, never rewritten).",
    )
    e.add_argument("account", metavar="ACCOUNT")
    e.add_argument("dest", metavar="DEST", help="mbox/MMDF/Babyl file, or Maildir/MH directory")
    e.add_argument("--format", choices=FORMATS, required=True)
    e.add_argument("--folder", default=INBOX, help="mailbox to export (default INBOX)")
    e.add_argument(
        "--all",
        action="store_true",
        help="export every mailbox: INBOX at DEST and the others as Maildir++ folders, MH "
        "sub-folders, or (single-file formats) files in the directory DEST",
    )
    _data_arg(e)
    e.set_defaults(func=cmd_mailbox)

    s = sub.add_parser("store", help="check the message files against the index, or rebuild it")
    ss = s.add_subparsers(dest="action", required=True)
    c = ss.add_parser(
        "check", help="compare files and index (read-only); exit status 1 if they differ"
    )
    c.add_argument("--account", help="only this account")
    _data_arg(c)
    c.set_defaults(func=cmd_store)
    r = ss.add_parser(
        "reindex", help="rebuild the index from the Maildir files (keeps UIDs where it can)"
    )
    r.add_argument("--account", help="only this account")
    _data_arg(r)
    r.set_defaults(func=cmd_store)

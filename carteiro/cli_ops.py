"""Operations subcommands: `status`, `backup`, `restore`, and the delivery mode of accounts.

Thin: arguments, output and sysexits-style exit statuses; the work is in carteiro.ops (server lock
and state, health, backup) and the services it calls. Registered by cli.py's `extra_commands()`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carteiro.cli import (
    EX_CANTCREAT,
    EX_DATAERR,
    EX_TEMPFAIL,
    EX_USAGE,
    CLIError,
    load_config,
)

if TYPE_CHECKING:
    from carteiro.config import Config
    from carteiro.directory.accounts import Directory


def mbox_note(cfg: Config, account: str) -> str:
    """What an operator must know about an account delivered to an mbox spool."""
    from carteiro.mail.mbox_spool import MboxSpool

    path = MboxSpool(cfg.path(cfg.smtp.mbox_dir)).path_for(account)
    return (
        f"{account}: mail is delivered to the mbox spool {path}, for mail programs on this host; "
        "IMAP and POP3 refuse this account's logins (`carteiro user set --delivery store` "
        "switches it)"
    )


def set_delivery(cfg: Config, directory: Directory, address: str, delivery: str) -> int:
    """`carteiro user set ADDRESS --delivery store|mbox`."""
    from carteiro.core.address import canonical
    from carteiro.mail.mbox_spool import MboxSpool

    acct = canonical(address)
    if not directory.user_exists(acct):
        raise CLIError(f"no account {acct}", EX_DATAERR)
    before = directory.delivery_of(acct)
    if before == delivery:
        print(f"{acct}: delivery is already {delivery}")
        return 0
    directory.set_delivery(acct, delivery)
    print(f"{acct}: delivery {before} -> {delivery}")
    if delivery == "mbox":
        print(mbox_note(cfg, acct))
        return 0

    async def create() -> None:
        from carteiro.app import open_store

        store = open_store(cfg)
        try:
            await store.create_account(acct)
        finally:
            await store.close()

    asyncio.run(create())
    spool = MboxSpool(cfg.path(cfg.smtp.mbox_dir)).path_for(acct)
    if spool.exists() and spool.stat().st_size:
        # never moved behind the operator's back: a program on the host may still read it
        print(
            f"the spool {spool} still holds the mail delivered so far; to serve it over IMAP/POP3: "
            f"carteiro mailbox import --format mbox {spool} {acct}"
        )
    return 0


EX_NOT_RUNNING = 3  # as LSB init scripts' `status`: the program is not running
EX_UNHEALTHY = 1


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def _accepting(address: str) -> bool:
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except OSError:
        return False


def _healthz(address: str) -> dict[str, Any] | None:
    import json
    import urllib.error
    import urllib.request

    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            answer: Any = json.loads(r.read())
    except urllib.error.HTTPError as e:  # 503 carries the report too
        answer = json.loads(e.read() or b"{}")
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def status_report(cfg: Config) -> dict[str, Any]:
    """Everything `carteiro status` shows, from the data dir alone (and the server's /healthz
    when [listen] metrics is on)."""
    import time

    from carteiro.ops.health import certificate_info, disk_info
    from carteiro.ops.serverlock import read_state, running_server
    from carteiro.queue.service import QUEUE_DIR, snapshot

    now = time.time()
    pid = running_server(cfg.data_dir)
    report: dict[str, Any] = {"data_dir": str(cfg.data_dir), "running": pid is not None}
    problems: list[str] = []
    warnings: list[str] = []
    if pid is not None:
        state = read_state(cfg.data_dir) or {}
        report["pid"] = pid if pid > 0 else state.get("pid")
        report["version"] = state.get("version")
        started = state.get("started")
        report["uptime"] = round(now - started, 1) if isinstance(started, int | float) else None
        listeners = state.get("listeners") or {}
        report["listeners"] = {
            svc: {"address": addr, "accepting": _accepting(addr)}
            for svc, addr in sorted(listeners.items())
        }
        for svc, info in report["listeners"].items():
            if not info["accepting"]:
                problems.append(f"{svc} ({info['address']}) does not accept connections")
        if "metrics" in listeners:
            health = _healthz(listeners["metrics"])
            if health is None:
                problems.append("/healthz did not answer")
            else:
                report["health"] = health
                problems += list(health.get("problems") or [])
                warnings += [w for w in health.get("warnings") or [] if w not in warnings]
    msgs = snapshot(cfg.data_dir / QUEUE_DIR)
    report["queue"] = {
        "messages": len(msgs),
        "recipients_pending": sum(1 for m in msgs for r in m.recipients if r.state == "pending"),
        "held": sum(1 for m in msgs if m.held),
        "oldest_age": round(max((now - m.arrival for m in msgs), default=0.0), 1),
    }
    index = cfg.data_dir / "index.sqlite"
    report["store"] = {
        "index": str(index),
        "index_bytes": index.stat().st_size if index.exists() else None,
        **disk_info(cfg.data_dir),
    }
    if not index.exists():
        problems.append(f"no store index at {index} (run `carteiro init`)")
    cert = certificate_info(cfg.path(cfg.tls.cert), now)
    report["certificate"] = cert
    if "error" in cert:
        problems.append(f"certificate: {cert['error']}")
    elif cert["days_left"] < 0:
        problems.append(f"the certificate expired on {cert['expires']}")
    elif cert["days_left"] < 14:
        warnings.append(f"the certificate expires in {cert['days_left']:.0f} days")
    report["problems"] = problems
    report["warnings"] = warnings
    return report


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from carteiro.core.plural import plural

    cfg = load_config(args)
    r = status_report(cfg)
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        if r["running"]:
            up = f", up {_ago(r['uptime'])}" if r.get("uptime") is not None else ""
            print(f"server: running (pid {r['pid']}{up}), carteiro {r.get('version') or '?'}")
            for svc, info in r["listeners"].items():
                state = "accepting" if info["accepting"] else "NOT ACCEPTING"
                print(f"  {svc:<12} {info['address']:<22} {state}")
        else:
            print(f"server: not running on {r['data_dir']}")
        q = r["queue"]
        line = f"queue: {plural(q['messages'], 'message')}"
        if q["messages"]:
            line += (
                f", {plural(q['recipients_pending'], 'recipient')} pending, "
                f"{q['held']} held, oldest {_ago(q['oldest_age'])}"
            )
        print(line)
        st = r["store"]
        size = st["index_bytes"]
        print(
            f"store: index {st['index']}"
            + (f" ({size // 1024} KiB)" if size is not None else " (missing)")
            + f", {st['free_bytes'] // (1024 * 1024)} MiB free on its disk"
        )
        c = r["certificate"]
        if "error" in c:
            print(f"certificate: {c['path']}: {c['error']}")
        else:
            kind = " (self-signed)" if c["self_signed"] else ""
            print(
                f"certificate: {', '.join(c['names']) or '?'}{kind}, expires {c['expires'][:10]} "
                f"({c['days_left']:.0f} days)"
            )
        for w in r["warnings"]:
            print(f"warning: {w}")
        for p in r["problems"]:
            print(f"PROBLEM: {p}")
    if not r["running"]:
        return EX_NOT_RUNNING
    return EX_UNHEALTHY if r["problems"] else 0


def _progress(label: str) -> Callable[[int, int], None]:
    from carteiro.ops.progress import progress_bar

    return progress_bar(label)


def cmd_backup(args: argparse.Namespace) -> int:
    from carteiro.core.plural import plural
    from carteiro.ops.backup import BackupError, backup, verify

    if args.verify:
        try:
            problems = verify(Path(args.verify), _progress("verifying"))
        except BackupError as e:
            raise CLIError(str(e), EX_DATAERR) from None
        for p in problems:
            print(f"carteiro: {p}", file=sys.stderr)
        if problems:
            print(f"backup {args.verify}: {plural(len(problems), 'problem')}")
            return EX_DATAERR
        print(f"backup {args.verify}: every file is as written")
        return 0
    if not args.to:
        raise CLIError("give --to DIR (a new directory) or --verify DIR", EX_USAGE)
    cfg = load_config(args)
    try:
        r = backup(cfg, Path(args.to), _progress)
    except BackupError as e:
        raise CLIError(str(e), EX_CANTCREAT) from None
    except OSError as e:
        raise CLIError(f"backup to {args.to} failed: {e}", EX_CANTCREAT) from None
    for w in r.warnings:
        print(f"carteiro: warning: {w}", file=sys.stderr)
    print(
        f"backed up {plural(r.messages, 'message')} in {plural(r.mailboxes, 'mailbox')}, "
        f"{plural(r.queued, 'queued message')}: {plural(r.files, 'file')}, "
        f"{r.bytes // 1024} KiB in {r.dest} (deliveries paused {r.locked_seconds * 1000:.0f} ms "
        "for the cut)"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from carteiro.cli import data_dir
    from carteiro.core.plural import plural
    from carteiro.ops.backup import BackupError, restore
    from carteiro.ops.serverlock import running_server

    target = data_dir(args)
    pid = running_server(target)
    if pid is not None:
        raise CLIError(f"a server (pid {pid}) is serving {target}: restore elsewhere", EX_TEMPFAIL)
    try:
        r = asyncio.run(restore(Path(args.source), target, _progress))
    except BackupError as e:
        raise CLIError(str(e), EX_DATAERR) from None
    except OSError as e:
        raise CLIError(f"restore into {target} failed: {e}", EX_CANTCREAT) from None
    for p in r.problems:
        print(f"carteiro: {p}", file=sys.stderr)
    print(
        f"restored {plural(r.messages, 'message')} in {plural(r.mailboxes, 'mailbox')} "
        f"({plural(r.files, 'file')}) into {target}"
        + ("" if not r.problems else f"; {plural(len(r.problems), 'problem')}")
    )
    return EX_DATAERR if r.problems else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", help="data dir (default: $CARTEIRO_DATA, then ./var)")
    s = sub.add_parser(
        "status",
        parents=[common],
        help="is a server running on this data dir: listeners, queue, store, certificate",
        description="Exit status: 0 running and healthy, 1 running with a problem, 3 not running.",
    )
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser(
        "backup",
        parents=[common],
        help="copy the data dir (online) to a new directory, or verify such a copy",
        description="A consistent copy of the store (index and messages cut at one instant), "
        "the directory, the outbound queue, DKIM keys, the certificate and mbox spools, taken "
        "while the server runs; manifest.json holds every file's SHA-256. Exit status: 0 done, "
        "65 the verified backup is damaged, 73 cannot write the destination.",
    )
    s.add_argument("--to", metavar="DIR", help="a new (or empty) directory outside the data dir")
    s.add_argument("--verify", metavar="DIR", help="check a backup's files against its manifest")
    s.set_defaults(func=cmd_backup)

    s = sub.add_parser(
        "restore",
        parents=[common],
        help="restore a backup into a new, empty data dir (--data), verified before and after",
        description="Checks every file against the manifest first (nothing is written from a "
        "damaged backup), copies it into the empty --data directory, opens the store once "
        "(recovery), then checks files against the index and mailbox counts against the "
        "manifest. Exit status: 0 done, 65 damaged backup or a check failed, 75 a server runs there.",
    )
    s.add_argument("--from", dest="source", metavar="DIR", required=True, help="the backup")
    s.set_defaults(func=cmd_restore)

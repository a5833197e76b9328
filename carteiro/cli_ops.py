"""Operations subcommands: `status`, `backup`, `restore`, and the delivery mode of accounts.

Thin: arguments, output and sysexits-style exit statuses; the work is in carteiro.ops (server lock
and state, health, backup) and the services it calls. Registered by cli.py's `extra_commands()`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from carteiro.cli import EX_DATAERR, CLIError, load_config

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

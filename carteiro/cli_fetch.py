"""`carteiro fetch status`: each `[[fetch]]` entry's last poll, errors and backoff, read from
DATA/fetch.sqlite (safe while the server runs); `--json` for scripts."""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fetch", help="remote mailboxes polled for local accounts ([[fetch]])")
    fs = p.add_subparsers(dest="fetch_action", required=True, metavar="ACTION")
    a = fs.add_parser("status", help="last poll, errors and next try of each entry")
    a.add_argument("--data", help="data dir (default: $CARTEIRO_DATA, then ./var)")
    a.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fetch)


def _when(t: float | None) -> str:
    if t is None:
        return "never"
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def cmd_fetch(args: argparse.Namespace) -> int:
    from carteiro.fetch.poller import STATE_FILE
    from carteiro.fetch.state import FetchState

    path = Path(args.data or os.environ.get("CARTEIRO_DATA") or "var") / STATE_FILE
    if not path.exists():
        print("no [[fetch]] entry has run yet")
        return 0
    state = FetchState(path)
    try:
        rows = state.statuses()
    finally:
        state.close()
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
        return 0
    for r in rows:
        folder = r.entry.rpartition("|")[2]
        where = f"{r.protocol}://{r.server}" + (f"/{folder}" if folder else "")
        print(f"{r.account}  <-  {where}")
        print(f"    last poll {_when(r.last_poll)}, last success {_when(r.last_ok)}")
        print(f"    fetched {r.fetched}, next poll {_when(r.next_poll)}")
        if r.failures:
            print(f"    failing ({r.failures} in a row, backing off): {r.last_error}")
    if not rows:
        print("no [[fetch]] entries")
    return 0 if all(r.failures == 0 for r in rows) else 1

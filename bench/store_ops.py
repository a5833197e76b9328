"""Store CPU per operation, by thread, for one or more source trees in one run (the first is the
baseline): what a local SMTP delivery asks of the store, and the IMAP session's common writes and
reads, driven directly (no protocol), so the store's own cost is what is counted.

Each tree runs in a child process (PYTHONPATH=tree), alternating trees `--rounds` times. Per
operation it reports CPU (user + system, from /proc/self/task/*/schedstat: nanoseconds, per
thread group: the event loop, the writer, the file worker, the fsync pool, the read pool, the
search indexer, the rest), and, in a separate pass with a statement counter on every connection,
SQL statements per operation. Work left on timers (the file worker's flush rounds, the search
indexer) is waited for inside the window, so it counts.

Workloads (`--kind`):
  deliver  store.deliver of a 1 KB message to one account, then quota_warning() as
           mail.deliver does after each delivery (the store part of a local SMTP delivery)
  store    set_flags that changes a flag (+\\Deleted / -\\Deleted alternating) on a 40-message
           INBOX, then changes_since from the caller's MODSEQ (a view's catch-up)
  status   counts() + get_mailbox() (an IMAP STATUS), expunge() that finds nothing,
           list_mailboxes()
  append   account.append of a 1 KB message (IMAP APPEND)

Run: .venv/bin/python bench/store_ops.py [--kind deliver] [-n 2000] [--rounds 2] [TREE ...]
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import asyncio, json, os, sqlite3, sys, threading, time
from pathlib import Path

COUNT = os.environ.get("STORE_OPS_SQL") == "1"
statements = [0]
if COUNT:
    _connect = sqlite3.connect
    def connect(*a, **k):
        conn = _connect(*a, **k)
        def trace(_sql):
            statements[0] += 1
        conn.set_trace_callback(trace)
        return conn
    sqlite3.connect = connect

from carteiro.store.api import Delivery, FlagOp
from carteiro.store.sqlite_maildir import SqliteMaildirStore

MESSAGE = (
    b"From: a@example.org\r\nTo: bench@example.test\r\nSubject: bench\r\n"
    b"Date: Tue, 1 Oct 2024 10:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\n" + b"x" * 860 + b"\r\n"
)
ACCOUNT = "bench@example.test"

def groups():
    out = {}
    names = {t.native_id: t.name for t in threading.enumerate()}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = names.get(int(tid), "?")
            ns = int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
        except OSError:
            continue
        if tid == str(os.getpid()):
            g = "loop"
        elif "writer" in name:
            g = "writer"
        elif "flush" in name:
            g = "flusher"
        elif "sync" in name:
            g = "fsync pool"
        elif "read" in name:
            g = "read pool"
        elif "search" in name:
            g = "indexer"
        else:
            g = "other"
        out[g] = out.get(g, 0) + ns
    return out

async def settle(store):
    await store.flush_files()
    await asyncio.get_running_loop().run_in_executor(None, store.wait_search_indexed, 60.0)
    await store.flush_files()

async def main(kind, n, data):
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    acct = await store.account(ACCOUNT)
    inbox = await acct.get_mailbox("INBOX")
    for _ in range(40):
        await acct.append("INBOX", MESSAGE)
    await settle(store)
    modseq = (await acct.get_mailbox("INBOX")).highestmodseq
    flip = [False]

    async def op():
        nonlocal modseq
        if kind == "deliver":
            await store.deliver([Delivery(ACCOUNT)], MESSAGE)
            await acct.quota_warning()
        elif kind == "append":
            await acct.append("INBOX", MESSAGE)
        elif kind == "store":
            flip[0] = not flip[0]
            op_ = FlagOp.ADD if flip[0] else FlagOp.REMOVE
            metas, _ = await acct.set_flags(inbox.id, [1], op_, ["\\Deleted"])
            d = await acct.changes_since(inbox.id, modseq)
            modseq = d.highestmodseq
        elif kind == "status":
            await acct.counts(inbox.id)
            await acct.get_mailbox("INBOX")
            await acct.expunge(inbox.id)
            await acct.list_mailboxes()

    for _ in range(200):
        await op()
    await settle(store)
    before, s0, t0 = groups(), statements[0], time.perf_counter()
    for _ in range(n):
        await op()
    await settle(store)
    wall = time.perf_counter() - t0
    after, s1 = groups(), statements[0]
    await store.close()
    cpu = {g: (after.get(g, 0) - before.get(g, 0)) / n / 1000 for g in after}
    print(json.dumps({"cpu": cpu, "sql": (s1 - s0) / n, "rate": n / wall}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
"""

ORDER = ["loop", "writer", "flusher", "fsync pool", "read pool", "indexer", "other"]


def run(tree: Path, kind: str, n: int, sql: bool, tmp: Path) -> dict[str, object]:
    data = Path(tempfile.mkdtemp(prefix="data-", dir=tmp))
    env = {**os.environ, "PYTHONPATH": str(tree), "STORE_OPS_SQL": "1" if sql else "0"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(n), str(data)],
        env=env,
        cwd=str(tree),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="*", type=Path, default=[Path(__file__).resolve().parent.parent])
    ap.add_argument("--kind", choices=["deliver", "store", "status", "append"], default="deliver")
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", help="where to put the data dirs (default: a temp dir under .)")
    args = ap.parse_args()
    print(f"{args.kind}: {args.n} operations per figure; load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-ops-", dir=args.dir or Path.cwd()) as t:
        tmp = Path(t)
        sql = {
            str(tree): run(tree.resolve(), args.kind, 200, True, tmp)["sql"] for tree in args.trees
        }
        for r in range(args.rounds):
            for tree in args.trees:
                got = run(tree.resolve(), args.kind, args.n, False, tmp)
                cpu = got["cpu"]
                assert isinstance(cpu, dict)
                total = sum(cpu.values())
                parts = " ".join(f"{g} {cpu[g]:4.0f}" for g in ORDER if cpu.get(g, 0) >= 0.5)
                print(
                    f"round {r + 1} {tree.name:12} {total:6.0f} us/op ({parts})"
                    f"  {sql[str(tree)]:5.1f} SQL/op  {got['rate']:6.0f} op/s"
                    f"  load {os.getloadavg()[0]:.1f}"
                )


if __name__ == "__main__":
    main()

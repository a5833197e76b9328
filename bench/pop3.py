"""POP3 benchmark: download 10,000 messages of 4 KB from a real `carteiro serve` (SQLite + Maildir
store) with RETR and with TOP n 0, in messages/s: one command at a time (as fetchmail does) and
pipelined (RFC 2449 PIPELINING), in the clear and over TLS (pop3s).

Baselines, in the same run: the same messages read straight from the store in this process, one
after another (the ceiling a POP3 server over this store can reach; the first ratio is POP3 /
that), and a private Dovecot 2.3 (Debian's dovecot-pop3d, default process model, its Maildir
holding the same messages) downloaded by the same client, when it is installed: the last column
is carteiro's server CPU per message as a multiple of Dovecot's (its whole process tree).
Each figure is the best of --repeat runs (the least server CPU time per message, from /proc: a
busy machine disturbs it less than the rate), after a first download that is not counted. Not a
timed test.
With --tree main=DIR (DIR: e.g. `git archive main | tar -x -C DIR`) the carteiro of another checkout
runs beside this one, alternating in every figure, so that load on a shared machine moves both alike.
Run: .venv/bin/python bench/pop3.py [--messages 10000] [--repeat 2] [--dir PATH] [--no-dovecot]
     [--tree LABEL=DIR ...] [--only TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.testing import dovecot
from carteiro.testing.procstat import cpu_of_tree
from carteiro.testing.server import ServerProcess

ACCOUNT = "bench@example.test"
PASSWORD = "bench-password"
HEADER = b"From: a@example.org\r\nTo: bench@example.test\r\nSubject: bench %d\r\n\r\n"
LINE = b"x" * 74 + b"\r\n"  # 76-octet body lines, a typical quoted-printable width
TERMINATOR = b"\r\n.\r\n"
WINDOW = 100  # commands in flight when pipelining


def message(i: int) -> bytes:
    head = HEADER % i
    body = LINE * ((4096 - len(head)) // len(LINE))
    return head + body + b"y" * (4096 - len(head) - len(body) - 2) + b"\r\n"


async def fill(data: Path, n: int) -> None:
    store = SqliteMaildirStore(data)
    try:
        acct = await store.account(ACCOUNT)
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                await acct.append("INBOX", message(i))

        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await store.close()


async def baseline(data: Path) -> tuple[int, float, float]:
    """Read every message from the store, one after another: (count, msg/s, CPU us/msg)."""
    store = SqliteMaildirStore(data)
    try:
        acct = await store.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        metas = await acct.list_messages(inbox.id)
        start, cpu = time.perf_counter(), time.process_time()
        for m in metas:
            await acct.read_message(inbox.id, m.uid)
        n = len(metas)
        return n, n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e6
    finally:
        await store.close()


async def download(port: int, tls: bool, command: str, pipelined: bool, n: int) -> float:
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, limit=1 << 22)
    await reader.readline()
    writer.write(f"USER {ACCOUNT}\r\nPASS {PASSWORD}\r\n".encode())
    await reader.readline()
    reply = await reader.readline()
    assert reply.startswith(b"+OK"), reply
    octets = 0

    async def response() -> None:
        nonlocal octets
        data = await reader.readuntil(TERMINATOR)
        assert data.startswith(b"+OK"), data[:100]
        octets += len(data)

    start = time.perf_counter()
    step = WINDOW if pipelined else 1
    for first in range(1, n + 1, step):
        last = min(first + step, n + 1)
        writer.write(b"".join(command.format(i).encode() + b"\r\n" for i in range(first, last)))
        for _ in range(first, last):
            await response()
    elapsed = time.perf_counter() - start
    writer.write(b"QUIT\r\n")
    await reader.readline()
    writer.close()
    assert octets > n * (4000 if command.startswith("RETR") else 60)
    return n / elapsed


def best(
    pid: int, port: int, tls: bool, command: str, pipelined: bool, n: int, repeat: int
) -> tuple[float, float]:
    """The best of `repeat` downloads (the least server CPU): (msg/s, server CPU us/msg of the
    whole process tree)."""
    results = []
    for _ in range(repeat):
        cpu0 = cpu_of_tree(pid)
        rate = asyncio.run(download(port, tls, command, pipelined, n))
        # Dovecot's session processes (pop3, and pop3-login, which does the TLS) count once
        # their master has reaped them: a figure read before would leave them out
        time.sleep(0.5)
        results.append(((cpu_of_tree(pid) - cpu0) / n * 1e6, rate))
    cpu, rate = min(results)
    return rate, cpu


def least_cpu(results: list[tuple[float, float]]) -> tuple[float, float]:
    """Of (msg/s, CPU us/msg) figures, the one with the least CPU (what a busy machine adds to
    least), then the highest rate."""
    return min(results, key=lambda r: (r[1], -r[0]))


def wait_idle(pid: int, timeout: float = 60.0) -> None:
    """Wait until the server has finished its start-up work (indexing, change feed catch-up):
    under 5% of a CPU over half a second, or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_of_tree(pid)
        time.sleep(0.5)
        if cpu_of_tree(pid) - before < 0.025:
            return


def tree_env(tree: Path | None) -> dict[str, str]:
    """The environment that makes `python -m carteiro` import the package from `tree` (another
    checkout, e.g. `git archive main`) instead of this one: -m puts the current directory first
    on sys.path, PYTHONSAFEPATH leaves it out, PYTHONPATH comes before the editable install."""
    if tree is None:
        return {}
    return {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree.resolve())}


RUNS = [
    ("RETR, one at a time", "RETR {}", False, False),
    ("RETR, pipelined", "RETR {}", True, False),
    ("TOP n 0, one at a time", "TOP {} 0", False, False),
    ("TOP n 0, pipelined", "TOP {} 0", True, False),
    ("RETR, one at a time, pop3s", "RETR {}", False, True),
    ("RETR, pipelined, pop3s", "RETR {}", True, True),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, help="where to put the data dir (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per figure; the best is shown")
    ap.add_argument("--no-dovecot", action="store_true", help="no Dovecot beside carteiro")
    ap.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also run the carteiro of another checkout (e.g. `git archive main` unpacked in "
        "DIR), alternating with this one in every figure; repeatable",
    )
    ap.add_argument("--only", help="run only the workloads whose label contains this text")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-pop3-", dir=args.dir))
    trees: list[tuple[str, Path | None]] = [("carteiro", None)]
    for spec in args.tree:
        label, _, path = spec.partition("=")
        trees.append((label, Path(path)))
    servers = [
        (
            label,
            ServerProcess(
                root / label,
                users={ACCOUNT: PASSWORD},
                services=("pop3", "pop3s"),
                extra_config="[pop3]\nallow_plaintext_auth = true\n",
                env=tree_env(tree),
            ),
        )
        for label, tree in trees
    ]
    dc: dovecot.DovecotInstance | None = None
    try:
        if not args.no_dovecot and (why := dovecot.available()) is None:
            dc = dovecot.DovecotInstance(root, users={ACCOUNT: PASSWORD}, tls=True)
            for i in range(args.messages):
                dc.deliver(ACCOUNT, message(i))
            dc.start()
        elif not args.no_dovecot:
            print(f"(no Dovecot beside carteiro: {why})")
        for label, srv in servers:
            srv.init()
            t0 = time.perf_counter()
            asyncio.run(fill(srv.data, args.messages))
            print(f"{label}: filled {args.messages} x 4 KB in {time.perf_counter() - t0:.1f}s")
        n, base, base_cpu = asyncio.run(baseline(servers[0][1].data))
        assert n == args.messages
        for _, srv in servers:
            srv.start()
        print(
            f"baseline: store read_message, sequential {base:7.0f} msg/s"
            f"                 CPU {base_cpu:4.0f} us/msg"
        )
        # Not counted: each server's first session (Dovecot builds its index and moves new/ to
        # cur/; both set \Seen on every message at QUIT after a RETR) and start-up work.
        for _, srv in servers:
            assert srv.proc is not None
            wait_idle(srv.proc.pid)
            asyncio.run(download(srv.ports["pop3"], False, "RETR {}", True, n))
            wait_idle(srv.proc.pid)
        if dc is not None:
            asyncio.run(download(dc.pop3_port, False, "RETR {}", True, n))
            assert dc.proc is not None
            wait_idle(dc.proc.pid)
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        for label, command, pipelined, tls in RUNS:
            if args.only and args.only not in label:
                continue
            # every server once per round, alternating, so that load moves them alike
            got: dict[str, list[tuple[float, float]]] = {}
            for _ in range(args.repeat):
                for name, srv in servers:
                    assert srv.proc is not None
                    port = srv.ports["pop3s" if tls else "pop3"]
                    got.setdefault(name, []).append(
                        best(srv.proc.pid, port, tls, command, pipelined, n, 1)
                    )
                if dc is not None:
                    assert dc.proc is not None
                    dport = dc.pop3s_port if tls else dc.pop3_port
                    got.setdefault("dovecot", []).append(
                        best(dc.proc.pid, dport, tls, command, pipelined, n, 1)
                    )
            dcpu = least_cpu(got["dovecot"])[1] if "dovecot" in got else 0.0
            for name, _ in servers:
                rate, cpu = least_cpu(got[name])
                line = (
                    f"POP3 {label:<30} {name:<10} {rate:7.0f} msg/s"
                    f"  ({rate / base:.2f} x baseline)  server CPU {cpu:4.0f} us/msg"
                )
                if dc is not None:
                    # (Dovecot's CPU is counted in 10 ms ticks: a short run may show none)
                    ratio = f"{cpu / dcpu:.2f}x" if dcpu > 0 else "n/a"
                    line += f"  {ratio} dovecot"
                print(line)
            if dc is not None:
                drate, dcpu = least_cpu(got["dovecot"])
                print(
                    f"POP3 {label:<30} {'dovecot':<10} {drate:7.0f} msg/s  server CPU {dcpu:4.0f} us/msg"
                )
    finally:
        for _, srv in servers:
            srv.stop()
        if dc is not None:
            dc.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

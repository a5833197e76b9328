"""Instructions per IMAP command, counted by callgrind: a figure the machine's load cannot move.

Starts `carteiro serve` under `valgrind --tool=callgrind`, logs in one client, warms up, zeroes
the counters, runs a fixed command sequence N times, dumps, and prints the instructions of all
the server's threads per command. Compare two trees in one run (the other checked out with
`git worktree add`): background work on timers (file flushes, recent claims) scales with wall
time, which valgrind stretches, so expect a few per cent of noise, not tens.

`--kind mix` is issue 11's mix (bench/imap.py's MIX_ROUND) played by 3 clients sharing one
account, in lockstep, on an INBOX filled with --fill messages (the size the real mix reaches).

Run: .venv/bin/python bench/imap_instructions.py [--kind reads|stores|appends|logged|mix] [-n 40] [TREE ...]
(needs valgrind; each tree takes a few minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import callgrind_serve
from bench.imap import MIX_ROUND
from carteiro.testing.server import ServerProcess

MIX_CLIENTS = 3

MESSAGE = (
    b"From: a@example.org\r\nTo: u@example.test\r\nSubject: bench\r\n"
    b"Date: Tue, 1 Oct 2024 10:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\n" + b"x" * 900 + b"\r\n"
)
SEQUENCES: dict[str, list[bytes | tuple[bytes, bytes]]] = {
    # reads, and writes that change nothing
    "reads": [
        b"FETCH * (BODY.PEEK[])",
        b"STORE 1 +FLAGS (\\Seen)",
        b'LIST "" "*"',
        b"STATUS INBOX (MESSAGES UNSEEN UIDNEXT)",
        b"EXPUNGE",
        b"NOOP",
    ],
    # every STORE a change
    "stores": [b"STORE 1 +FLAGS (\\Deleted)", b"STORE 1 -FLAGS (\\Deleted)"],
    # a 1 KB APPEND each (committed with its bytes; its file written after, in rounds)
    "appends": [(b"APPEND INBOX", MESSAGE)],
    # bench/imap.py's logged-in loop (one client), with this sequence's own 1 KB message
    "logged": [
        b"SELECT INBOX",
        b"FETCH 1:* (UID FLAGS)",
        b"STORE 1 +FLAGS (\\Deleted)",
        (b"APPEND INBOX (\\Seen)", MESSAGE),
        b"EXPUNGE",
    ],
    # issue 11's mix (bench/imap.py's round), with this sequence's own 1 KB message
    "mix": [(b"APPEND INBOX (\\Seen)", MESSAGE), *MIX_ROUND[1:]],
}


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")
        self.file.readline()
        self.n = 0

    def cmd(self, text: bytes, literal: bytes | None = None) -> None:
        self.n += 1
        tag = b"a%d" % self.n
        if literal is None:
            self.sock.sendall(tag + b" " + text + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                self.file.read(int(m.group(1)))
            if line.startswith(tag + b" "):
                if line.split()[1] != b"OK":
                    raise RuntimeError(line.decode(errors="replace"))
                return


async def _fill(data: Path, account: str, n: int) -> None:
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    store = SqliteMaildirStore(data)
    try:
        acct = await store.account(account)
        for i in range(0, n, 100):
            batch = [
                (MESSAGE, ("\\Seen",) if j % 10 else (), 1_700_000_000.0 + j)
                for j in range(i, min(n, i + 100))
            ]
            await acct.append_many("INBOX", batch)
        # indexed here, or the server would index them inside the measured window
        await asyncio.get_running_loop().run_in_executor(None, store.wait_search_indexed)
    finally:
        await store.close()


def count(tree: Path, kind: str, n: int, out_dir: Path, fill: int = 0) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="imap-instr-"))
    srv = ServerProcess(
        tmp,
        users={"u@example.test": "pw-bench-123"},
        services=("imap",),
        extra_config="[imap]\nallow_plaintext_auth = true\n[auth]\ncache_ttl = 3600.0\n",
    )
    srv.init()
    if fill:
        asyncio.run(_fill(srv.data, "u@example.test", fill))
    out = out_dir / f"callgrind.{tree.name}.{kind}.out"
    proc = callgrind_serve.start(tree, srv.data, out, tmp / "server.log", threads=False)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                c = Client(srv.ports["imap"])
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(1)
        clients = [c] + [
            Client(srv.ports["imap"]) for _ in range(MIX_CLIENTS - 1 if kind == "mix" else 0)
        ]
        for cl in clients:
            cl.cmd(b"LOGIN u@example.test pw-bench-123")
        for _ in range(0 if fill else 40):
            c.cmd(b"APPEND INBOX", MESSAGE)
        for cl in clients:
            cl.cmd(b"SELECT INBOX")
        sequence = SEQUENCES[kind]

        def play() -> None:
            for step in sequence:
                for cl in clients:
                    cl.cmd(*step) if isinstance(step, tuple) else cl.cmd(step)

        for _ in range(5):
            play()
        time.sleep(1)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        for _ in range(n):
            play()
        time.sleep(2)  # work the commands left on timers lands inside the window
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        for cl in clients:
            cl.cmd(b"LOGOUT")
    finally:
        proc.terminate()
        proc.wait(300)
    dumps = sorted(glob.glob(f"{out}.*"), key=lambda f: int(f.rsplit(".", 1)[1]))
    text = Path(dumps[0]).read_text()  # the first dump: the zeroed window
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    assert m, "no totals in the callgrind dump"
    return int(m.group(1)) // (n * len(sequence) * len(clients))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="*", type=Path, default=[Path(__file__).resolve().parent.parent])
    ap.add_argument("--kind", choices=sorted(SEQUENCES), default="reads")
    ap.add_argument("-n", type=int, default=40)
    ap.add_argument("--fill", type=int, default=None, help="messages in INBOX first (mix: 1000)")
    args = ap.parse_args()
    fill = args.fill if args.fill is not None else (1000 if args.kind == "mix" else 0)
    out_dir = Path(tempfile.mkdtemp(prefix="imap-instr-out-"))
    results = [
        (tree, count(tree.resolve(), args.kind, args.n, out_dir, fill)) for tree in args.trees
    ]
    base = results[0][1]
    for tree, per in results:
        print(f"{tree!s:40} {args.kind}: {per:10,} instructions per command ({per / base:.2f}x)")


if __name__ == "__main__":
    main()

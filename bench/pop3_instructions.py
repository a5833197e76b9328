"""Instructions per POP3 command, counted by callgrind: a figure the machine's load cannot move.

Starts `carteiro serve` under `valgrind --tool=callgrind` on an INBOX of --fill 4 KB messages (the
messages of bench/pop3.py), logs in, zeroes the counters, downloads the messages with RETR or
TOP n 0, one command at a time or pipelined (bench/pop3.py's workloads, in the clear), dumps, and
prints the instructions of all the server's threads per message. Only user-space instructions
count: the system calls themselves are not in the figure (count them with `strace -c -f`).
Compare trees in one run (another checkout: `git archive main | tar -x -C DIR`).

Run: .venv/bin/python bench/pop3_instructions.py [--fill 2000] [--kinds retr,retr-p,top,top-p]
     [TREE ...]    (needs valgrind; about a minute per tree and kind)
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
from bench.pop3 import ACCOUNT, PASSWORD, TERMINATOR, WINDOW, fill
from carteiro.testing.server import ServerProcess

KINDS = {
    "retr": ("RETR {}", False),
    "retr-p": ("RETR {}", True),
    "top": ("TOP {} 0", False),
    "top-p": ("TOP {} 0", True),
}


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.line()

    def line(self) -> bytes:
        return self.until(b"\r\n")

    def until(self, end: bytes) -> bytes:
        while (i := self.buf.find(end)) < 0:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[: i + len(end)], self.buf[i + len(end) :]
        return out

    def download(self, command: str, pipelined: bool, n: int) -> None:
        step = WINDOW if pipelined else 1
        for first in range(1, n + 1, step):
            last = min(first + step, n + 1)
            self.sock.sendall(
                b"".join(b"%s\r\n" % command.format(i).encode() for i in range(first, last))
            )
            for _ in range(first, last):
                assert self.until(TERMINATOR).startswith(b"+OK")


def count(tree: Path, kind: str, n: int, out_dir: Path) -> tuple[int, int]:
    """(instructions per message of the event loop thread, of all threads)."""
    tmp = Path(tempfile.mkdtemp(prefix="pop3-instr-"))
    srv = ServerProcess(
        tmp,
        users={ACCOUNT: PASSWORD},
        services=("pop3",),
        extra_config="[pop3]\nallow_plaintext_auth = true\n[auth]\ncache_ttl = 3600.0\n",
    )
    srv.init()
    asyncio.run(fill(srv.data, n))
    out = out_dir / f"callgrind.{tree.name}.{kind}.out"
    proc = callgrind_serve.start(tree, srv.data, out, tmp / "server.log")
    command, pipelined = KINDS[kind]
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                c = Client(srv.ports["pop3"])
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(1)
        # a first session: the start-up work (the search indexer's catch-up) and \Seen set by
        # RETR at QUIT stay out of the measured window
        c.sock.sendall(f"USER {ACCOUNT}\r\nPASS {PASSWORD}\r\n".encode())
        c.line()
        assert c.line().startswith(b"+OK")
        c.download(command, True, n)
        c.sock.sendall(b"QUIT\r\n")
        c.line()
        time.sleep(5)
        c = Client(srv.ports["pop3"])
        c.sock.sendall(f"USER {ACCOUNT}\r\nPASS {PASSWORD}\r\n".encode())
        c.line()
        assert c.line().startswith(b"+OK")
        time.sleep(1)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        c.download(command, pipelined, n)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        c.sock.sendall(b"QUIT\r\n")
        c.line()
    finally:
        proc.terminate()
        proc.wait(300)
    # the first dump (the zeroed window), one file per thread: out.1-01 is the event loop's
    per_thread = {}
    for path in glob.glob(f"{out}.1-*"):
        m = re.search(r"^(?:summary|totals):\s+(\d+)", Path(path).read_text(), re.M)
        assert m, f"no totals in the callgrind dump {path}"
        per_thread[int(path.rsplit("-", 1)[1])] = int(m.group(1)) // n
    return per_thread[1], sum(per_thread.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="*", type=Path, default=[Path(__file__).resolve().parent.parent])
    ap.add_argument("--kinds", default="retr,retr-p,top,top-p")
    ap.add_argument("--fill", type=int, default=2000)
    args = ap.parse_args()
    out_dir = Path(tempfile.mkdtemp(prefix="pop3-instr-out-"))
    for kind in args.kinds.split(","):
        results = [(tree, count(tree.resolve(), kind, args.fill, out_dir)) for tree in args.trees]
        base = results[0][1]
        for tree, (loop, every) in results:
            print(
                f"{tree!s:40} {kind:7}: {loop:10,} instructions per message on the event loop"
                f" ({loop / base[0]:.2f}x), {every:10,} in all threads ({every / base[1]:.2f}x)"
            )


if __name__ == "__main__":
    main()

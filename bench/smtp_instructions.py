"""Instructions per SMTP message, counted by callgrind: a figure the machine's load cannot move.

Starts `carteiro serve` (the configuration of bench/smtp_postfix.py) under `valgrind
--tool=callgrind --separate-threads=yes`, sends warm-up messages with Postfix's `smtp-source`
(1 KB, one connection per message unless `--same-connection`), then for each phase zeroes the
counters, sends N more, waits for the server to go quiet and dumps. It prints the instructions per
message (per connection) of the event-loop thread (the SMTP session, parsing, checks, delivery
glue) and of all threads. Phases: `message` (smtp-source, the issue's workload), and with a
client of our own, `connect` (greeting, EHLO, QUIT), `mail` (+ MAIL, RSET), `rcpt` (+ RCPT): the
differences price each command. Compare trees in one run (the other checked out with `git
worktree add`); the store's writer batches differently under valgrind's slowness, so its share
is less steady than the loop's.

Run: .venv/bin/python bench/smtp_instructions.py [--rcpt local|remote] [-n 300] [--size 1024]
                                                 [--phases message,connect,mail,rcpt] [TREE ...]
(needs valgrind and smtp-source; each tree takes a few minutes)
"""

from __future__ import annotations

import argparse
import glob
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smtp_postfix import LOCAL, REMOTE, SMTP_SOURCE, carteiro_server

from bench import callgrind_serve
from carteiro.testing.server import read_state, wait_port

SIZE = 1024  # octets per message (--size)


def send(port: int, rcpt: str, n: int, same_connection: bool) -> None:
    cmd = [SMTP_SOURCE, "-4", "-l", str(SIZE), "-m", str(n), "-s", "1"]
    cmd += ["-M", "client.example.org", "-f", "sender@example.org", "-t", rcpt]
    if same_connection:
        cmd.append("-d")
    subprocess.run([*cmd, f"127.0.0.1:{port}"], check=True, timeout=1800)


SEQUENCES = {
    "connect": [],
    "mail": [b"MAIL FROM:<sender@example.org>", b"RSET"],
    "rcpt": [b"MAIL FROM:<sender@example.org>", b"RCPT TO:<%s>", b"RSET"],
}


def converse(port: int, rcpt: str, n: int, phase: str) -> None:
    """n connections, each: greeting, EHLO, the phase's commands, QUIT (one reply each)."""
    lines = [line.replace(b"%s", rcpt.encode()) for line in SEQUENCES[phase]]
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as f:
            for line in [None, b"EHLO client.example.org", *lines, b"QUIT"]:
                if line is not None:
                    sock.sendall(line + b"\r\n")
                while (reply := f.readline())[3:4] == b"-":
                    pass
                if reply[:1] not in b"23":
                    raise RuntimeError(f"{line!r}: {reply!r}")


def thread_totals(out: Path, part: int) -> dict[int, int]:
    """Instructions per thread of dump number `part` (files out.N-TT)."""
    totals: dict[int, int] = {}
    for path in glob.glob(f"{out}.*-*"):
        number, thread = path.rsplit(".", 1)[1].split("-")
        if int(number) != part:
            continue
        m = re.search(r"^(?:summary|totals):\s+(\d+)", Path(path).read_text(), re.M)
        if m:
            totals[int(thread)] = int(m.group(1))
    return totals


def count(
    tree: Path, rcpt: str, n: int, same: bool, phases: list[str], out_dir: Path
) -> dict[str, tuple[int, int]]:
    """Per phase: (event-loop thread, all threads) instructions per message."""
    tmp = Path(tempfile.mkdtemp(prefix="smtp-instr-"))
    srv = carteiro_server(tmp / "carteiro")
    out = out_dir / f"callgrind.{tree.name}.{rcpt}.out"
    proc = callgrind_serve.start(tree, srv.data, out, tmp / "server.log")
    try:
        port = srv.ports["smtp"]
        wait_port("127.0.0.1", port, 600, proc)
        deadline = time.monotonic() + 600
        while (read_state(srv.data) or {}).get("pid") != proc.pid:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        address = LOCAL if rcpt == "local" else REMOTE
        send(port, address, 50, same)
        converse(port, address, 20, "rcpt")
        time.sleep(3)
        for phase in phases:
            ctl = ["callgrind_control", "-z", str(proc.pid)]
            subprocess.run(ctl, check=True, capture_output=True)
            if phase == "message":
                send(port, address, n, same)
            else:
                converse(port, address, n, phase)
            time.sleep(3)  # the flusher's and indexer's work for these messages lands in the window
            ctl = ["callgrind_control", "-d", str(proc.pid)]
            subprocess.run(ctl, check=True, capture_output=True)
    finally:
        proc.terminate()
        proc.wait(300)
    results = {}
    for part, phase in enumerate(phases, 1):
        totals = thread_totals(out, part)
        assert totals, "no callgrind dump"
        results[phase] = (totals[min(totals)] // n, sum(totals.values()) // n)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="*", type=Path, default=[Path(__file__).resolve().parent.parent])
    ap.add_argument("--rcpt", choices=["local", "remote"], default="local")
    ap.add_argument("--same-connection", action="store_true", help="smtp-source -d")
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--size", type=int, default=1024, help="octets per message (smtp-source -l)")
    ap.add_argument("--phases", default="message")
    args = ap.parse_args()
    global SIZE
    SIZE = args.size
    phases = args.phases.split(",")
    if unknown := set(phases) - {"message", *SEQUENCES}:
        raise SystemExit(f"unknown phases: {unknown}")
    out_dir = Path(tempfile.mkdtemp(prefix="smtp-instr-out-"))
    results = [
        (tree, count(tree.resolve(), args.rcpt, args.n, args.same_connection, phases, out_dir))
        for tree in args.trees
    ]
    for phase in phases:
        base_loop, base_all = results[0][1][phase]
        for tree, got in results:
            loop, total = got[phase]
            print(
                f"{tree!s:24} {phase:8} {args.rcpt}: event loop {loop:10,} "
                f"({loop / base_loop:.2f}x), all threads {total:10,} ({total / base_all:.2f}x)"
                " instructions per message"
            )
    print(f"(callgrind files in {out_dir})")


if __name__ == "__main__":
    main()

"""NOTIFY (RFC 5465) against a real `carteiro serve`: how soon a session learns of mail that
another process (`carteiro deliver`) files into a folder it does not have selected, beside the
baseline of IDLE on that folder selected (the same wake-up path, the change feed); and what a
NOTIFY SET costs an ordinary command (NOOP round trips with and without it, same server).

    .venv/bin/python bench/notify.py [--rounds 20] [--noops 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from carteiro.testing.server import ServerProcess

ALICE, PW = "alice@example.test", "alice-password"


class Conn:
    def __init__(self, srv: ServerProcess) -> None:
        ctx = ssl.create_default_context(cafile=str(srv.data / "tls" / "cert.pem"))
        ctx.check_hostname = False
        raw = socket.create_connection(("127.0.0.1", srv.ports["imaps"]), timeout=30)
        self.s = ctx.wrap_socket(raw, server_hostname="mail.example.test")
        self.buf = b""
        self.line()
        self.cmd(f'LOGIN {ALICE} "{PW}"')

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            self.buf += self.s.recv(65536)
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out.decode()

    def cmd(self, text: str, tag: str = "t") -> list[str]:
        self.s.sendall(f"{tag} {text}\r\n".encode())
        lines = [self.line()]
        while not lines[-1].startswith(tag + " "):
            lines.append(self.line())
        return lines

    def until(self, pattern: str) -> float:
        while not re.fullmatch(pattern, self.line()):
            pass
        return time.monotonic()


def deliver(srv: ServerProcess, to: str, n: int) -> float:
    msg = f"From: x@example.org\r\nSubject: m{n}\r\n\r\nhello\r\n".encode()
    subprocess.run(
        [sys.executable, "-m", "carteiro", "deliver", "--to", to, "--data", str(srv.data)],
        input=msg,
        check=True,
        capture_output=True,
    )
    return time.monotonic()  # the LDA has exited: the message is committed


def cpu(pid: int) -> float:
    """CPU seconds (user + system) the server process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def noops(c: Conn, n: int, pid: int) -> tuple[float, float]:
    """(round trips per second, server CPU microseconds per NOOP)."""
    c0, t0 = cpu(pid), time.perf_counter()
    for _ in range(n):
        c.cmd("NOOP")
    return n / (time.perf_counter() - t0), (cpu(pid) - c0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--noops", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(Path(tmp), users={ALICE: PW}, services=("imaps",))
        srv.init()
        cfg = srv.data / "carteiro.toml"
        cfg.write_text(
            cfg.read_text().replace("[smtp]\n", "[smtp]\nplus_folder_delivery = true\n", 1)
        )
        with srv:
            setup = Conn(srv)
            setup.cmd("CREATE Lists")
            watcher = Conn(srv)  # NOTIFY, INBOX selected, Lists watched
            watcher.cmd("SELECT INBOX")
            watcher.cmd(
                "NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (PERSONAL (MessageNew MessageExpunge))"
            )
            idler = Conn(srv)  # baseline: IDLE with Lists selected
            idler.cmd("SELECT Lists")
            idler.s.sendall(b"i IDLE\r\n")
            idler.line()
            notify_ms, idle_ms = [], []
            for n in range(args.rounds):
                done = deliver(srv, "alice+Lists@example.test", n)
                notify_ms.append((watcher.until(r"\* STATUS Lists \(.*\)") - done) * 1000)
                idle_ms.append((idler.until(rf"\* {n + 1} EXISTS") - done) * 1000)
            idler.s.sendall(b"DONE\r\n")
            idler.until(r"i OK .*")
            plain = Conn(srv)
            assert srv.proc is not None
            pid = srv.proc.pid
            base, with_notify = [], []
            for _ in range(3):  # interleaved: the machine's load moves during the run
                base.append(noops(plain, args.noops, pid))
                with_notify.append(noops(watcher, args.noops, pid))
    med_n, med_i = statistics.median(notify_ms), statistics.median(idle_ms)
    print(f"delivery by another process into a non-selected folder, {args.rounds} rounds")
    print(f"  NOTIFY STATUS: median {med_n:.1f} ms, max {max(notify_ms):.1f} ms")
    print(
        f"  IDLE EXISTS (baseline, folder selected): median {med_i:.1f} ms, max {max(idle_ms):.1f} ms"
    )
    print(f"  ratio {med_n / med_i:.2f}")
    rate_b, rate_w = (statistics.median(r for r, _ in x) for x in (base, with_notify))
    cpu_b, cpu_w = (statistics.median(c for _, c in x) for x in (base, with_notify))
    print(f"NOOP round trips, median of 3 x {args.noops}, without NOTIFY (baseline) / with:")
    print(f"  {rate_b:.0f}/s / {rate_w:.0f}/s: ratio {rate_w / rate_b:.2f}")
    print(f"  server CPU {cpu_b:.0f} us / {cpu_w:.0f} us per NOOP: ratio {cpu_w / cpu_b:.2f}")


if __name__ == "__main__":
    main()

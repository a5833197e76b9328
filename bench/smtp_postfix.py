"""Server CPU per message: `carteiro serve` against Postfix 3.7 (Debian's, a private instance), the
same client for both: Postfix's own `smtp-source` (1 KB payload, one connection per message by
default, as issue 10 measures; `--same-connection` keeps one connection for all messages).

Two recipients: a local one (carteiro: its store; Postfix: virtual(8) into a Maildir, so both
servers have written the message durably where the user reads it) and a remote one (both queue it
for a destination routed to a closed port, with retries an hour away, so the figure is receipt and
queueing, plus the one failed connection attempt each makes). Runs alternate carteiro / Postfix
in one command; each figure is the server's CPU (every process and thread, user + system) from
the first connection until it is idle again, divided by the messages sent, so work finished after
the last 250 (Postfix's delivery from its queue, carteiro's file flusher) counts too.

Both servers' directories are in the temp dir, side by side, and each round first prints what
creating a file costs in each (`creation_us`): on this machine's journal-less ext4 that moves
both servers' CPU per message by up to 0.3 ms (bench/RESULTS.md, 2026-12-07 20:10).

Needs root (Postfix's master starts as root) and `postfix` installed. Not a test.

Run: .venv/bin/python bench/smtp_postfix.py [--messages 2000] [--repeat 3] [--only carteiro]
                                            [--rcpt local|remote ...] [--same-connection]
                                            [--size 1024] [--sessions 1]
(issue 10's three workloads: the default; --sessions 20; --size 102400 --sessions 20)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.testing import postfix
from carteiro.testing.procstat import wait_idle
from carteiro.testing.server import ServerProcess, index_count

LOCAL = "bench@example.test"
REMOTE = "someone@remote.test"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"


SIZE = 1024  # message payload octets (smtp-source -l); --size
SESSIONS = 1  # parallel sessions (smtp-source -s); --sessions


def send(port: int, rcpt: str, messages: int, same_connection: bool, lmtp: bool = False) -> float:
    """smtp-source against 127.0.0.1:port (speaking LMTP with `lmtp`); the wall time, seconds."""
    cmd = [SMTP_SOURCE, "-4", "-l", str(SIZE), "-m", str(messages), "-s", str(SESSIONS)]
    if lmtp:
        cmd.append("-L")
    cmd += ["-M", "client.example.org", "-f", "sender@example.org", "-t", rcpt]
    if same_connection:
        cmd.append("-d")
    t = time.perf_counter()
    subprocess.run([*cmd, f"127.0.0.1:{port}"], check=True, timeout=600)
    return time.perf_counter() - t


def measure(
    port: int, pid: int, rcpt: str, messages: int, same_connection: bool, lmtp: bool = False
) -> tuple[float, float]:
    """(messages/s, CPU ms per message)."""
    before = wait_idle(pid)
    wall = send(port, rcpt, messages, same_connection, lmtp)
    used = wait_idle(pid) - before
    return messages / wall, used * 1000 / messages


def carteiro_server(root: Path) -> ServerProcess:
    srv = ServerProcess(
        root,
        users={LOCAL: "bench-password"},
        services=("smtp",),
        extra_config='[log]\nlevel = "warning"\n'
        '[transport]\n"remote.test" = "127.0.0.1:9"\n[queue]\nretry_schedule = [3600.0]\n',
    )
    srv.init()
    cfg = srv.data / "carteiro.toml"
    # the client may relay (as Postfix's mynetworks lets it), for the remote recipient
    text = cfg.read_text()
    cfg.write_text(
        text.replace("relay_networks = []", 'relay_networks = ["127.0.0.0/8"]', 1)
        if "relay_networks = []" in text
        else text.replace("[smtp]\n", '[smtp]\nrelay_networks = ["127.0.0.0/8"]\n', 1)
    )
    return srv


# virtual(8) delivers the local recipient's copy (the tests' instance has no such service)
MASTER_CF = postfix.MASTER_CF + "virtual   unix  -       n       n       -       -       virtual\n"


def postfix_server(root: Path) -> postfix.PostfixInstance:
    import pwd

    postfix.MASTER_CF = MASTER_CF

    pw = pwd.getpwnam("postfix")
    pf = postfix.PostfixInstance(
        root,
        relay_domains=["remote.test"],
        relay_transport="smtp:[127.0.0.1]:9",
        main_cf={
            "virtual_mailbox_domains": "example.test",
            "virtual_mailbox_maps": "static:bench/",  # trailing slash: Maildir
            "virtual_uid_maps": f"static:{pw.pw_uid}",
            "virtual_gid_maps": f"static:{pw.pw_gid}",
            "queue_run_delay": "3600s",
            "minimal_backoff_time": "3600s",
            "maximal_backoff_time": "3600s",
        },
    )
    base = pf.dir / "vmail"
    base.mkdir()
    shutil.chown(base, "postfix", "postfix")
    pf.extra["virtual_mailbox_base"] = str(base)
    return pf


PROBE_FILES = 200


def creation_us(directory: Path) -> float:
    """CPU microseconds to create one small file in `directory` (a new subdirectory of it, left
    for the run's cleanup: deleting would make the next creations dearer). On this machine's
    journal-less ext4 the figure moves from ~15 us to ~300 us with the files deleted nearby in
    the last minutes (bench/RESULTS.md, 2026-12-07 20:10): printed beside each round so that a
    round's figures can be read with it."""
    probe = Path(tempfile.mkdtemp(prefix=".probe-", dir=directory))
    t = time.thread_time()
    for i in range(PROBE_FILES):
        fd = os.open(probe / str(i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, b"x" * 1024)
        os.close(fd)
    return (time.thread_time() - t) / PROBE_FILES * 1e6


def main() -> None:
    global SIZE, SESSIONS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200, help="messages sent first, not counted")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rcpt", action="append", choices=["local", "remote"])
    ap.add_argument("--only", choices=["carteiro", "postfix"])
    ap.add_argument("--same-connection", action="store_true", help="smtp-source -d")
    ap.add_argument(
        "--dir",
        help="where to put carteiro's data dir (default: the temp dir, where Postfix's instance is)",
    )
    ap.add_argument("--size", type=int, default=SIZE, help="payload octets (smtp-source -l)")
    ap.add_argument("--sessions", type=int, default=SESSIONS, help="smtp-source -s")
    args = ap.parse_args()
    SIZE, SESSIONS = args.size, args.sessions
    if (reason := postfix.available()) is not None:
        raise SystemExit(reason)
    kinds = args.rcpt or ["local", "remote"]
    shape = "one connection" if args.same_connection else "a connection per message"
    print(
        f"{SIZE} octets (smtp-source -l {SIZE} -s {SESSIONS}), {shape},"
        f" {args.messages} messages per figure"
    )
    # Beside Postfix's instance (in the temp dir, which its user must reach): the same file
    # system and parent, so that both create their files in like conditions (see creation_us)
    base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix="bench-smtp-pf-", dir=base) as tmp:
        root = Path(tmp)
        srv = carteiro_server(root / "carteiro")
        pf = postfix_server(root / "postfix")
        srv.start()
        pf.start()
        assert srv.proc is not None
        master = int((pf.dir / "queue" / "pid" / "master.pid").read_text().strip())
        servers = {
            "carteiro": (srv.ports["smtp"], srv.proc.pid),
            "postfix": (pf.smtp_port, master),
        }
        if args.only:
            servers = {args.only: servers[args.only]}
        try:
            for port, pid in servers.values():
                for rcpt in kinds:
                    if args.warmup:
                        measure(
                            port,
                            pid,
                            LOCAL if rcpt == "local" else REMOTE,
                            args.warmup,
                            args.same_connection,
                        )
            for run in range(args.repeat):
                probes = []
                if "carteiro" in servers:
                    probes.append(f"carteiro's tmp/ {creation_us(srv.data / 'tmp'):.0f} us")
                if "postfix" in servers:
                    probes.append(f"Postfix's queue/ {creation_us(pf.dir / 'queue'):.0f} us")
                print(f"run {run + 1}: CPU to create a file in " + ", ".join(probes))
                row = []
                for rcpt in kinds:
                    got = {}
                    for name, (port, pid) in servers.items():
                        got[name] = measure(
                            port,
                            pid,
                            LOCAL if rcpt == "local" else REMOTE,
                            args.messages,
                            args.same_connection,
                        )
                    row.append((rcpt, got))
                load = os.getloadavg()[0]
                for rcpt, got in row:
                    parts = [f"{n} {r:5.0f} msg/s {c:6.3f} ms CPU/msg" for n, (r, c) in got.items()]
                    ratio = ""
                    if len(got) == 2:
                        ratio = (
                            f"  carteiro/postfix CPU {got['carteiro'][1] / got['postfix'][1]:.2f}x"
                        )
                    print(f"run {run + 1} (load {load:4.1f}) {rcpt:6}: " + "; ".join(parts) + ratio)
            new = pf.dir / "vmail" / "bench" / "new"
            if "postfix" in servers and new.exists():  # (no local recipient: no Maildir)
                delivered = sum(1 for _ in new.iterdir())
                print(f"postfix: {delivered} messages in the Maildir")
        finally:
            srv.stop()
            pf.stop()
        if "carteiro" in servers:
            stored = index_count(srv.data, "SELECT count(*) FROM messages")
            print(f"carteiro: {stored} messages in the store")
        print(f"({os.cpu_count()} CPUs; CPU: every process/thread of the server, until idle)")


if __name__ == "__main__":
    main()

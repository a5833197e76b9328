"""SMTP benchmark: messages/s accepted *and durably delivered* by `carteiro serve` (fsync on),
against a minimal aiosmtpd server that writes and fsyncs each message into a Maildir (the baseline).

Scenarios: 5,000 x 1 KB over 1 session, 5,000 x 1 KB over 20 concurrent sessions, 1,000 x 100 KB
over 20 sessions, 2,000 x 1 KB with a connection per message (as Postfix's `smtp-source -s 1`
sends them). One client for both servers: raw asyncio, pipelining MAIL/RCPT/DATA when the
server offers PIPELINING (aiosmtpd does not). Each server runs in its own process. Not a test.

Besides messages/s, prints the server's CPU time per message (utime + stime of the server process,
all its threads, from /proc/PID/stat around each scenario): on a shared, noisy machine that figure
moves less than the wall-clock rate.

With --mailauth, carteiro runs twice instead, checks off then on ([mailauth] with the client's
address checked, records served by a dnslib server in this process, answers cached after the
first message): every message is DKIM-signed (RSA 2048) by the client, passes SPF and DMARC, and
the server verifies all of it. The difference in CPU per message is the cost of the checks.

Run: .venv/bin/python bench/smtp.py [--scale 0.2] [--dir PATH] [--only carteiro|baseline]
                                    [--scenario N ...] [--repeat N] [--mailauth]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.testing.server import ServerProcess, free_port, index_count, wait_port

RCPT = "bench@example.test"

BASELINE_SERVER = textwrap.dedent(
    """
    import asyncio, os, sys, itertools
    from aiosmtpd.smtp import SMTP

    root = sys.argv[1]
    for d in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    counter = itertools.count()
    pid = os.getpid()

    def deliver(data):
        name = f"{pid}.{next(counter)}"
        tmp = os.path.join(root, "tmp", name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(root, "new", name))
        dfd = os.open(os.path.join(root, "new"), os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            await asyncio.get_running_loop().run_in_executor(None, deliver, envelope.original_content)
            return "250 OK"

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(
            lambda: SMTP(Handler(), hostname="baseline.test", decode_data=False),
            "127.0.0.1", int(sys.argv[2]))
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())
    """
)


SERIAL = itertools.count()  # numbers the messages of every scenario of this process
SIGN: list[object] = []  # a DKIM signer (message -> field) when --mailauth
LINE = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"


def make_message(size: int, n: int, body: bytes | None = None) -> bytes:
    """Message `n` of about `size` octets. Every message is distinct (its Message-ID and
    Subject): carteiro treats a resent identical message (same envelope, Message-ID and content)
    as a retry and stores it once, so repeating a few messages would measure that shortcut."""
    head = (
        f"From: sender@example.org\r\nTo: {RCPT}\r\nSubject: bench {n}\r\n"
        f"Message-ID: <{n}.{os.getpid()}.bench@example.org>\r\n"
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
    ).encode()
    if body is None:
        body = LINE * max(1, (size - len(head)) // len(LINE))
    if SIGN:
        signer = SIGN[0]
        return signer(head + body) + head + body  # type: ignore[operator,no-any-return]
    return head + body


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    rate: float  # messages/s
    cpu_ms: float  # server CPU per message, ms


@dataclass
class Scenario:
    name: str
    messages: int
    size: int
    sessions: int
    # a new connection (greeting, EHLO, QUIT) for every message, as Postfix's smtp-source does
    connection_per_message: bool = False


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer
        self.pipelining = False

    async def reply(self) -> str:
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            if line[3:4] != b"-":
                return line.decode()

    async def ehlo(self) -> None:
        await self.reply()
        self.w.write(b"EHLO bench.example.org\r\n")
        lines = []
        while True:
            line = await self.r.readline()
            lines.append(line)
            if line[3:4] != b"-":
                break
        self.pipelining = any(b"PIPELINING" in line for line in lines)

    async def send(self, message: bytes) -> None:
        env = b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<" + RCPT.encode() + b">\r\nDATA\r\n"
        if self.pipelining:
            self.w.write(env)
            for _ in range(3):
                rep = await self.reply()
        else:
            for cmd in env.split(b"\r\n")[:3]:
                self.w.write(cmd + b"\r\n")
                rep = await self.reply()
        if not rep.startswith("354"):
            raise RuntimeError(f"DATA refused: {rep!r}")
        self.w.write(message + b".\r\n")
        rep = await self.reply()
        if not rep.startswith("250"):
            raise RuntimeError(f"message refused: {rep!r}")

    async def quit(self) -> None:
        self.w.write(b"QUIT\r\n")
        await self.reply()
        self.w.close()


async def run_scenario(port: int, sc: Scenario) -> float:
    body = make_message(sc.size, 0)
    body = body[body.index(b"\r\n\r\n") + 4 :]
    per = sc.messages // sc.sessions
    if sc.connection_per_message:
        return await _connection_per_message(port, sc, per, body)
    clients = []
    for _ in range(sc.sessions):
        c = Client(*await asyncio.open_connection("127.0.0.1", port))
        await c.ehlo()
        clients.append(c)

    async def session(c: Client) -> None:
        for _ in range(per):
            await c.send(make_message(sc.size, next(SERIAL), body))

    start = time.perf_counter()
    await asyncio.gather(*(session(c) for c in clients))
    elapsed = time.perf_counter() - start
    for c in clients:
        await c.quit()
    return per * sc.sessions / elapsed


async def _connection_per_message(port: int, sc: Scenario, per: int, body: bytes) -> float:
    async def session() -> None:
        for _ in range(per):
            c = Client(*await asyncio.open_connection("127.0.0.1", port))
            await c.ehlo()
            await c.send(make_message(sc.size, next(SERIAL), body))
            await c.quit()

    start = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(sc.sessions)))
    return per * sc.sessions / (time.perf_counter() - start)


def measure(port: int, pid: int, sc: Scenario) -> Result:
    before = cpu_seconds(pid)
    rate = asyncio.run(run_scenario(port, sc))
    # Work left after the last reply (carteiro writes small messages' files after COMMIT) is
    # the message's too: wait until the server is idle (its CPU time still for 0.3 s).
    used, deadline = cpu_seconds(pid), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = cpu_seconds(pid)
        if now == used:
            break
        used = now
    used -= before
    return Result(rate, used * 1000 / (sc.messages // sc.sessions * sc.sessions))


def bench_carteiro(
    root: Path, scenarios: list[Scenario], smtp_config: str = "", extra: str = ""
) -> list[Result]:
    srv = ServerProcess(
        root,
        users={RCPT: "bench-password"},
        services=("smtp",),
        extra_config='[log]\nlevel = "warning"\n' + extra,
    )
    srv.init()
    if smtp_config:
        cfg = srv.data / "carteiro.toml"
        cfg.write_text(cfg.read_text().replace("[smtp]\n", f"[smtp]\n{smtp_config}\n", 1))
    srv.start()
    assert srv.proc is not None
    results = []
    try:
        expected = 0
        for sc in scenarios:
            results.append(measure(srv.ports["smtp"], srv.proc.pid, sc))
            expected += sc.messages // sc.sessions * sc.sessions
    finally:
        srv.stop()
    got = index_count(srv.data, "SELECT count(*) FROM messages")
    if got != expected:
        raise SystemExit(f"carteiro stored {got} messages, expected {expected}")
    return results


def bench_baseline(root: Path, scenarios: list[Scenario]) -> list[Result]:
    maildir = root / "baseline" / "Maildir"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", BASELINE_SERVER, str(maildir), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = []
    try:
        wait_port("127.0.0.1", port, 30, proc)  # type: ignore[arg-type]
        for sc in scenarios:
            results.append(measure(port, proc.pid, sc))
    finally:
        proc.terminate()
        proc.wait(10)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the message counts")
    ap.add_argument("--dir", help="where to put the data dirs (default: a temp dir under .)")
    ap.add_argument("--only", choices=["carteiro", "baseline"])
    ap.add_argument(
        "--smtp-config", default="", help='extra [smtp] keys, e.g. "memory_buffer_max = 65536"'
    )
    ap.add_argument(
        "--scenario",
        type=int,
        action="append",
        choices=[1, 2, 3, 4],
        help="run only these scenarios (1: 1 KB x 1 session, 2: 1 KB x 20, 3: 100 KB x 20,"
        " 4: 1 KB, a connection per message, one at a time)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="run the whole comparison N times")
    ap.add_argument(
        "--mailauth", action="store_true", help="carteiro with checks off vs on (no baseline)"
    )
    args = ap.parse_args()
    s = args.scale
    scenarios = [
        Scenario("5,000 x 1 KB, 1 session", int(5000 * s), 1024, 1),
        Scenario("5,000 x 1 KB, 20 sessions", int(5000 * s), 1024, 20),
        Scenario("1,000 x 100 KB, 20 sessions", int(1000 * s), 100 * 1024, 20),
        Scenario("2,000 x 1 KB, 1 conn./message", int(2000 * s), 1024, 1, True),
    ]
    if args.scenario:
        scenarios = [scenarios[i - 1] for i in sorted(set(args.scenario))]
    base = Path(args.dir) if args.dir else Path.cwd()
    if args.mailauth:
        mailauth_comparison(base, scenarios, args)
        return
    nan = Result(float("nan"), float("nan"))
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-smtp-", dir=base) as tmp:
            root = Path(tmp)
            ours = (
                bench_carteiro(root / "carteiro", scenarios, args.smtp_config)
                if args.only != "baseline"
                else []
            )
            theirs = bench_baseline(root, scenarios) if args.only != "carteiro" else []
        if args.repeat > 1:
            print(f"run {run + 1} of {args.repeat}; load average {os.getloadavg()[0]:.2f}")
        print(
            f"{'scenario':30} {'carteiro':>10} {'aiosmtpd+fsync':>15} {'ratio':>6}"
            f" {'CPU ms/msg: carteiro':>21} {'baseline':>9}"
        )
        for i, sc in enumerate(scenarios):
            a = ours[i] if ours else nan
            b = theirs[i] if theirs else nan
            print(
                f"{sc.name:30} {a.rate:6.0f} m/s {b.rate:11.0f} m/s {a.rate / b.rate:5.2f}x"
                f" {a.cpu_ms:21.3f} {b.cpu_ms:9.3f}"
            )
    print(
        f"(durable: fsync on; {os.cpu_count()} CPUs; scale {s}; CPU: server process, all threads)"
    )


def mailauth_comparison(base: Path, scenarios: list[Scenario], args: argparse.Namespace) -> None:
    from carteiro.mailauth.dkim import DKIMSigner, ensure_dkim_key, key_path, txt_record
    from carteiro.testing.dns import ZoneServer

    for run in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-smtp-auth-", dir=base) as tmp:
            root = Path(tmp)
            ensure_dkim_key(root / "keys", "example.org", "bench")
            record = txt_record(key_path(root / "keys", "example.org", "bench"))
            chunks = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
            zone = (
                'example.org. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"\n'
                '_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"\n'
                f"bench._domainkey.example.org. 300 IN TXT {chunks}\n"
                "1.0.0.127.in-addr.arpa. 300 IN PTR bench.example.org.\n"
                "bench.example.org. 300 IN A 127.0.0.1\n"
            )
            SIGN[:] = [DKIMSigner(root / "keys", ["example.org"], "bench")]
            with ZoneServer(zone) as dns:
                off = bench_carteiro(root / "off", scenarios, args.smtp_config)
                on = bench_carteiro(
                    root / "on",
                    scenarios,
                    args.smtp_config,
                    f'[dns]\nnameservers = ["{dns.address}"]\n'
                    "[mailauth]\nignore_networks = []\n"
                    # the bench client is one address sending thousands a minute
                    "[limits]\npregreet_wait = 0\nmessages_per_minute_per_ip = 0\n"
                    "connections_per_minute_per_ip = 0\n"
                    "recipients_per_minute_per_ip = 0\n",
                )
            SIGN.clear()
        if args.repeat > 1:
            print(f"run {run + 1} of {args.repeat}; load average {os.getloadavg()[0]:.2f}")
        print(
            f"{'scenario (DKIM-signed mail)':30} {'checks off':>11} {'checks on':>10} {'ratio':>6}"
            f" {'CPU ms/msg: off':>16} {'on':>7} {'checks':>7}"
        )
        for i, sc in enumerate(scenarios):
            a, b = off[i], on[i]
            print(
                f"{sc.name:30} {a.rate:7.0f} m/s {b.rate:6.0f} m/s {b.rate / a.rate:5.2f}x"
                f" {a.cpu_ms:16.3f} {b.cpu_ms:7.3f} {b.cpu_ms - a.cpu_ms:7.3f}"
            )
    print(
        f"(durable: fsync on; {os.cpu_count()} CPUs; scale {args.scale}; checks on: iprev, SPF,"
        " DKIM (RSA 2048), DMARC, ARC, with cached DNS)"
    )


if __name__ == "__main__":
    main()

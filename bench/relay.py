"""Relay benchmark: two carteiro servers, A (a.test on 127.0.0.2) relaying to B (b.test on
127.0.0.3) through MX records served by an in-process dnslib server.

Figures:
- throughput: N x 1 KB messages injected into A's SMTP by parallel clients, msgs/s until all
  are in B's store (B's SQLite index, read from this process);
- latency at low load: one message at a time, from the start of the SMTP transaction at A
  until the message is in B's store, p50 and p99.
Baseline, same run: the same messages sent straight to B (one hop, no queue), so the ratio is
the cost of the second hop: durable queue, DNS, outbound SMTP.
- CPU per message of each server (every process and thread, from /proc, until idle) during the
  throughput phases: A receives, queues, DKIM-signs (RSA and Ed25519) and delivers; B receives
  and checks (SPF, and DKIM against A's keys, which the zone publishes), then stores.

Run: .venv/bin/python bench/relay.py [--messages 5000] [--clients 8] [--latency 200]
Not a test: it prints figures (copy them into bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.mailauth import dkim_keys
from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.testing.dns import ZoneServer
from carteiro.testing.procstat import wait_idle
from carteiro.testing.server import ServerProcess, free_port

A_IP, B_IP = "127.0.0.2", "127.0.0.3"
BOB = "bob@b.test"


def message(tag: str, i: int) -> bytes:
    head = (
        f"From: bench@a.test\r\nTo: {BOB}\r\nSubject: {tag} {i}\r\n"
        f"Message-ID: <{tag}.{i}@a.test>\r\n\r\n"
    ).encode()
    return head + b"x" * max(0, 1022 - len(head)) + b"\r\n"  # 1 KB


def inject(port: int, host: str, tag: str, n: int, clients: int) -> None:
    """n messages over `clients` parallel SMTP connections."""
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            with smtplib.SMTP(host, port, timeout=120) as s:
                for i in range(k, n, clients):
                    s.sendmail("bench@a.test", [BOB], message(tag, i))
        except BaseException as e:  # report, do not hang
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class Inbox:
    def __init__(self, data: Path) -> None:
        self.store = SqliteMaildirStore(data)

    async def count(self) -> int:
        acct = await self.store.account(BOB)
        mbox = await acct.get_mailbox("INBOX")
        return (await acct.counts(mbox.id)).messages

    async def wait(self, target: int, timeout: float, step: float = 0.01) -> float:
        deadline = time.monotonic() + timeout
        while (n := await self.count()) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {n} of {target} messages arrived")
            await asyncio.sleep(step)
        return time.perf_counter()


async def throughput(
    inbox: Inbox, port: int, host: str, tag: str, n: int, clients: int, pids: list[int]
) -> tuple[float, list[float]]:
    """(messages/s until all are in B's store, CPU ms per message of each of `pids`)."""
    base = await inbox.count()
    cpu = [await asyncio.to_thread(wait_idle, pid) for pid in pids]
    start = time.perf_counter()
    job = asyncio.create_task(asyncio.to_thread(inject, port, host, tag, n, clients))
    done = await inbox.wait(base + n, timeout=1800, step=0.05)
    await job
    used = [await asyncio.to_thread(wait_idle, pid) for pid in pids]
    return n / (done - start), [(u - c) * 1000 / n for u, c in zip(used, cpu, strict=True)]


async def latency(inbox: Inbox, port: int, host: str, tag: str, n: int) -> list[float]:
    out: list[float] = []
    s = await asyncio.to_thread(smtplib.SMTP, host, port, timeout=60)
    try:
        for i in range(n):
            base = await inbox.count()
            start = time.perf_counter()
            await asyncio.to_thread(s.sendmail, "bench@a.test", [BOB], message(tag, i))
            done = await inbox.wait(base + 1, timeout=60, step=0.002)
            out.append(done - start)
    finally:
        await asyncio.to_thread(s.quit)
    return out


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def servers(root: Path, dns_port: int) -> tuple[ServerProcess, ServerProcess]:
    b = ServerProcess(
        root / "b",
        domains=["b.test"],
        hostname="mx.b.test",
        users={BOB: "pw"},
        host=B_IP,
        services=("smtp",),
        # B checks what A sends as a receiving MX does (loopback is exempt by default)
        extra_config=(
            f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n'
            "[mailauth]\nignore_networks = []\n"
            "[limits]\npregreet_wait = 0\nmessages_per_minute_per_ip = 0\n"
            "connections_per_minute_per_ip = 0\nrecipients_per_minute_per_ip = 0\n"
        ),
    )
    b.init()
    a = ServerProcess(
        root / "a",
        domains=["a.test"],
        hostname="mx.a.test",
        users={"bench@a.test": "pw"},
        host=A_IP,
        services=("smtp",),
        extra_config=(
            f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n'
            f"[queue]\nremote_port = {b.ports['smtp']}\n"
        ),
    )
    a.init()
    cfg = a.data / "carteiro.toml"
    # The benchmark's clients relay through A's MX port without AUTH, like a trusted network.
    cfg.write_text(
        cfg.read_text().replace("relay_networks = []", 'relay_networks = ["127.0.0.0/8"]')
    )
    return a, b


def report(name: str, relay: float, direct: float, unit: str, fmt: Callable[[float], str]) -> None:
    ratio = relay / direct if direct else float("nan")
    print(f"{name:<28} {fmt(relay):>12} {fmt(direct):>12} {ratio:>8.2f}  {unit}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--latency", type=int, default=200, help="messages for the latency figures")
    ap.add_argument("--dir", help="where the two data dirs go (default: a temp dir here)")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    ap.add_argument("--only", choices=["relay", "direct"], help="run one side only")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-relay-", dir=args.dir or "."))
    dns_port = free_port()
    zone = f"""
a.test.     60 IN MX 10 mx.a.test.
mx.a.test.  60 IN A {A_IP}
b.test.     60 IN MX 10 mx.b.test.
mx.b.test.  60 IN A {B_IP}
"""
    a, b = servers(root, dns_port)
    for entry in dkim_keys.active(a.data, "a.test", "carteiro"):  # B verifies A's signatures
        record = dkim_keys.txt_record(dkim_keys.key_path(a.data, "a.test", entry.selector))
        chunks = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
        zone += f"{entry.selector}._domainkey.a.test. 60 IN TXT {chunks}\n"
    dns = ZoneServer(zone, port=dns_port).start()
    try:
        b.start()
        a.start()
        inbox = Inbox(b.data)
        await inject_warmup(inbox, a, b)
        n, c = args.messages, args.clients
        print(
            f"relay A -> B: {n} x 1 KB messages, {c} clients; latency over {args.latency} messages"
        )
        assert a.proc is not None and b.proc is not None
        pids = [a.proc.pid, b.proc.pid]
        direct_tp, (_, direct_b) = await throughput(
            inbox, b.ports["smtp"], B_IP, "direct", n, c, pids
        )
        relay_tp, (relay_a, relay_b) = await throughput(
            inbox, a.ports["smtp"], A_IP, "relay", n, c, pids
        )
        direct_lat = await latency(inbox, b.ports["smtp"], B_IP, "direct-lat", args.latency)
        relay_lat = await latency(inbox, a.ports["smtp"], A_IP, "relay-lat", args.latency)
        await inbox.store.close()
        print(f"{'':<28} {'relay A->B':>12} {'direct ->B':>12} {'ratio':>8}")
        report("throughput", relay_tp, direct_tp, "msgs/s until in B's store", lambda v: f"{v:.0f}")
        ms = lambda v: f"{v * 1000:.1f}"  # noqa: E731
        report("latency p50", pct(relay_lat, 50), pct(direct_lat, 50), "ms (low load)", ms)
        report("latency p99", pct(relay_lat, 99), pct(direct_lat, 99), "ms (low load)", ms)
        cpu = lambda v: f"{v:.3f}"  # noqa: E731
        report("CPU of A", relay_a, float("nan"), "ms per message (relay phase)", cpu)
        report("CPU of B", relay_b, direct_b, "ms per message (B verifies A's DKIM)", cpu)
    finally:
        a.stop()
        b.stop()
        dns.stop()
        if args.keep:
            print(f"data dirs and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def inject_warmup(inbox: Inbox, a: ServerProcess, b: ServerProcess) -> None:
    """One message each way first: accounts, caches and connections exist before timing."""
    await asyncio.to_thread(inject, b.ports["smtp"], B_IP, "warm-direct", 1, 1)
    await asyncio.to_thread(inject, a.ports["smtp"], A_IP, "warm-relay", 1, 1)
    await inbox.wait(2, timeout=60)


if __name__ == "__main__":
    asyncio.run(main())

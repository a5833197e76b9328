"""Webmail benchmark: message list and message view latency (median, p99) on a 10,000-message
folder with 10 concurrent users, against a real `carteiro serve` (webmail inside it, IMAP over
implicit TLS on loopback), beside the raw IMAP commands those pages issue, timed the same way
from the same number of concurrent clients (the baseline: what the webmail adds on top of IMAP).

Issue 14's target: pages render in under 300 ms on the server for a 10,000-message folder.
Not a timed test. Run: .venv/bin/python bench/web.py [--messages 10000] [--users 10] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.testing.server import ServerProcess
from carteiro.web import mailbox
from carteiro.web.imap import Endpoint
from carteiro.web.sessions import open_connection

ACCOUNT, PASSWORD = "big@example.test", "bench-password"


def message(i: int) -> bytes:
    return (
        f"From: Sender {i % 97} <s{i % 97}@example.org>\r\nTo: {ACCOUNT}\r\n"
        f"Subject: =?utf-8?q?Relat=C3=B3rio_n=C2=BA_{i}?=\r\n"
        f"Date: Tue, 1 Oct 2024 10:00:00 +0000\r\nMessage-ID: <{i}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + f"Line {i} of a message body.\r\n"
        * 40
    ).encode()


async def fill(data: Path, n: int) -> None:
    store = SqliteMaildirStore(data)
    try:
        acct = await store.account(ACCOUNT)
        sem = asyncio.Semaphore(256)

        async def one(i: int) -> None:
            async with sem:
                flags = () if i % 10 == 0 else ("\\Seen",)
                await acct.append("INBOX", message(i), flags, 1_700_000_000 + i)

        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await store.close()


def stats(samples: list[float]) -> str:
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return f"median {statistics.median(s) * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms"


async def timed(
    users: int, rounds: int, op: Callable[[int, random.Random], Awaitable[None]]
) -> list[float]:
    samples: list[float] = []

    async def user(k: int) -> None:
        rng = random.Random(k)
        for _ in range(rounds):
            t = time.perf_counter()
            await op(k, rng)
            samples.append(time.perf_counter() - t)

    await asyncio.gather(*(user(k) for k in range(users)))
    return samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the server process (the webmail runs inside it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(srv: ServerProcess, n: int, users: int, rounds: int) -> None:
    assert srv.proc is not None
    pid = srv.proc.pid
    base = f"https://127.0.0.1:{srv.ports['web']}"
    clients = [httpx.AsyncClient(base_url=base, timeout=60, verify=False) for _ in range(users)]
    for c in clients:
        page = await c.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        r = await c.post(
            "/login", data={"user": ACCOUNT, "password": PASSWORD, "csrf": token.group(1)}
        )
        assert r.status_code == 303, r.text
    pages = -(-n // mailbox.PAGE_SIZE)

    async def web_list(k: int, rng: random.Random) -> None:
        r = await clients[k].get("/box", params={"page": rng.randint(1, pages)})
        assert r.status_code == 200

    async def web_view(k: int, rng: random.Random) -> None:
        r = await clients[k].get("/msg", params={"folder": "INBOX", "uid": rng.randint(1, n)})
        assert r.status_code == 200

    ep = Endpoint("127.0.0.1", srv.ports["imaps"], "implicit", verify=False)
    conns = [await open_connection(ep, ACCOUNT, PASSWORD) for _ in range(users)]
    for c in conns:
        await mailbox.select(c, "INBOX")

    async def raw_list(k: int, rng: random.Random) -> None:
        # What one list page costs in IMAP: LIST (with STATUS), NOOP, one FETCH of 50.
        c = conns[k]
        await mailbox.list_folders(c)
        await mailbox.page(c, "INBOX", rng.randint(1, pages))

    async def raw_view(k: int, rng: random.Random) -> None:
        c = conns[k]
        await mailbox.select(c, "INBOX")
        await mailbox.fetch_raw(c, rng.randint(1, n))
        await mailbox.list_folders(c)

    for name, web_op, raw_op in (
        ("message list", web_list, raw_list),
        ("message view", web_view, raw_view),
    ):
        medians = []
        for what, op in ((f"web  {name}", web_op), ("IMAP same commands", raw_op)):
            await timed(users, 2, op)  # warm-up
            cpu = cpu_seconds(pid)
            samples = await timed(users, rounds, op)
            cpu = (cpu_seconds(pid) - cpu) / len(samples)
            medians.append(statistics.median(samples))
            print(
                f"  {what:<19} {stats(samples)}   server CPU {cpu * 1000:5.1f} ms/request"
                f"   ({len(samples)} requests)"
            )
        print(f"  {'':19} web / IMAP (median): {medians[0] / medians[1]:.2f}")
    for c in clients:
        await c.aclose()
    for conn in conns:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        srv = ServerProcess(
            Path(tmp),
            users={ACCOUNT: PASSWORD},
            services=("imaps", "submissions", "web"),
            extra_config="[auth]\ncache_ttl = 3600.0\n",
        )
        srv.init()
        t = time.monotonic()
        asyncio.run(fill(srv.data, a.messages))
        print(f"filled {a.messages} messages in {time.monotonic() - t:.0f} s")
        with srv:
            print(
                f"{a.users} concurrent users, {a.rounds} requests each, one {a.messages}-message folder"
            )
            asyncio.run(run(srv, a.messages, a.users, a.rounds))


if __name__ == "__main__":
    main()

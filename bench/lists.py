"""Mailing list fan-out benchmark: a post to a list of N members (default 10,000), from the list
engine's hand-over until every member's copy is durably in the outbound queue.

Figures, same run, same spool code (fsync on, a fresh temp dir each):
- lists: ListService.receive() of one 2 KB post: the chain, the pipeline, the member query and
  N/batch VERP queue messages with a per-member one-click header;
- baseline "alias": the same message queued once with N plain recipients (what an alias with N
  targets costs today: no VERP, no per-member header);
- baseline "per-member": one queue message per member (the naive personalised fan-out), enqueued
  concurrently so group commit helps it as much as it can.
Ratios are lists / alias and per-member / lists. Prints the load average with the figures.

Run: .venv/bin/python bench/lists.py [--members 10000] [--batch 1000]
Not a test: it prints figures (copy them into bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.app import QueueSender
from carteiro.lists.db import ListDB
from carteiro.lists.model import MailingList, Member, Settings
from carteiro.lists.service import ListService
from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.queue.spool import FileSpool

POST = (
    b"From: Alice <alice@l.test>\r\nTo: big@l.test\r\nSubject: news for everyone\r\n"
    b"Message-ID: <bench.1@l.test>\r\nDate: Mon, 7 Dec 2026 02:00:00 +0000\r\n\r\n"
    + b"All the news that fits.\r\n"
    * 80
)


async def with_lists(root: Path, members: list[str], batch: int) -> tuple[float, int]:
    spool = FileSpool(root / "queue")
    await spool.open()
    db = ListDB(root / "lists.sqlite")
    db.create(MailingList("big@l.test", ["alice@l.test"], Settings(posting="anyone"), time.time()))
    db.add_members("big@l.test", [Member(a) for a in members])
    sender = QueueSender()
    sender.spool = spool
    svc = ListService(db, sender, web_url="https://mx.l.test", batch=batch)
    t = time.perf_counter()
    out = await svc.receive("alice@l.test", "big@l.test", POST)
    took = time.perf_counter() - t
    assert out.code == 250, out
    queued = sum(len(m.recipients) for m in spool.messages.values())
    await svc.stop()
    svc.close()
    await spool.close()
    return took, queued


async def alias(root: Path, members: list[str]) -> float:
    spool = FileSpool(root / "queue")
    await spool.open()
    t = time.perf_counter()
    await spool.enqueue(Envelope("alice@l.test", tuple(QueuedRecipient(a) for a in members)), POST)
    took = time.perf_counter() - t
    await spool.close()
    return took


async def per_member(root: Path, members: list[str]) -> float:
    spool = FileSpool(root / "queue")
    await spool.open()
    t = time.perf_counter()
    await asyncio.gather(
        *(
            spool.enqueue(
                Envelope(f"big-bounces+{a.replace('@', '=')}@l.test", (QueuedRecipient(a),)), POST
            )
            for a in members
        )
    )
    took = time.perf_counter() - t
    await spool.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    members = [f"member{i}@m{i % 50}.test" for i in range(args.members)]
    base = Path(tempfile.mkdtemp(prefix="bench-lists-"))
    try:
        runs: dict[str, float] = {}
        load = os.getloadavg()
        took, queued = asyncio.run(with_lists(base / "lists", members, args.batch))
        assert queued == args.members, queued
        runs["lists"] = took
        runs["alias"] = asyncio.run(alias(base / "alias", members))
        runs["per-member"] = asyncio.run(per_member(base / "per", members))
        print(
            f"post to a {args.members}-member list, 2 KB, batch {args.batch}"
            f" (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs)"
        )
        for name, t in runs.items():
            print(f"  {name:<11} {t:7.2f} s  ({args.members / t:9.0f} recipients/s)")
        print(f"  ratio lists / alias      {runs['lists'] / runs['alias']:.2f}")
        print(f"  ratio per-member / lists {runs['per-member'] / runs['lists']:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

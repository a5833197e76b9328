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

With --smtp, also a real `carteiro serve`: the SMTP client's wait for its 250 after DATA for a
post to the N-member list against a message to one local account (baseline), and the time until
the fan-out is in the queue (from the server's log; members' domain routed to a closed port, so
their copies wait in the queue instead of leaving).

Run: .venv/bin/python bench/lists.py [--members 10000] [--batch 1000] [--smtp]
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


def smtp_figures(members: list[str], batch: int) -> None:
    import re
    import smtplib

    from carteiro.testing.server import ServerProcess

    root = Path(tempfile.mkdtemp(prefix="bench-lists-smtp-"))
    extra = '[transport]\n"members.test" = "127.0.0.1:9"\n[queue]\nretry_schedule = [3600.0]\n'
    srv = ServerProcess(
        root,
        domains=["l.test"],
        hostname="mx.l.test",
        users={"alice@l.test": "pw"},
        services=("smtp",),
        extra_config=extra + f"[lists]\nbatch = {batch}\n",
    )
    srv.init()
    srv.cli("list", "create", "big@l.test", "--owner", "alice@l.test", "--posting", "anyone")
    for i in range(0, len(members), 2000):
        srv.cli("list", "members", "add", "big@l.test", *members[i : i + 2000])
    srv.start()
    try:

        def post(rcpt: str, n: int) -> float:
            with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=120) as s:
                s.ehlo()
                s.mail("alice@l.test")
                s.rcpt(rcpt)
                s.putcmd("data")
                s.getreply()
                body = POST.replace(b"bench.1", f"bench.{rcpt}.{n}".encode())
                s.send(body + b"\r\n.\r\n")
                t = time.perf_counter()
                code, _ = s.getreply()
                took = time.perf_counter() - t
                assert code == 250, code
            return took

        single = sorted(post("alice@l.test", i) for i in range(5))[2]
        t0 = time.perf_counter()
        big = post("big@l.test", 0)
        want = len(members) // batch + (1 if len(members) % batch else 0)
        pattern = re.compile(r"from=<big-bounces@l\.test> size=\d+ nrcpt=\d+")
        while len(pattern.findall(srv.log())) < want:
            if time.perf_counter() - t0 > 300:
                raise SystemExit("the fan-out did not reach the queue in 300 s")
            time.sleep(0.05)
        queued = time.perf_counter() - t0
        big = sorted([big, *(post("big@l.test", n) for n in (1, 2))])[1]
        print(
            f"  smtp: 250 after DATA, post to the {len(members)}-member list {big * 1000:.1f} ms,"
            f" to one account {single * 1000:.1f} ms (baseline; medians of 3 and 5)"
        )
        print(
            f"  smtp: from DATA's 250 until all {want} fan-out messages are queued {queued:.2f} s"
        )
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--smtp", action="store_true", help="also through a real server (slower)")
    args = ap.parse_args()
    members = [f"member{i}@members.test" for i in range(args.members)]
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
        if args.smtp:
            smtp_figures(members, args.batch)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""QRESYNC benchmark: a client that knew a big mailbox comes back after 1,000 changes.

A real `carteiro serve` (SQLite + Maildir store) with a --big (100,000) message INBOX. Client A
selects it with CONDSTORE and caches UIDVALIDITY, HIGHESTMODSEQ and its UIDs; client B then makes
1,000 changes (900 messages get a keyword, 100 are expunged, in commands of 100). Timed, best of
5 on A's connection: `SELECT INBOX (QRESYNC (uidvalidity modseq 1:max))` up to its tagged OK
(VANISHED (EARLIER) + 900 FETCH lines), beside the resync a client without QRESYNC must do
(SELECT + UID FETCH 1:* (FLAGS)), and the same QRESYNC SELECT against Dovecot (Debian's
dovecot-imapd) in the same run if /usr/sbin/dovecot exists. Target (issue 11): under 100 ms.
Not a timed test. Run: .venv/bin/python bench/qresync.py [--big N] [--no-dovecot]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from imap import (  # bench/imap.py: the server set-ups and the client
    BIG_ACCOUNT,
    PASSWORD,
    Client,
    start_carteiro,
    start_dovecot,
)

CHANGED = 900
EXPUNGED = 100


async def prepare(port: int) -> tuple[Client, int, int, int]:
    """Client A logged in with QRESYNC, having seen the mailbox: (client, UIDVALIDITY,
    HIGHESTMODSEQ, highest UID)."""
    a = await Client.connect(port)
    await a.cmd(b"LOGIN %s %s" % (BIG_ACCOUNT.encode(), PASSWORD.encode()))
    await a.cmd(b"ENABLE QRESYNC")
    a.n += 1
    tag = b"c%d" % a.n
    a.writer.write(tag + b" SELECT INBOX (CONDSTORE)\r\n")
    uv = hm = 0
    while True:
        line = await a.reader.readline()
        if m := re.search(rb"\[UIDVALIDITY (\d+)\]", line):
            uv = int(m.group(1))
        if m := re.search(rb"\[HIGHESTMODSEQ (\d+)\]", line):
            hm = int(m.group(1))
        if line.startswith(tag + b" "):
            break
    a.n += 1
    tag = b"c%d" % a.n
    a.writer.write(tag + b" UID SEARCH ALL\r\n")
    top = 0
    while True:
        line = await a.reader.readline()
        if line.startswith(b"* SEARCH"):
            top = int(line.split()[-1])
        if line.startswith(tag + b" "):
            break
    return a, uv, hm, top


async def change(port: int, top: int) -> None:
    """Client B: 900 messages get a keyword and 100 are expunged, spread over the mailbox."""
    b = await Client.connect(port)
    await b.cmd(b"LOGIN %s %s" % (BIG_ACCOUNT.encode(), PASSWORD.encode()))
    await b.cmd(b"SELECT INBOX")
    step = max(1, top // (CHANGED + EXPUNGED))
    uids = list(range(1, top + 1, step))[: CHANGED + EXPUNGED]
    flagged, gone = uids[:CHANGED], uids[CHANGED:]
    for i in range(0, len(flagged), 100):
        s = ",".join(map(str, flagged[i : i + 100])).encode()
        ok, _ = await b.cmd(b"UID STORE " + s + b" +FLAGS.SILENT ($Changed)")
        assert ok
    for i in range(0, len(gone), 10):
        s = ",".join(map(str, gone[i : i + 10])).encode()
        ok, _ = await b.cmd(b"UID STORE " + s + b" +FLAGS.SILENT (\\Deleted)")
        assert ok
        ok, _ = await b.cmd(b"UID EXPUNGE " + s)
        assert ok
    await b.cmd(b"LOGOUT")
    b.close()


async def measure(port: int) -> dict[str, float]:
    a, uv, hm, top = await prepare(port)
    await change(port, top)
    out: dict[str, float] = {}
    qresync = b"SELECT INBOX (QRESYNC (%d %d 1:%d))" % (uv, hm, top)
    for name, cmds in (
        ("SELECT (no resync data)", [b"SELECT INBOX"]),
        ("QRESYNC SELECT", [qresync]),
        ("SELECT + UID FETCH 1:* (FLAGS)", [b"SELECT INBOX", b"UID FETCH 1:* (FLAGS)"]),
    ):
        best = float("inf")
        size = 0
        for _ in range(5):
            t = time.perf_counter()
            size = 0
            for cmd in cmds:
                ok, n = await a.bulk(cmd)
                assert ok, cmd
                size += n
            best = min(best, time.perf_counter() - t)
        out[name] = best * 1000
        out[name + " octets"] = size
    await a.cmd(b"LOGOUT")
    a.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--no-dovecot", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-qresync-"))
    tmp.chmod(0o755)  # Dovecot's unprivileged login processes must reach its base_dir
    print(
        f"QRESYNC benchmark in {tmp}: {args.big}-message INBOX, {CHANGED} flag changes and "
        f"{EXPUNGED} expunges"
    )
    srv = start_carteiro(tmp, args.big)
    dove = None if args.no_dovecot else start_dovecot(tmp, args.big)
    try:
        ours = asyncio.run(measure(srv.ports["imap"]))
        theirs = asyncio.run(measure(dove[1])) if dove else {}
    finally:
        srv.stop()
        if dove:
            dove[0].terminate()
            dove[0].wait(10)
    print("ms, best of 5 (octets of the answer):")
    for name in ("SELECT (no resync data)", "QRESYNC SELECT", "SELECT + UID FETCH 1:* (FLAGS)"):
        base = theirs.get(name)
        line = f"  {name:32} carteiro {ours[name]:8.1f} ({int(ours[name + ' octets']):>8})"
        if base is not None:
            ratio = base / ours[name]
            line += (
                f"   dovecot {base:8.1f} ({int(theirs[name + ' octets']):>8})"
                f"   dovecot/carteiro {ratio:5.2f}x"
            )
        print(line)
    full = ours["SELECT + UID FETCH 1:* (FLAGS)"] / ours["QRESYNC SELECT"]
    print(f"  carteiro: QRESYNC is {full:.1f}x faster than a full flag resync")


if __name__ == "__main__":
    main()

"""IMAP SEARCH on a big mailbox (issue 11 part 1.7): header and full-text keys, cold and warm.

A --big (100,000) message INBOX of varied messages (~1.5 KB: sender, subject and body words
differ per message) is filled once; then, against the same data dir and in the same run:
  1. this tree's `carteiro serve` (search index: header fields in SQL, FTS5 for BODY/TEXT);
  2. the baseline tree (--baseline DIR, e.g. `git archive main | tar -x -C DIR`): the evaluator
     that reads every message; its slow queries run once each (cold, then warm);
  3. Dovecot (Debian's, no FTS plugin) if installed, on a Maildir of the same messages.
"cold" is the first command after the server started with the page cache dropped (as root,
else only the process is cold); "warm" the best of 3 after it. Also: the time to index the
mailbox from scratch (what opening an older store costs once, in the background).
Targets: SUBJECT/FROM < 0.3 s warm and < 3 s cold; BODY/TEXT < 1 s warm.
--changes ROUNDS: SORT and THREAD as a webmail user meets them instead (first answer after a
start, warm, after another session appended one message, after it expunged one), the baseline
tree and this one alternating, then Dovecot; target: under 1 s on 100,000 messages.
--dir DIR keeps the filled data dir (and Dovecot's Maildir) for the next run.
Not a timed test. Run: .venv/bin/python bench/imap_search.py [--big N] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imap import DOVECOT_CONF, Client, tree_cpu  # type: ignore[import-not-found]

from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.testing.server import ServerProcess, free_port, wait_port

ACCOUNT = "big@example.test"
PASSWORD = "bench-password"
WORDS = [
    "meeting",
    "invoice",
    "report",
    "schedule",
    "project",
    "budget",
    "review",
    "draft",
    "contract",
    "update",
    "holiday",
    "travel",
    "café",
    "résumé",
    "naïve",
    "straße",
    "coffee",
    "lunch",
    "office",
    "printer",
    "network",
    "server",
    "backup",
    "release",
    "version",
    "customer",
    "support",
    "ticket",
    "payment",
    "delivery",
    "order",
]

QUERIES = [
    ("SUBJECT", b'UID SEARCH SUBJECT "number 99999"'),
    ("FROM", b'UID SEARCH FROM "sender417@"'),
    ("BODY", b'UID SEARCH BODY "order 99999"'),
    ("TEXT", b'UID SEARCH TEXT "reference 4242"'),
    ("BODY one word", b'UID SEARCH BODY "umbrel"'),
    ("SORT (DATE)", b"UID SORT (DATE) UTF-8 ALL"),
    ("SORT (SUBJECT)", b"UID SORT (SUBJECT) UTF-8 ALL"),
    ("THREAD REFERENCES", b"UID THREAD REFERENCES UTF-8 ALL"),
    ("THREAD ORDEREDSUBJECT", b"UID THREAD ORDEREDSUBJECT UTF-8 ALL"),
]
SLOW = {"SUBJECT", "BODY"}  # the baseline (every message read) runs only these


def message(i: int, rng: random.Random) -> bytes:
    s = i % 1000
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(14)]
    lines.insert(rng.randrange(len(lines)), f"order {i} reference {i % 5000}")
    if i % 97 == 0:
        lines.append("bring an umbrella")
    # a third of the messages answer an earlier one (References chain of up to 3)
    refs = ""
    subject = f"{rng.choice(WORDS)} number {i}"
    if i % 3 == 1 and i > 10:
        parent = rng.randrange(max(0, i - 50), i)
        chain = " ".join(f"<{p}.bench@example.org>" for p in (parent - 2, parent - 1, parent))
        refs = f"In-Reply-To: <{parent}.bench@example.org>\r\nReferences: {chain}\r\n"
        subject = f"Re: {rng.choice(WORDS)} number {parent}"
    head = (
        f"From: Sender {s} <sender{s}@example.org>\r\nTo: Big <big@example.test>\r\n"
        f"Subject: {subject}\r\n{refs}"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(1_600_000_000 + i * 60))}\r\n"
        f"Message-ID: <{i}.bench@example.org>\r\n\r\n"
    )
    return (head + "\r\n".join(lines) + "\r\n").encode()


async def fill(data: Path, n: int) -> None:
    store = SqliteMaildirStore(data, search_indexer=False)  # indexed below, timed apart
    try:
        acct = await store.account(ACCOUNT)
        rng = random.Random(1)
        sem = asyncio.Semaphore(256)

        async def one(i: int) -> None:
            async with sem:
                await acct.append("INBOX", message(i, rng), ("\\Seen",), 1_600_000_000 + i * 60)

        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await store.close()


async def build_index(data: Path) -> float:
    t = time.monotonic()
    store = SqliteMaildirStore(data)
    try:
        assert store.wait_search_indexed(3600)
    finally:
        await store.close()
    return time.monotonic() - t


def drop_caches() -> bool:
    if os.getuid() != 0:
        return False
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


async def measure(port: int, name: str, cmd: bytes, warm_runs: int) -> tuple[float, float]:
    """(cold s, warm s) of one command, the first on a new connection."""
    c = await Client.connect(port)
    await c.cmd(b"LOGIN %s %s" % (ACCOUNT.encode(), PASSWORD.encode()))
    await c.cmd(b"SELECT INBOX")
    t = time.perf_counter()
    ok, _ = await c.bulk(cmd)
    cold = time.perf_counter() - t
    assert ok, name
    warm = float("inf")
    for _ in range(warm_runs):
        t = time.perf_counter()
        ok, _ = await c.bulk(cmd)
        warm = min(warm, time.perf_counter() - t)
        assert ok, name
    print(f"    {name:22} cold {cold * 1000:9.1f} ms   warm {warm * 1000:9.1f} ms", flush=True)
    await c.cmd(b"LOGOUT")
    c.close()
    return cold, warm


def run_server(
    srv: ServerProcess, tree: Path | None, names: set[str] | None, runs: int
) -> dict[str, tuple[float, float]]:
    """Each query against a freshly started server (page cache dropped): cold, then warm.
    `tree`: run that source tree instead of this one (as cwd and PYTHONPATH: `python -m`
    puts the working directory first on the path)."""
    out: dict[str, tuple[float, float]] = {}
    here = os.getcwd()
    srv.env = {"PYTHONPATH": str(tree)} if tree else {}
    for name, cmd in QUERIES:
        if names is not None and name not in names:
            continue
        srv.stop()
        drop_caches()
        if tree:
            os.chdir(tree)
        try:
            srv.start(timeout=120)
        finally:
            os.chdir(here)
        try:
            out[name] = asyncio.run(measure(srv.ports["imap"], name, cmd, runs))
        finally:
            srv.stop()
    return out


CHANGE_QUERIES = [
    ("SORT (DATE)", b"UID SORT (DATE) UTF-8 ALL"),
    ("SORT (SUBJECT)", b"UID SORT (SUBJECT) UTF-8 ALL"),
    ("SORT (REVERSE DATE), seq", b"SORT (REVERSE DATE) UTF-8 ALL"),
    ("THREAD REFERENCES", b"UID THREAD REFERENCES UTF-8 ALL"),
    ("THREAD ORDEREDSUBJECT", b"UID THREAD ORDEREDSUBJECT UTF-8 ALL"),
]
CHANGES = 3  # new messages (then expunges) per query: the median is reported


def new_message(k: int) -> bytes:
    """A reply to an early message of the mailbox, as a new arrival."""
    return (
        f"From: Late Sender <late{k}@example.org>\r\nTo: Big <big@example.test>\r\n"
        f"Subject: Re: meeting number 5\r\nIn-Reply-To: <5.bench@example.org>\r\n"
        f"References: <5.bench@example.org>\r\nMessage-ID: <late{k}.{time.time_ns()}@example.org>\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n\r\nnew one\r\n"
    ).encode()


async def measure_changes(port: int, pid: int, name: str, cmd: bytes) -> dict[str, float]:
    """What a webmail user meets: the first answer after a start, the same again (warm), the
    answer after another session delivered one message (APPEND), and after it expunged one:
    seconds of wall clock, and of CPU of the server's processes (`pid`'s tree: what load from
    other work moves least), the median of CHANGES each. Each change is followed by a NOOP
    (the session learns of it, as a webmail's IDLE would) and a pause (the server's background
    work for it done). The mailbox ends as it began."""
    a = await Session.connect(port)
    b = await Session.connect(port)
    for c in (a, b):
        await c.cmd(b"LOGIN %s %s" % (ACCOUNT.encode(), PASSWORD.encode()))
    await a.cmd(b"SELECT INBOX")
    exists = await b.count(b"SELECT INBOX", b"EXISTS")

    async def timed() -> tuple[float, float]:
        c0, t = tree_cpu(pid), time.perf_counter()
        ok, _ = await a.bulk(cmd)
        assert ok, name
        return time.perf_counter() - t, tree_cpu(pid) - c0

    out: dict[str, float] = {}
    out["first"], out["first cpu"] = await timed()
    out["warm"] = min([(await timed())[0] for _ in range(3)])
    after_new, after_expunge = [], []
    for k in range(CHANGES):
        data = new_message(k)
        ok, _ = await b.cmd(b"APPEND INBOX {%d+}\r\n" % len(data) + data)
        assert ok
        await a.cmd(b"NOOP")
        await asyncio.sleep(1)
        after_new.append(await timed())
    # the oldest new one first: the mailbox then passes through states it was not in before
    # (an answer cached for a state would otherwise serve it)
    for _ in range(CHANGES):
        await b.cmd(b"NOOP")
        ok, _ = await b.cmd(b"STORE %d +FLAGS.SILENT (\\Deleted)" % (exists + 1))
        assert ok
        ok, _ = await b.cmd(b"EXPUNGE")
        assert ok
        await a.cmd(b"NOOP")
        await asyncio.sleep(1)
        after_expunge.append(await timed())
    for key, runs in (("new", after_new), ("expunge", after_expunge)):
        out[key] = statistics.median(w for w, _ in runs)
        out[f"{key} cpu"] = statistics.median(c for _, c in runs)
    print(
        f"    {name:26} first {out['first'] * 1000:6.0f} ms (cpu {out['first cpu'] * 1000:5.0f})"
        f"  warm {out['warm'] * 1000:6.1f} ms"
        f"  one new {out['new'] * 1000:6.0f} ms (cpu {out['new cpu'] * 1000:5.0f})"
        f"  one expunged {out['expunge'] * 1000:6.0f} ms (cpu {out['expunge cpu'] * 1000:5.0f})",
        flush=True,
    )
    for c in (a, b):
        await c.cmd(b"LOGOUT")
        c.close()
    return out


class Session(Client):
    async def count(self, text: bytes, what: bytes) -> int:
        """The number of an untagged `* n WHAT` answer to a command."""
        self.n += 1
        tag = b"c%d" % self.n
        self.writer.write(tag + b" " + text + b"\r\n")
        found = 0
        while True:
            line = await self.reader.readline()
            if line.startswith(tag + b" "):
                return found
            parts = line.split()
            if len(parts) == 3 and parts[2] == what:
                found = int(parts[1])


def run_changes(srv: ServerProcess, tree: Path | None) -> dict[str, dict[str, float]]:
    """CHANGE_QUERIES, each against a freshly started server (page cache as it is)."""
    out: dict[str, dict[str, float]] = {}
    here = os.getcwd()
    srv.env = {"PYTHONPATH": str(tree)} if tree else {}
    for name, cmd in CHANGE_QUERIES:
        srv.stop()
        if tree:
            os.chdir(tree)
        try:
            srv.start(timeout=120)
        finally:
            os.chdir(here)
        try:
            assert srv.proc is not None
            out[name] = asyncio.run(measure_changes(srv.ports["imap"], srv.proc.pid, name, cmd))
        finally:
            srv.stop()
    return out


def changes_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    print(
        "\n| query | server | first | warm | after one new message | after one expunge |"
        "\n|---|---|---|---|---|---|"
    )

    def cell(f: dict[str, float], key: str) -> str:
        return f"{f[key] * 1000:.0f} ms (CPU {f[key + ' cpu'] * 1000:.0f})"

    for name, _cmd in CHANGE_QUERIES:
        for who, r in results.items():
            if name in r:
                f = r[name]
                print(
                    f"| {name} | {who} | {cell(f, 'first')} | {f['warm'] * 1000:.1f} ms |"
                    f" {cell(f, 'new')} | {cell(f, 'expunge')} |"
                )


def dovecot(tmp: Path, n: int) -> tuple[subprocess.Popen[bytes], int] | None:
    exe = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not os.path.exists(exe):
        return None
    import pwd

    d = tmp / "dovecot"
    for sub in ("run", "state", "home", "mail"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "passwd").write_text(f"{ACCOUNT}:{{PLAIN}}{PASSWORD}\n")
    box = d / "mail" / ACCOUNT
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    filled = d / "filled"
    if not (filled.exists() and filled.read_text() == str(n)):
        for i in range(n):
            f = box / "cur" / f"{1_600_000_000 + i}.M{i}P1.bench:2,S"
            f.write_bytes(message(i, rng))
        filled.write_text(str(n))
    pw = pwd.getpwnam("nobody") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
    for sub in ("mail", "home"):
        for path in [d / sub, *(d / sub).rglob("*")]:
            os.chown(path, pw.pw_uid, pw.pw_gid)
    port = free_port()
    conf = d / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(tmp=d, port=port, uid=pw.pw_uid, gid=pw.pw_gid))
    drop_caches()
    proc = subprocess.Popen([exe, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL)
    wait_port("127.0.0.1", port, 20, proc)
    return proc, port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--baseline", type=Path, default=None, help="source tree of the baseline")
    ap.add_argument("--no-dovecot", action="store_true")
    ap.add_argument(
        "--dir", type=Path, default=None, help="data dir, kept and reused by the next run"
    )
    ap.add_argument("--only", default="", help="comma-separated query names to run (prefixes)")
    ap.add_argument(
        "--changes",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="instead: SORT/THREAD first, warm, after one new message, after one expunge;"
        " ROUNDS rounds alternating the baseline tree and this one, then Dovecot",
    )
    args = ap.parse_args()
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        QUERIES[:] = [q for q in QUERIES if any(q[0].startswith(w) for w in wanted)]
        CHANGE_QUERIES[:] = [q for q in CHANGE_QUERIES if any(q[0].startswith(w) for w in wanted)]
    tmp = Path(args.dir or tempfile.mkdtemp(prefix="bench-search-"))
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)
    print(
        f"IMAP SEARCH benchmark in {tmp}: {args.big} messages; page cache dropped: {os.getuid() == 0}"
    )
    srv = ServerProcess(
        tmp / "carteiro",
        users={ACCOUNT: PASSWORD},
        services=("imap",),
        extra_config="[imap]\nallow_plaintext_auth = true\n",
    )
    filled = tmp / "filled"
    if filled.exists() and filled.read_text() == str(args.big):
        reuse(srv)  # --dir of an earlier run: its mailbox (and index) as they are
        print("  reusing the filled data dir")
    else:
        srv.init()
        t = time.monotonic()
        asyncio.run(fill(srv.data, args.big))
        print(f"  filled in {time.monotonic() - t:.0f} s")
        if args.dir is not None:
            filled.write_text(str(args.big))
    if args.changes:
        changes(srv, tmp, args)
        return
    results: dict[str, dict[str, tuple[float, float]]] = {}
    if args.baseline is not None:
        print(f"  baseline ({args.baseline}), every message read:")
        results["baseline"] = run_server(srv, args.baseline.resolve(), SLOW, 1)
    secs = asyncio.run(build_index(srv.data))
    print(
        f"  search index of {args.big} messages built in {secs:.1f} s ({args.big / secs:.0f} msg/s)"
    )
    print("  carteiro (this tree):")
    results["carteiro"] = run_server(srv, None, None, 3)
    if not args.no_dovecot:
        dove = dovecot(tmp, args.big)
        if dove is not None:
            print("  dovecot (one server: its first command of each kind builds its caches):")
            try:
                results["dovecot"] = {
                    name: asyncio.run(measure(dove[1], name, cmd, 3)) for name, cmd in QUERIES
                }
            finally:
                dove[0].terminate()
                dove[0].wait(20)
    print(
        "\n| query | carteiro cold | carteiro warm | "
        + " | ".join(f"{k} cold | {k} warm" for k in results if k != "carteiro")
        + " |"
    )
    for name, _cmd in QUERIES:
        ours = results["carteiro"][name]
        cells = [f"{ours[0] * 1000:.1f} ms", f"{ours[1] * 1000:.1f} ms"]
        for k, r in results.items():
            if k == "carteiro":
                continue
            if name in r:
                cells += [
                    f"{r[name][0] * 1000:.1f} ms ({r[name][0] / ours[0]:.0f}x)",
                    f"{r[name][1] * 1000:.1f} ms ({r[name][1] / ours[1]:.0f}x)",
                ]
            else:
                cells += ["-", "-"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.dir is None:
        shutil.rmtree(tmp, ignore_errors=True)


def changes(srv: ServerProcess, tmp: Path, args: argparse.Namespace) -> None:
    asyncio.run(build_index(srv.data))  # (indexed already when the data dir is reused)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for r in range(args.changes):
        trees: list[tuple[str, Path | None]] = [("carteiro", None)]
        if args.baseline is not None:
            trees.insert(0, ("baseline", args.baseline.resolve()))
        for who, tree in trees:
            print(f"  round {r + 1}, {who}:", flush=True)
            got = run_changes(srv, tree)
            results[f"{who} {r + 1}"] = got
    if not args.no_dovecot:
        dove = dovecot(tmp, args.big)
        if dove is not None:
            print("  dovecot (one server, in the same order):")
            try:
                results["dovecot"] = {
                    name: asyncio.run(measure_changes(dove[1], dove[0].pid, name, cmd))
                    for name, cmd in CHANGE_QUERIES
                }
            finally:
                dove[0].terminate()
                dove[0].wait(20)
    changes_table(results)
    if args.dir is None:
        shutil.rmtree(tmp, ignore_errors=True)


def reuse(srv: ServerProcess) -> None:
    """Take an initialised data dir as it is: its ports are chosen again (an old one may be
    taken by now)."""
    text = (srv.data / "carteiro.toml").read_text()
    for svc in srv.services:
        for line in text.splitlines():
            if line.startswith(f'{svc} = "{srv.host}:'):
                srv.ports[svc] = int(line.rsplit(":", 1)[1].rstrip('"'))
    srv._initialised = True
    srv._new_ports()


if __name__ == "__main__":
    main()

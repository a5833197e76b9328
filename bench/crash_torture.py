"""kill -9 torture of a real `carteiro serve`: 3 IMAP clients (APPEND, MOVE, RENAME, EXPUNGE of
messages marked deletable), 2 SMTP senders and `carteiro deliver` in a loop, the server killed with
SIGKILL after 2-6 s, N times. After each kill: `store check` (which first lets recovery finish
what the crash left), a restart, and the invariant: every acknowledged message never asked to be
deleted is in the account exactly once; `store check` is clean; nothing in lost+found.

Not a timed test (it prints what it found). Run: .venv/bin/python bench/crash_torture.py DIR [N]
"""

from __future__ import annotations

import imaplib
import random
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.testing.server import ServerProcess, carteiro_cmd

ACCT, PW = "alice@example.test", "alice-password-1"
FOLDERS = ["A", "B", "C"]
lock = threading.Lock()
keep: set[str] = set()  # acknowledged, never deleted: must exist exactly once
deletable: set[str] = set()  # acknowledged but maybe deleted later
stop = threading.Event()
errors: list[str] = []


def msgid(tag: str) -> str:
    return f"<{tag}@torture>"


def body(tag: str, big: bool) -> bytes:
    pad = ("z" * 76 + "\r\n") * (1400 if big else 2)
    return (
        f"From: t@example.org\r\nTo: {ACCT}\r\nSubject: {tag}\r\nMessage-ID: {msgid(tag)}\r\n\r\n"
        f"{pad}"
    ).encode()


def imap_worker(s: ServerProcess, k: int, cycle: int) -> None:
    rnd = random.Random(k * 1000 + cycle)
    i = 0
    while not stop.is_set():
        try:
            c = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=10)
            c.login(ACCT, PW)
            while not stop.is_set():
                i += 1
                op = rnd.random()
                tag = f"i{k}-c{cycle}-{i}"
                if op < 0.5:
                    folder = rnd.choice([*FOLDERS, "INBOX"])
                    delet = rnd.random() < 0.2
                    typ, _ = c.append(folder, None, None, body(tag, rnd.random() < 0.1))
                    if typ == "OK":
                        with lock:
                            (deletable if delet else keep).add(msgid(tag))
                    elif typ != "NO":
                        errors.append(f"append {typ}")
                elif op < 0.75:
                    src, dst = rnd.sample([*FOLDERS, "INBOX"], 2)
                    typ, _ = c.select(src)
                    if typ == "OK":
                        c.uid("MOVE", "1:*" if rnd.random() < 0.3 else "1:3", dst)
                elif op < 0.85:
                    a = rnd.choice(FOLDERS)
                    b = a + "x" if not a.endswith("x") else a[:-1]
                    c.rename(a, b) if rnd.random() < 0.5 else c.rename(b, a)
                    c.create(a)
                else:
                    # delete only deletable messages: search by header
                    folder = rnd.choice([*FOLDERS, "INBOX"])
                    typ, _ = c.select(folder)
                    if typ != "OK":
                        continue
                    with lock:
                        cands = list(deletable)[:5]
                    for mid in cands:
                        typ, data = c.uid("SEARCH", "HEADER", "Message-ID", mid)
                        if typ == "OK" and data[0]:
                            c.uid(
                                "STORE", data[0].decode().replace(" ", ","), "+FLAGS", "(\\Deleted)"
                            )
                    c.expunge()
        except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error, EOFError):
            time.sleep(0.05)


def smtp_worker(s: ServerProcess, k: int, cycle: int) -> None:
    i = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=10) as c:
                while not stop.is_set():
                    i += 1
                    tag = f"s{k}-c{cycle}-{i}"
                    c.sendmail("t@example.org", [ACCT], body(tag, i % 9 == 4))
                    with lock:
                        keep.add(msgid(tag))
        except (OSError, smtplib.SMTPException):
            time.sleep(0.05)


def deliver_worker(s: ServerProcess, cycle: int) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        tag = f"d-c{cycle}-{i}"
        r = subprocess.run(
            carteiro_cmd("deliver", "--data", str(s.data), ACCT),
            input=body(tag, False),
            capture_output=True,
        )
        if r.returncode == 0:
            with lock:
                keep.add(msgid(tag))


def verify(s: ServerProcess) -> None:
    c = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=60)
    c.login(ACCT, PW)
    typ, boxes = c.list()
    seen: dict[str, int] = {}
    for line in boxes:
        name = line.decode().rsplit(' "/" ', 1)[1].strip('"')
        typ, cnt = c.select(f'"{name}"')
        if typ != "OK" or cnt[0] == b"0":
            continue
        typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        if typ != "OK":
            errors.append(f"fetch {name}: {data}")
            continue
        for item in data:
            if isinstance(item, tuple):
                mid = item[1].decode().split(":", 1)[1].strip()
                seen[mid] = seen.get(mid, 0) + 1
    c.logout()
    with lock:
        missing = [m for m in keep if seen.get(m, 0) == 0]
        dup = [m for m in keep | deletable if seen.get(m, 0) > 1]
    print(f"  verify: {len(keep)} kept, {len(seen)} seen, missing {len(missing)}, dup {len(dup)}")
    if missing:
        errors.append(f"missing: {sorted(missing)[:10]}")
    if dup:
        print(f"  duplicates (SMTP resend is legal only without a 250): {sorted(dup)[:10]}")


def main() -> None:
    tmp = Path(sys.argv[1])
    cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    s = ServerProcess(
        tmp,
        users={ACCT: PW},
        services=("smtp", "imap"),
        extra_config="[imap]\nallow_plaintext_auth = true\n",
    )
    s.start()
    c = imaplib.IMAP4("127.0.0.1", s.ports["imap"])
    c.login(ACCT, PW)
    for f in FOLDERS:
        c.create(f)
    c.logout()
    for cycle in range(cycles):
        stop.clear()
        ts = [threading.Thread(target=imap_worker, args=(s, k, cycle)) for k in range(3)]
        ts += [threading.Thread(target=smtp_worker, args=(s, k, cycle)) for k in range(2)]
        ts += [threading.Thread(target=deliver_worker, args=(s, cycle))]
        for t in ts:
            t.start()
        time.sleep(random.uniform(2, 6))
        s.kill()
        stop.set()
        for t in ts:
            t.join()
        r = subprocess.run(
            carteiro_cmd("store", "check", "--data", str(s.data)), capture_output=True, text=True
        )
        print(
            f"cycle {cycle}: store check (server down, after kill) rc={r.returncode} {r.stdout.strip()[-300:]}"
        )
        Path(f"{tmp}/check-{cycle}.txt").write_text(r.stdout + r.stderr)
        s.start()
        verify(s)
        r = subprocess.run(
            carteiro_cmd("store", "check", "--data", str(s.data)), capture_output=True, text=True
        )
        print(
            f"  store check after restart rc={r.returncode} {r.stdout.strip()[-300:]} {r.stderr.strip()[-300:]}"
        )
        if r.returncode != 0:
            errors.append(f"store check after restart: {r.stdout[-500:]}")
        lf = list((s.data).rglob("lost+found/*"))
        if lf:
            errors.append(f"lost+found: {lf[:5]}")
    s.stop()
    print("ERRORS:" if errors else "OK", *errors[:20], sep="\n")


if __name__ == "__main__":
    main()

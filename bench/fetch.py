"""Fetching benchmark: carteiro's [[fetch]] against fetchmail, both taking N messages from a
private Dovecot (POP3, keep) into the same kind of carteiro server.

carteiro: the server polls Dovecot itself and files each message through local delivery.
fetchmail (baseline, Debian's): polls Dovecot and hands each message to carteiro over SMTP.
Each run starts from a fresh carteiro data dir and a fresh Dovecot mailbox; the time is from
the moment the N messages are in Dovecot (carteiro already running and polling every second;
fetchmail started then) to the moment all N are in the carteiro store.
Prints messages/s for both and the ratio carteiro / fetchmail. Not a timed test.
Run: .venv/bin/python bench/fetch.py [--messages 500]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.testing import dovecot
from carteiro.testing.server import ServerProcess

ALICE = "alice@example.test"


def count(s: ServerProcess) -> int:
    async def n() -> int:
        store = SqliteMaildirStore(s.data)
        try:
            acct = await store.account(ALICE)
            box = await acct.get_mailbox("INBOX")
            return len(await acct.list_messages(box.id))
        finally:
            await store.close()

    return asyncio.run(n())


def wait_count(s: ServerProcess, n: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while count(s) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {count(s)} of {n} after {timeout}s")
        time.sleep(0.05)


def fill(d: dovecot.DovecotInstance, n: int) -> None:
    body = b"".join(b"line %d of a typical message body, some text\r\n" % i for i in range(60))
    for i in range(n):
        d.deliver(
            "alice.isp",
            b"Return-Path: <s@isp.test>\r\nFrom: s@isp.test\r\nTo: alice.isp@isp.test\r\n"
            b"Message-ID: <%d.bench@isp.test>\r\nSubject: message %d\r\n\r\n" % (i, i) + body,
        )


def polled(s: ServerProcess) -> bool:
    from carteiro.fetch.state import FetchState

    path = s.data / "fetch.sqlite"
    if not path.exists():
        return False
    st = FetchState(path)
    try:
        return any(r.last_poll for r in st.statuses())
    finally:
        st.close()


def run_carteiro(tmp: Path, n: int) -> float:
    with dovecot.DovecotInstance(tmp / "dc-c", {"alice.isp": "secret"}) as d:
        s = ServerProcess(tmp / "c", users={ALICE: "pw"}, services=("smtp",))
        s.extra_config = (
            f'[[fetch]]\naccount = "{ALICE}"\nserver = "127.0.0.1:{d.pop3_port}"\n'
            'protocol = "pop3"\ntls = "none"\nuser = "alice.isp"\n'
            'password_file = "isp-pw"\nkeep = true\ninterval = "1s"\n'
        )
        s.init()
        (s.data / "isp-pw").write_text("secret\n")
        with s:
            while not polled(s):  # the server is up and polling an empty mailbox
                time.sleep(0.05)
            fill(d, n)
            t0 = time.monotonic()  # includes up to one interval (1 s) before the next poll
            wait_count(s, n)
            return time.monotonic() - t0


def run_fetchmail(tmp: Path, n: int) -> float:
    exe = shutil.which("fetchmail")
    assert exe is not None
    with dovecot.DovecotInstance(tmp / "dc-f", {"alice.isp": "secret"}) as d:
        fill(d, n)
        s = ServerProcess(tmp / "f", users={ALICE: "pw"}, services=("smtp",))
        with s:
            home = tmp / "fmhome"
            home.mkdir(exist_ok=True)
            rc = home / ".fetchmailrc"
            rc.write_text(
                f"poll 127.0.0.1 protocol pop3 port {d.pop3_port}\n"
                f'  user "alice.isp" password "secret" is "{ALICE}" keep sslproto ""\n'
                f"  smtphost 127.0.0.1/{s.ports['smtp']} smtpname {ALICE}\n"
            )
            rc.chmod(0o600)
            t0 = time.monotonic()
            r = subprocess.run(
                [exe, "-f", str(rc), "--nosyslog", "-v"],
                env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                timeout=600,
            )
            if r.returncode != 0:
                sys.exit(f"fetchmail failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr}")
            wait_count(s, n)
            return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=500)
    args = ap.parse_args()
    if dovecot.available() is not None or shutil.which("fetchmail") is None:
        sys.exit("needs dovecot-pop3d and fetchmail (make apt-test)")
    n = args.messages
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        c = run_carteiro(tmp, n)
        f = run_fetchmail(tmp, n)
    print(f"fetch {n} messages over POP3 from Dovecot into carteiro")
    print(f"  carteiro [[fetch]]        {c:7.2f} s  {n / c:8.1f} msg/s")
    print(f"  fetchmail -> SMTP (base)  {f:7.2f} s  {n / f:8.1f} msg/s")
    print(f"  ratio carteiro/fetchmail  {f / c:7.2f}x")


if __name__ == "__main__":
    main()

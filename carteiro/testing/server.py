"""Run a real `carteiro serve` in a temporary data dir on free loopback ports, for end-to-end tests.

    with ServerProcess(tmp_path, users={"alice@example.test": "pw"}) as srv:
        smtplib.SMTP("127.0.0.1", srv.ports["smtp"])

Waits on conditions (ports accepting) with deadlines, never fixed sleeps. Always stops its process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from carteiro.ops.serverlock import read_state

ALL_SERVICES = (
    "smtp",
    "submission",
    "submissions",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "web",
    "metrics",
    "lmtp",
    "odmr",
    "sieve",
)
# What a ServerProcess enables by default (the webmail has its own tests).
SERVICES = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")


def closed_to_others(*paths: str | Path) -> Path | None:
    """The first directory above any of `paths` that another user cannot enter (no o+x), or
    None. Tests that run this checkout's code as another user skip on it: a checkout made by
    `mktemp -d` is 0700, as CI's fresh clones can be."""
    for path in paths:
        for parent in Path(path).resolve().parents:
            if not os.stat(parent).st_mode & 0o001:
                return parent
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(
    host: str, port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"server exited with status {proc.returncode} before {host}:{port} opened"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


def carteiro_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "carteiro", *args]


def run_cli(
    data: Path, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `carteiro ARGS --data DATA` (the --data flag is appended after the subcommand words)."""
    return subprocess.run(
        carteiro_cmd(*args, "--data", str(data)),
        input=stdin,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def index_count(data: Path, sql: str) -> int:
    """One count from a data dir's index (`SELECT count(*) ...`), on a connection of its own:
    what benchmarks and end-to-end tests check of a server's store from outside."""
    conn = sqlite3.connect(data / "index.sqlite")
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


class ServerProcess:
    def __init__(
        self,
        tmp: Path,
        domains: Iterable[str] = ("example.test",),
        hostname: str = "mail.example.test",
        users: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        services: Iterable[str] = SERVICES,
        extra_config: str = "",
        trace: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data = Path(tmp) / "data"
        self.domains = list(domains)
        self.hostname = hostname
        self.users = dict(users or {"alice@example.test": "alice-password"})
        self.host = host
        self.services = set(services)
        self.extra_config = extra_config
        self.trace = list(trace)
        self.env = dict(env or {})
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tmp) / "server.log"
        self._initialised = False

    def init(self) -> None:
        if self._initialised:
            return
        args = ["init"]
        for d in self.domains:
            args += ["--domain", d]
        args += ["--hostname", self.hostname]
        run_cli(self.data, *args)
        cfg = self.data / "carteiro.toml"
        text = cfg.read_text()
        start = text.index("[listen]")
        end = text.index("[tls]")
        listen = ["[listen]"]
        for svc in ALL_SERVICES:
            if svc in self.services:
                self.ports[svc] = free_port(self.host)
                listen.append(f'{svc} = "{self.host}:{self.ports[svc]}"')
            else:
                listen.append(f'{svc} = ""')
        text = (
            text[:start] + "\n".join(listen) + "\n\n" + text[end:] + "\n" + self.extra_config + "\n"
        )
        cfg.write_text(text)
        for user, pw in self.users.items():
            run_cli(self.data, "user", "add", user, "--password-stdin", stdin=pw + "\n")
        self._initialised = True

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.init()
        for attempt in range(3):
            mark = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start(timeout)
            except RuntimeError:
                # free_port() cannot reserve a port: a parallel test may take it between the
                # choice and the server's bind. Only that case is retried, with fresh ports.
                with self.log_path.open("rb") as f:
                    f.seek(mark)
                    said = f.read().decode(errors="replace")
                if attempt == 2 or "is already in use" not in said:
                    raise
                self._new_ports()
        raise AssertionError("unreachable")

    def _new_ports(self) -> None:
        cfg = self.data / "carteiro.toml"
        text = cfg.read_text()
        for svc, old in list(self.ports.items()):
            self.ports[svc] = free_port(self.host)
            text = text.replace(
                f'{svc} = "{self.host}:{old}"', f'{svc} = "{self.host}:{self.ports[svc]}"'
            )
        cfg.write_text(text)

    def _start(self, timeout: float) -> ServerProcess:
        cmd = carteiro_cmd("serve", "--data", str(self.data))
        for t in self.trace:
            cmd += ["--trace", t]
        log = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        for _svc, port in self.ports.items():
            wait_port(self.host, port, timeout, self.proc)
        # The ports accept from the moment they are bound, before the server has finished
        # starting (signal handlers, the web listener): wait for its state file, written once
        # it is ready (whatever its log level).
        while (read_state(self.data) or {}).get("pid") != self.proc.pid:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server was not ready within {timeout}s")
            time.sleep(0.02)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stored(self, account: str, mailbox: str = "INBOX") -> list[bytes]:
        """The messages of `account`'s `mailbox` in UID order, read through the store (which
        several processes may open at once), for tests to check what was delivered."""
        from carteiro.store.sqlite_maildir import SqliteMaildirStore

        async def read() -> list[bytes]:
            store = SqliteMaildirStore(self.data)
            try:
                acct = await store.account(account)
                box = await acct.get_mailbox(mailbox)
                return [
                    await acct.read_message(box.id, m.uid) for m in await acct.list_messages(box.id)
                ]
            finally:
                await store.close()

        return asyncio.run(read())

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait; SIGKILL if it does not exit in time. Returns the exit status."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def kill(self) -> None:
        """kill -9, for crash tests."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def cli(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(self.data, *args, stdin=stdin, check=check)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""The login throttle seen through the IMAP, POP3, SMTP and ManageSieve sessions (issue 10 point 6;
issue 13: failed-AUTH lockout on every listener).

Real listeners on loopback, a slow fake password check (Argon2id costs ~150 ms), and many parallel
connections: what matters is how many guesses actually reach the password check, how many run at
once, and what a client is told when it is held back.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carteiro.config import Config
from carteiro.directory.accounts import Directory
from carteiro.directory.throttle import AuthThrottle
from carteiro.net.listener import Listener
from carteiro.servers import imapd, managesieved, pop3d, smtpd
from carteiro.servers.context import ServerContext
from carteiro.store.memory import MemoryMailStore

ALICE, ALICE_PW = "alice@example.test", "alice-right"
BOB, BOB_PW = "bob@example.test", "bob-right"
VERIFY_TIME = 0.15  # what one Argon2id check costs on this machine
TIMEOUT = 20.0


class SlowVerifier:
    """Stands in for Directory.verify: slow like Argon2id, and counts what it is asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.running = 0
        self.max_running = 0
        self.running_for: dict[str, int] = {}
        self.max_running_for: dict[str, int] = {}

    async def __call__(self, user: str, password: str) -> str | None:
        self.calls.append((user, password))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        n = self.running_for[user] = self.running_for.get(user, 0) + 1
        self.max_running_for[user] = max(self.max_running_for.get(user, 0), n)
        try:
            await asyncio.sleep(VERIFY_TIME)
        finally:
            self.running -= 1
            self.running_for[user] -= 1
        return user if {ALICE: ALICE_PW, BOB: BOB_PW}.get(user) == password else None


@dataclass
class Env:
    protocol: str
    ctx: ServerContext
    verifier: SlowVerifier
    port: int
    listeners: list[Listener] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def login(self, user: str, password: str, source: str = "127.0.0.1") -> str:
        """One connection, one login attempt; the server's answer to it (one line)."""
        r, w = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))
        self.writers.append(w)

        async def line() -> str:
            raw = await asyncio.wait_for(r.readline(), TIMEOUT)
            return raw.decode("utf-8", "replace").rstrip("\r\n")

        async def cmd(text: str) -> str:
            w.write(text.encode() + b"\r\n")
            await w.drain()
            return await line()

        if self.protocol == "sieve":
            # RFC 5804 1.7: the greeting is the capability list, ending in OK
            while not (await line()).startswith("OK"):
                pass
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            return await cmd(f'AUTHENTICATE "PLAIN" "{token}"')
        await line()  # greeting
        if self.protocol == "imap":
            return await cmd(f'a LOGIN {user} "{password}"')
        if self.protocol == "pop3":
            assert (await cmd(f"USER {user}")).startswith("+OK")
            return await cmd(f"PASS {password}")
        w.write(b"EHLO client.example\r\n")
        while not (await line()).startswith("250 "):
            pass
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return await cmd(f"AUTH PLAIN {token}")


def failed(protocol: str, reply: str) -> bool:
    """The answer to wrong credentials."""
    return {
        "imap": reply.startswith("a NO [AUTHENTICATIONFAILED]"),
        "pop3": reply.startswith("-ERR [AUTH]"),
        "smtp": reply.startswith("535 5.7.8"),
        "sieve": reply.startswith('NO "Authentication failed'),
    }[protocol]


def temporary(protocol: str, reply: str) -> bool:
    """The temporary-failure answer of each protocol, with a reason after the code."""
    prefix = {
        "imap": "a NO [UNAVAILABLE] ",
        "pop3": "-ERR [SYS/TEMP] ",
        "smtp": "454 4.7.0 ",
        "sieve": "NO (TRYLATER) ",
    }
    return reply.startswith(prefix[protocol]) and len(reply) > len(prefix[protocol]) + 5


def succeeded(protocol: str, reply: str) -> bool:
    ok = {"imap": "a OK", "pop3": "+OK", "smtp": "235 2.7.0", "sieve": "OK"}
    return reply.startswith(ok[protocol])


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    """Opening one costs an Argon2id hash; its `verify` is replaced per test anyway."""
    d = Directory(tmp_path_factory.mktemp("dir") / "d.sqlite", static_domains=["example.test"])
    yield d
    d.close()


@pytest.fixture
async def make_env(tmp_path: Path, directory: Directory) -> AsyncIterator[MakeEnv]:
    envs: list[Env] = []

    async def make(protocol: str, throttle: AuthThrottle) -> Env:
        cfg = Config(hostname="mail.example.test", domains=["example.test"])
        cfg.data_dir = tmp_path / f"data{len(envs)}"
        cfg.data_dir.mkdir()
        for name in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"):
            setattr(cfg.listen, name, "")
        cfg.listen.submission = cfg.listen.imap = cfg.listen.pop3 = "127.0.0.1:0"
        cfg.listen.sieve = "127.0.0.1:0"
        cfg.imap.allow_plaintext_auth = cfg.pop3.allow_plaintext_auth = True
        cfg.sieve.allow_plaintext_auth = True
        cfg.smtp.require_tls_for_auth = False
        for section in (cfg.imap, cfg.pop3, cfg.smtp, cfg.sieve):
            section.max_connections_per_ip = 200
        store = MemoryMailStore()
        for who in (ALICE, BOB):
            await store.create_account(who)
        verifier = SlowVerifier()
        directory.verify = verifier  # type: ignore[method-assign]
        ctx = ServerContext(
            config=cfg,
            store=store,
            directory=directory,
            spool=None,  # type: ignore[arg-type]  # nothing is sent
            throttle=throttle,
            tls=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH),  # no TLS listener here
        )
        factory = {
            "imap": imapd.listeners,
            "pop3": pop3d.listeners,
            "smtp": smtpd.listeners,
            "sieve": managesieved.listeners,
        }
        listeners = factory[protocol](ctx)
        for lst in listeners:
            await lst.start()
        bound = listeners[0].bound
        assert bound is not None
        env = Env(protocol, ctx, verifier, bound[1], listeners)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.ctx.shutdown.set()
        for w in env.writers:
            w.close()
        for lst in env.listeners:
            await lst.stop(grace=1)


PROTOCOLS = ["imap", "pop3", "smtp", "sieve"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_parallel_guesses_from_one_ip_verify_at_most_max_failures(
    make_env: MakeEnv, protocol: str
) -> None:
    """40 parallel guesses from one address: no more than max_failures reach the password check
    (each counts before it is verified), a few at a time, and the rest are told to come back."""
    env = await make_env(protocol, AuthThrottle(failure_delay=0.0, max_failures=5))
    replies = await asyncio.gather(*(env.login(ALICE, f"guess{i}") for i in range(40)))
    assert len(env.verifier.calls) <= 5, f"{len(env.verifier.calls)} guesses verified"
    assert env.verifier.max_running <= 4
    assert all(failed(protocol, r) or temporary(protocol, r) for r in replies), replies
    assert sum(temporary(protocol, r) for r in replies) >= 35


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_login_to_own_account_keeps_failures_against_others(
    make_env: MakeEnv, protocol: str
) -> None:
    """An attacker who logs into an account of their own does not win more guesses at another."""
    env = await make_env(protocol, AuthThrottle(failure_delay=0.0, max_failures=5))
    for i in range(4):
        assert failed(protocol, await env.login(ALICE, f"guess{i}"))
    assert succeeded(protocol, await env.login(BOB, BOB_PW))
    assert failed(protocol, await env.login(ALICE, "guess4"))  # the 5th failure from this address
    assert temporary(protocol, await env.login(ALICE, "guess5"))
    assert temporary(protocol, await env.login(ALICE, ALICE_PW))
    assert len(env.verifier.calls) == 6


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_guesses_at_one_account_from_many_ips_are_capped(
    make_env: MakeEnv, protocol: str
) -> None:
    """Guesses at one account from 10 addresses (2 each, under every per-address limit): the
    account's own cap bounds how many are verified at once, and later ones are slowed down."""
    throttle = AuthThrottle(failure_delay=0.0, max_failures=5)
    throttle.account_delay = 0.02  # per failure beyond the free ones, doubling
    throttle.account_max_delay = 0.1
    env = await make_env(protocol, throttle)
    sources = [f"127.0.0.{n}" for n in range(2, 12)]
    replies = await asyncio.gather(
        *(env.login(ALICE, f"guess{n}", src) for src in sources for n in range(2))
    )
    assert env.verifier.max_running_for[ALICE] <= 2
    assert all(failed(protocol, r) or temporary(protocol, r) for r in replies), replies
    # No hard lock-out for the account: the right password still gets in, from a fresh address.
    assert succeeded(protocol, await env.login(ALICE, ALICE_PW, "127.0.0.20"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_unknown_user_counts_like_a_wrong_password(make_env: MakeEnv, protocol: str) -> None:
    env = await make_env(protocol, AuthThrottle(failure_delay=0.0, max_failures=3))
    for i in range(3):
        assert failed(protocol, await env.login(f"nobody{i}@example.test", "x"))
    assert temporary(protocol, await env.login(ALICE, ALICE_PW))

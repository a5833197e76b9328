"""The fetcher: one task per `[[fetch]]` entry, polling its remote mailbox and delivering each new
message once through the local delivery path (aliases, filters, quota), as fetchmail does.

Order per message: read it, deliver it (with a delivery id derived from the entry and the remote
uid, so a redelivery after a crash is a no-op in the store), mark it seen (durable), and only then
delete it on the server when `keep` is false. Errors back off (doubling up to an hour) and show in
`carteiro fetch status`. Blocking protocol steps run in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from carteiro.fetch.remote import IMAPMailbox, POP3Mailbox, Remote
from carteiro.fetch.state import FetchState

log = logging.getLogger("carteiro.fetch")

MAX_BACKOFF = 3600.0
IDLE_MAX = 29 * 60.0  # RFC 2177 3: re-issue IDLE at least every 29 minutes
STATE_FILE = "fetch.sqlite"

Deliver = Callable[[str, bytes, str, str], Awaitable[None]]
"""(account, message, envelope sender, delivery id): raises when not delivered."""


@dataclass(frozen=True)
class FetchEntry:
    account: str
    server: str
    protocol: str  # "pop3" | "imap"
    tls: str
    user: str
    password_file: Path
    folders: tuple[str, ...] = ("INBOX",)
    keep: bool = True
    interval: float = 300.0
    verify: bool = True
    cafile: str | None = None

    def key(self, folder: str) -> str:
        f = folder if self.protocol == "imap" else ""
        return f"{self.account}|{self.protocol}|{self.server}|{self.user}|{f}"


def _sender(message: bytes) -> str:
    """The Return-Path the remote server recorded, as the envelope sender ("" when none)."""
    head = message[: 64 * 1024].split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line[:12].lower() == b"return-path:":
            value = line[12:].strip().decode("utf-8", "replace")
            return value.strip("<>").strip()
    return ""


@dataclass
class _Run:
    entry: FetchEntry
    failures: int = 0
    task: asyncio.Task[None] | None = None
    mailbox: POP3Mailbox | IMAPMailbox | None = field(default=None, repr=False)


class Fetcher:
    def __init__(
        self,
        entries: list[FetchEntry],
        data_dir: Path,
        deliver: Deliver,
        hostname: str,
        rng: random.Random | None = None,
    ) -> None:
        self.entries = entries
        self.state = FetchState(Path(data_dir) / STATE_FILE)
        self.deliver = deliver
        self.hostname = hostname
        self.rng = rng or random.Random()
        self._runs: list[_Run] = []
        self._offers_idle: dict[FetchEntry, bool] = {}

    async def start(self) -> None:
        for e in self.entries:
            for folder in e.folders if e.protocol == "imap" else ("",):
                self.state.register(e.key(folder), e.account, e.server, e.protocol)
            run = _Run(e)
            run.task = asyncio.get_running_loop().create_task(
                self._loop(run), name=f"fetch {e.account} from {e.server}"
            )
            self._runs.append(run)
        if self.entries:
            log.info("fetch: %d remote mailbox(es) to poll", len(self.entries))

    async def stop(self) -> None:
        for run in self._runs:
            if isinstance(run.mailbox, IMAPMailbox):
                run.mailbox.interrupt()  # a thread blocked in IDLE returns now
            if run.task is not None:
                run.task.cancel()
        for run in self._runs:
            if run.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await run.task
        self._runs.clear()
        await asyncio.to_thread(self.state.close)

    async def _loop(self, run: _Run) -> None:
        e = run.entry
        while True:
            error = ""
            try:
                n = await self.poll(e)
                run.failures = 0
                if n:
                    log.info("fetch: %d message(s) for %s from %s", n, e.account, e.server)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network, TLS, login, delivery: all back off
                run.failures += 1
                error = f"{type(exc).__name__}: {exc}"
                log.warning("fetch: %s from %s: %s", e.account, e.server, error)
            if run.failures:
                wait = min(e.interval * 2 ** (run.failures - 1), max(MAX_BACKOFF, e.interval))
                wait *= 0.9 + 0.2 * self.rng.random()  # spread the retries of many entries
            else:
                wait = e.interval
            idle = not run.failures and self._can_idle(e)
            await self._record(e, error, run.failures, time.time() + wait, idle)
            if not idle:
                await asyncio.sleep(wait)
                continue
            try:
                # RFC 2177: wait in IDLE for new mail (at most the interval), then poll at once
                await self._idle(run, min(e.interval, IDLE_MAX))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("fetch: %s: IDLE failed: %s; polling again in %gs", e.account, exc, wait)
                await asyncio.sleep(wait)

    async def _record(
        self, e: FetchEntry, error: str, failures: int, next_poll: float, idle: bool
    ) -> None:
        for folder in e.folders if e.protocol == "imap" else ("",):
            await asyncio.to_thread(
                self.state.polled,
                e.key(folder),
                ok=not error,
                error=error,
                failures=failures,
                next_poll=next_poll,
                idle=idle,
            )

    def _can_idle(self, e: FetchEntry) -> bool:
        # IDLE watches one selected folder (RFC 2177); with several, polling sees them all
        return e.protocol == "imap" and len(e.folders) == 1 and self._offers_idle.get(e, False)

    async def _idle(self, run: _Run, timeout: float) -> None:
        e = run.entry
        password = (await asyncio.to_thread(e.password_file.read_text)).strip("\r\n")
        remote = Remote(e.server, e.protocol, e.tls, e.user, password, e.verify, e.cafile)
        box = await asyncio.to_thread(IMAPMailbox, remote)
        run.mailbox = box
        try:
            prefix = await asyncio.to_thread(box.select, e.folders[0], True) + ":"
            # mail that came between the poll and this SELECT raises no EXISTS: look first
            listing = await asyncio.to_thread(box.listing, e.folders[0])
            seen = await asyncio.to_thread(self.state.seen, e.key(e.folders[0]))
            if any(prefix + uid not in seen for _, uid in listing):
                return
            changed = await asyncio.to_thread(box.idle_wait, timeout)
            if changed:
                log.debug("fetch: %s: new mail announced by IDLE", e.account)
        finally:
            run.mailbox = None
            await asyncio.to_thread(box.close)

    async def poll(self, e: FetchEntry) -> int:
        """One pass over the entry's mailbox (every folder); returns how many were delivered."""
        password = (await asyncio.to_thread(e.password_file.read_text)).strip("\r\n")
        remote = Remote(e.server, e.protocol, e.tls, e.user, password, e.verify, e.cafile)
        box: POP3Mailbox | IMAPMailbox
        if e.protocol == "pop3":
            box = await asyncio.to_thread(POP3Mailbox, remote)
        else:
            box = await asyncio.to_thread(IMAPMailbox, remote)
            self._offers_idle[e] = box.idle
        delivered = 0
        try:
            for folder in e.folders if e.protocol == "imap" else ("",):
                delivered += await self._folder(e, box, folder)
        finally:
            await asyncio.to_thread(box.close)
        return delivered

    async def _folder(self, e: FetchEntry, box: POP3Mailbox | IMAPMailbox, folder: str) -> int:
        key = e.key(folder)
        prefix = ""
        if isinstance(box, IMAPMailbox):
            # RFC 9051 2.3.1.1: a UID means something only with its folder's UIDVALIDITY
            prefix = await asyncio.to_thread(box.select, folder, e.keep) + ":"
        listing = await asyncio.to_thread(box.listing, folder)
        seen = await asyncio.to_thread(self.state.seen, key)
        delivered = 0
        for ref, uid in listing:
            mark = prefix + uid
            if mark not in seen:
                data = await asyncio.to_thread(box.read, ref)
                await self._deliver(e, data, key, mark)
                await asyncio.to_thread(self.state.mark, key, mark)  # durable: then delete
                delivered += 1
            if not e.keep:
                await asyncio.to_thread(box.delete, ref)
        await asyncio.to_thread(box.finish, folder)
        await asyncio.to_thread(self.state.retain, key, [prefix + u for _, u in listing])
        return delivered

    async def _deliver(self, e: FetchEntry, data: bytes, key: str, mark: str) -> None:
        # the same id for the same remote message: a redelivery after a crash is a no-op
        did = hashlib.sha256(f"carteiro-fetch\0{key}\0{mark}".encode()).hexdigest()[:40]
        if b"\r\n" not in data[:4096] and b"\n" in data:
            data = data.replace(b"\n", b"\r\n")
        proto = "POP3" if e.protocol == "pop3" else "IMAP"
        tls = "S" if e.tls != "none" else ""
        # RFC 5321 4.4: a Received: line for this hop, as fetchmail adds
        received = (
            f"Received: from {e.server} by {self.hostname} (carteiro fetch)\r\n"
            f"\twith {proto}{tls} id {mark} for <{e.account}>;\r\n"
            f"\t{email.utils.formatdate(localtime=True)}\r\n"
        ).encode()
        await self.deliver(e.account, received + data, _sender(data), did)

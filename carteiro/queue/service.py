"""The outbound queue as one service: spool + worker + transport, started and stopped together.

Holds DATA/queue/lock (flock) while running, so the CLI knows to ask the server instead of editing
the spool itself. Operator commands (queue list/show/flush/retry/delete/hold/release) are
`handle()` requests: the server runs them here; with no server, `offline()` edits the spool
under the same lock. `enqueue` hands over a message another process (`carteiro deliver`) wrote to
DATA/queue/incoming/: the running worker holds the spool in memory and never rereads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carteiro.queue import spool_db
from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.queue.model import QueuedMessage

if TYPE_CHECKING:
    from carteiro.queue.pickup import Pickup
    from carteiro.queue.spool import FileSpool
    from carteiro.queue.transport import Transport
    from carteiro.queue.worker import QueueWorker

log = logging.getLogger("carteiro.queue")

LOCK_NAME = "lock"
QUEUE_DIR = "queue"  # the spool's root under the data dir
CONTROL_SOCKET = "control.sock"  # in the spool's root: a running server's control socket
INCOMING = "incoming"  # messages other processes hand over with an `enqueue` request


def envelope_to_wire(env: Envelope) -> dict[str, Any]:
    """The envelope of an `enqueue` request. auth_user and trusted never travel: a handed-over
    message is a stranger's (never DKIM-signed for our domains)."""
    return {
        "mail_from": env.mail_from,
        "recipients": [
            {"address": r.address, "notify": list(r.notify), "orcpt": r.orcpt}
            for r in env.recipients
        ],
        "ret": env.ret,
        "envid": env.envid,
        "body": env.body,
        "smtputf8": env.smtputf8,
    }


def envelope_from_wire(data: object) -> Envelope:
    """Raises ValueError on anything malformed."""

    def text(value: object, what: str, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ValueError(f"{what} must be a string")
        return value

    if not isinstance(data, dict):
        raise ValueError("envelope must be an object")
    rcpts = data.get("recipients")
    if not isinstance(rcpts, list) or not rcpts:
        raise ValueError("recipients must be a non-empty list")
    recipients = []
    for r in rcpts:
        if not isinstance(r, dict):
            raise ValueError("a recipient must be an object")
        notify = r.get("notify") or []
        if not isinstance(notify, list):
            raise ValueError("notify must be a list")
        recipients.append(
            QueuedRecipient(
                str(text(r.get("address"), "address")),
                tuple(str(text(n, "notify")) for n in notify),
                text(r.get("orcpt"), "orcpt", optional=True),
            )
        )
    body = str(text(data.get("body", "7BIT"), "body"))
    if body not in ("7BIT", "8BITMIME", "BINARYMIME"):
        raise ValueError(f"unknown body type {body!r}")
    return Envelope(
        mail_from=str(text(data.get("mail_from"), "mail_from")),
        recipients=tuple(recipients),
        ret=text(data.get("ret"), "ret", optional=True),
        envid=text(data.get("envid"), "envid", optional=True),
        body=body,
        smtputf8=bool(data.get("smtputf8", False)),
    )


class QueueBusy(Exception):
    """Another process holds the queue."""


class QueueLock:
    def __init__(self, root: Path) -> None:
        self.path = Path(root) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, wait: float = 10.0) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise QueueBusy(
                        f"{self.path}: the queue is in use by another process"
                    ) from None
                time.sleep(0.05)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def held_elsewhere(self) -> bool:
        """True when a running server holds the queue."""
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


PICKUP_INTERVAL = 60.0  # seconds between maildrop scans nobody asked for (a lost wake-up)


class QueueService:
    def __init__(
        self,
        spool: FileSpool,
        worker: QueueWorker,
        transport: Transport,
        pickup: Pickup | None = None,
    ) -> None:
        self.spool = spool
        self.worker = worker
        self.transport = transport
        self.pickup = pickup
        self.lock = QueueLock(spool.root)
        self.running = False
        self._pickup_task: asyncio.Task[None] | None = None
        self._pickup_wake = asyncio.Event()

    async def start(self) -> None:
        await asyncio.to_thread(self.lock.acquire)
        try:
            msgs = await self.spool.open()
            await self.worker.start()
        except BaseException:
            self.lock.release()
            raise
        self.running = True
        n = len(msgs)
        log.info(
            "queue: started with %d message%s in %s", n, "" if n == 1 else "s", self.spool.root
        )
        if self.pickup is not None:
            self._pickup_task = asyncio.get_running_loop().create_task(
                self._pickup_loop(), name="queue-pickup"
            )

    async def _pickup_loop(self) -> None:
        """Scan the maildrop at start, when woken (pickup socket, control socket) and once a
        minute in case a wake-up was lost (a sendmail that could not reach the socket)."""
        assert self.pickup is not None
        while True:
            self._pickup_wake.clear()
            try:
                await self.pickup.scan()
            except Exception:
                log.exception("queue: maildrop scan failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pickup_wake.wait(), PICKUP_INTERVAL)

    async def pickup_now(self, include_deferred: bool = False) -> list[tuple[str, str]]:
        """Queue what waits in the maildrop now; returns [(drop name, queue id)]."""
        if self.pickup is None:
            return []
        return await self.pickup.scan(include_deferred)

    async def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        if self._pickup_task is not None:
            self._pickup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pickup_task
            self._pickup_task = None
        try:
            await self.worker.stop()
            await self.transport.close()
            await self.spool.close()
        finally:
            self.lock.release()

    def wake(self) -> None:
        self.worker.wake()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """An operator command from the CLI (sent by cli_queue.py, received by net/control.py)."""
        op = str(request.get("op", ""))
        msg_id = str(request.get("id") or "")
        if op == "enqueue":
            return await self._enqueue(request)
        if op == "pickup":
            picked = await self.pickup_now()
            return {"ok": True, "queued": [list(p) for p in picked]}
        if op == "sync":  # `queue list` is about to read the disk (cli_queue.settle)
            await self.spool.sync()
            return {"ok": True}
        try:
            if op == "flush":
                # a queue run also takes what `sendmail -odq` left in the maildrop
                picked = await self.pickup_now(include_deferred=True)
                return {"ok": True, "count": await self.worker.retry(None) + len(picked)}
            if op == "retry":
                return {"ok": True, "count": await self.worker.retry(msg_id)}
            if op == "delete":
                await self.worker.delete(msg_id)
                return {"ok": True}
            if op == "hold":
                await self.worker.hold(msg_id)
                return {"ok": True}
            if op == "release":
                await self.worker.release(msg_id)
                return {"ok": True}
        except KeyError:
            return {"ok": False, "error": f"no message {msg_id} in the queue"}
        return {"ok": False, "error": f"unknown queue command {op!r}"}

    async def _enqueue(self, request: dict[str, Any]) -> dict[str, Any]:
        """Queue DATA/queue/incoming/NAME (written and closed by the caller, who removes it once
        answered) for the envelope given. Durable before the answer, like every enqueue; the
        worker hears of it through the spool at once (no polling)."""
        name = request.get("file")
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            return {"ok": False, "error": "bad request: file must be a name in incoming/"}
        try:
            env = envelope_from_wire(request.get("envelope"))
        except ValueError as e:
            return {"ok": False, "error": f"bad request: {e}"}
        path = self.spool.root / INCOMING / name
        if not path.is_file():
            return {"ok": False, "error": f"no file {name} in {self.spool.root / INCOMING}"}
        try:
            queue_id = await self.spool.enqueue(env, path)
        except Exception as e:
            log.warning("queue: could not queue the message handed over in %s: %r", name, e)
            return {"ok": False, "error": f"cannot queue the message: {e}"}
        return {"ok": True, "id": queue_id}


def offline(root: Path, request: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The same commands with no server running: edit the spool directly, under the lock."""
    op = str(request.get("op", ""))
    msg_id = str(request.get("id") or "")
    now = time.time() if now is None else now
    lock = QueueLock(root)
    lock.acquire(wait=2.0)
    try:
        db = spool_db.connect(Path(root) / "queue.sqlite")
        try:
            if op == "flush":
                n = db.execute(
                    "UPDATE recipients SET next_try = ? WHERE state = 'pending' AND next_try > ?",
                    (now, now),
                ).rowcount
                return {"ok": True, "count": n, "note": "no server running: delivered at its start"}
            msg = spool_db.load(db, msg_id)
            if msg is None:
                return {"ok": False, "error": f"no message {msg_id} in the queue"}
            if op == "retry":
                db.execute(
                    "UPDATE recipients SET next_try = ? WHERE msg_id = ? AND state = 'pending'",
                    (now, msg_id),
                )
                return {"ok": True, "count": 1}
            if op == "delete":
                spool_db.delete(db, msg_id)
                if not msg.inline:
                    try:
                        os.unlink(Path(root) / "msg" / msg_id)
                    except FileNotFoundError:
                        pass
                return {"ok": True}
            if op in ("hold", "release"):
                spool_db.set_held(db, msg_id, op == "hold")
                if op == "release":
                    db.execute(
                        "UPDATE recipients SET next_try = ? WHERE msg_id = ? AND state = 'pending'",
                        (now, msg_id),
                    )
                return {"ok": True}
            return {"ok": False, "error": f"unknown queue command {op!r}"}
        finally:
            db.close()
    finally:
        lock.release()


def snapshot(root: Path) -> list[QueuedMessage]:
    """The queue as committed on disk (what `queue list` shows); safe while a server runs."""
    path = Path(root) / "queue.sqlite"
    if not path.exists():
        return []
    db = spool_db.connect(path)
    try:
        return spool_db.load_all(db)
    finally:
        db.close()


def load_one(root: Path, msg_id: str) -> QueuedMessage | None:
    path = Path(root) / "queue.sqlite"
    if not path.exists():
        return None
    db = spool_db.connect(path)
    try:
        return spool_db.load(db, msg_id)
    finally:
        db.close()


def load_content(root: Path, msg: QueuedMessage) -> bytes | None:
    """A queued message's stored bytes (without our prefix), or None when gone."""
    if not msg.inline:
        try:
            return (Path(root) / "msg" / msg.id).read_bytes()
        except FileNotFoundError:
            return None
    db = spool_db.connect(Path(root) / "queue.sqlite")
    try:
        return spool_db.load_body(db, msg.id)
    finally:
        db.close()

"""IDLE (RFC 2177): announce changes as they happen until the client says DONE.

The session waits on two things at once, the client's next bytes and the change feed, so a
delivery, another session's STORE or a POP3 deletion reaches the client at once.
"""

from __future__ import annotations

import asyncio
import contextlib

from carteiro.proto.imap import commands as c
from carteiro.proto.imap.receiver import NEED_DATA, IdleDone
from carteiro.servers.imap.session import Closing, Result, Session, State, bad, command, ok
from carteiro.store.api import ChangeEvent, FolderWatch, MailboxNotFound

# Seconds between looks at the selected mailbox's files while idling, for what other programs do
# to them (a Maildir client, another delivery agent): two stat calls each (store.refresh). The
# store's own changes wake the session at once through the change feed; so do other programs'
# while the session holds an active watch on the folder (inotify: store/folder_watch.py), and
# then a look now and then is only the backstop.
EXTERNAL_CHECK_INTERVAL = 5.0
WATCHED_CHECK_INTERVAL = 60.0


@command(c.Idle)
async def idle(s: Session, tag: str, req: c.Idle) -> Result:
    s.write(b"+ idling\r\n")
    await s.sync(True)
    s.rx.expect_idle_done()
    read_task: asyncio.Future[bytes] | None = None
    ev_task: asyncio.Future[ChangeEvent | None] | None = None
    timeout = s.server.config.idle_timeout
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    watch: FolderWatch | None = None
    check = EXTERNAL_CHECK_INTERVAL
    if s.view is not None and s.store is not None:
        try:
            watch = await s.store.watch(s.view.id)
        except MailboxNotFound:
            pass  # deleted meanwhile: its deletion event says so
        else:
            if watch.active:
                check = WATCHED_CHECK_INTERVAL
    try:
        while True:
            ev = s.rx.next_event()
            if isinstance(ev, IdleDone):
                return ok("Idle completed.")
            if ev is not NEED_DATA:
                return bad("Expected DONE")
            await s.flush()
            if read_task is None:
                read_task = asyncio.ensure_future(s.recv())
            waits: set[asyncio.Future[object]] = {read_task}  # type: ignore[arg-type]
            if s.sub is not None:
                if ev_task is None:
                    ev_task = asyncio.ensure_future(s.sub.next())
                waits.add(ev_task)  # type: ignore[arg-type]
            notifier = s.notify
            if notifier is not None:
                if notifier.pending:
                    await notifier.announce_pending(s)
                    await s.flush()
                    if s.state is State.LOGOUT:
                        raise Closing
                if notifier is s.notify:  # RFC 5465 4: NOTIFY's events in IDLE too
                    waits.add(notifier.arm())  # type: ignore[arg-type]
            wait = deadline - loop.time()
            if s.view is not None:
                wait = min(wait, check)
            done, _ = await asyncio.wait(
                waits, timeout=max(0.0, wait), return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                if loop.time() < deadline:
                    await s.refresh_selected()  # what it adopts arrives as events
                    continue
                s.untagged("BYE Autologout; idle for too long")
                s.state = State.LOGOUT
                raise Closing
            deadline = loop.time() + timeout
            if ev_task is not None and ev_task in done:
                event = ev_task.result()
                ev_task = None
                if event is not None and s.view is not None:
                    s.view.feed([event])
                await s.sync(True)
                if s.state is State.LOGOUT:
                    raise Closing
            if read_task in done:
                data = read_task.result()
                read_task = None
                if not data:
                    raise Closing
                s.rx.feed(data)
    finally:
        if watch is not None:
            watch.close()
        for t in (read_task, ev_task):
            if t is not None and not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

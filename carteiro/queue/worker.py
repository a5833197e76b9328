"""The queue manager: picks due messages, groups recipients by next hop, delivers, records, bounces.

Shaped like Postfix's qmgr: one in-memory job queue per destination, a concurrency limit per
destination and overall, round-robin among destinations, a dead destination deferring its waiting
jobs at once. Every outcome is recorded through the spool (durable) before the next step; a
success is recorded before anything else so a crash right after cannot cause a second delivery.
Time and randomness are injected; the worker never touches sockets (the Transport does).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

from carteiro.queue import dsn
from carteiro.queue.api import Envelope, LocalHandoff, QueuedRecipient
from carteiro.queue.model import QueuedMessage, RecipientState
from carteiro.queue.retry import RetryPolicy
from carteiro.queue.routing import Destination, Route, Router
from carteiro.queue.spool import FileSpool, NewMessage
from carteiro.queue.tlsrpt import STARTTLS_NOT_SUPPORTED
from carteiro.queue.tlsrpt import Recorder as TLSRecorder
from carteiro.queue.tlsrpt import classify as tls_failure
from carteiro.queue.transport import Hop, RcptSpec, Reply, SendResult, Transaction, Transport

log = logging.getLogger("carteiro.queue")

MAX_TXN_ROUNDS = 20  # new transactions for recipients refused with 452 "too many recipients"
ETRN_WINDOW = 300.0  # seconds after an ETRN during which a held domain's mail may go out


@dataclass
class WorkerConfig:
    hostname: str = "localhost"
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_concurrency: int = 50
    max_per_destination: int = 5
    max_rcpt_per_transaction: int = 50
    stop_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Outcome:
    reply: Reply
    remote_mta: str = ""
    from_remote: bool = False  # the reply is the remote server's (Diagnostic-Code: smtp)
    remote_dsn: bool = True  # the next hop took over NOTIFY=SUCCESS (RFC 3461 5.2.2)
    local: bool = False


@dataclass(eq=False)
class _Job:
    msg: QueuedMessage
    rcpts: list[RecipientState]


@dataclass(eq=False)
class _Dest:
    dest: Destination
    jobs: deque[_Job] = field(default_factory=deque)
    active: int = 0
    in_ready: bool = False


class QueueWorker:
    def __init__(
        self,
        spool: FileSpool,
        router: Router,
        transport: Transport,
        local: LocalHandoff | None,
        config: WorkerConfig,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.spool = spool
        self.router = router
        self.transport = transport
        self.local = local
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        # SMTP TLS reports (RFC 8460): every session with an MX host counted, when set
        self.tls_report: TLSRecorder | None = None
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._dests: dict[str, _Dest] = {}
        self._ready: deque[_Dest] = deque()
        self._active_jobs = 0
        self._outstanding: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._main: asyncio.Task[None] | None = None
        self._stopping = False
        self._released: dict[str, tuple[bool, float]] = {}  # ETRN: domain -> (subdomains, until)
        # Postfix's dead destinations: key -> (until, why). While a destination is dead, new
        # jobs for it are deferred without a connection attempt (see _start_message).
        self._dead: dict[str, tuple[float, Outcome]] = {}
        self.delivered = 0  # counters for tests, benchmarks and logs
        self.bounced = 0
        self.deferred = 0
        # called once per recipient per attempt: (status, route "local"|"remote", seconds
        # since arrival); the composition root points it at the metrics
        self.on_outcome: Callable[[str, str, float], None] | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        now = self.clock()
        for msg in list(self.spool.messages.values()):
            if not msg.held:
                self.schedule(msg, self._next_time(msg, now))
        self.spool.on_new = self._on_new
        self._main = asyncio.get_running_loop().create_task(self._run(), name="queue-worker")

    async def stop(self) -> None:
        """Stop taking work; let running deliveries finish (up to stop_timeout), then cancel."""
        self._stopping = True
        self.spool.on_new = None
        if self._main is not None:
            self._main.cancel()
            try:
                await self._main
            except asyncio.CancelledError:
                pass
        for d in self._dests.values():
            d.jobs.clear()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.config.stop_timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)

    def wake(self) -> None:
        self._wake.set()

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Until no delivery is running (tests and benchmarks)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    @property
    def active_messages(self) -> int:
        return len(self._outstanding)

    # ---- scheduling -------------------------------------------------------------------------

    def _on_new(self, msg: QueuedMessage) -> None:
        if self._stopping or msg.held:
            return
        if self._main is None or self._main.done():
            self.schedule(msg, self.clock())
            return
        # New mail is due now: started here rather than through the heap and a round of _run
        # (the one-message-per-session case pays that round for every message).
        self._start_message(msg, self.clock())

    def schedule(self, msg: QueuedMessage, when: float) -> None:
        msg.scheduled = when
        heapq.heappush(self._heap, (when, next(self._seq), msg.id))
        if self._heap[0][2] == msg.id:
            self._wake.set()

    def _next_time(self, msg: QueuedMessage, now: float) -> float:
        pending = msg.pending
        if not pending:
            return now
        when = min(r.next_try for r in pending)
        warn = self.config.policy.warn_at(msg.arrival)
        if (
            warn is not None
            and msg.mail_from
            and msg.origin != "dsn"
            and any(not r.delay_notified for r in pending)
        ):
            when = min(when, max(warn, now))
        return when

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                when, _, msg_id = heapq.heappop(self._heap)
                msg = self.spool.messages.get(msg_id)
                if msg is None or msg.active or msg.held or msg.scheduled != when:
                    continue  # a stale entry: rescheduled, running, held or gone
                self._start_message(msg, now)
            timer = None
            if self._heap:
                # Wake at least once a minute: the wall clock may jump. (A timer, not
                # wait_for: no task per round, and a round per new message.)
                timeout = min(max(self._heap[0][0] - now, 0.0), 60.0)
                timer = asyncio.get_running_loop().call_later(timeout, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _start_message(self, msg: QueuedMessage, now: float) -> None:
        msg.active = True
        msg.scheduled = None
        self._idle.clear()
        due = [r for r in msg.pending if r.next_try <= now]
        groups: dict[str, tuple[Destination, list[RecipientState]]] = {}
        for r in due:
            try:
                dest = self.router.destination_for(r.address)
                if dest.kind == "held" and self._is_released(dest.domain, now):
                    dest = self.router.destination_for(r.address, release=True)
            except Exception:
                log.exception("queue: %s: no destination for %s", msg.id, r.address)
                continue
            groups.setdefault(dest.key, (dest, []))[1].append(r)
        self._outstanding[msg.id] = len(groups)
        if not groups:
            self._spawn(self._finish(msg))
            return
        for dest, rcpts in groups.values():
            dead = self._dead_now(dest.key, now)
            if dead is not None:
                self._spawn(self._defer_job(_Job(msg, rcpts), dead))
                continue
            d = self._dests.get(dest.key)
            if d is None:
                d = self._dests[dest.key] = _Dest(dest)
            d.jobs.append(_Job(msg, rcpts))
            self._make_ready(d)
        self._pump()

    def _dead_now(self, key: str, now: float) -> Outcome | None:
        """Why `key` is dead (every host refused or timed out a moment ago), or None.

        Postfix keeps an unreachable destination in its short-term status cache for
        minimal_backoff_time and defers its new mail at once; we keep it for the first delay of
        the retry schedule, after which the next job tries again. A message deferred so waits
        for its own next try, like any other deferral.
        """
        entry = self._dead.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._dead[key]
            return None
        return entry[1]

    def _limit(self, d: _Dest) -> int:
        return self.config.max_per_destination

    def _make_ready(self, d: _Dest) -> None:
        if not d.in_ready and d.jobs and d.active < self._limit(d):
            d.in_ready = True
            self._ready.append(d)

    def _pump(self) -> None:
        while self._ready and self._active_jobs < self.config.max_concurrency:
            d = self._ready.popleft()
            d.in_ready = False
            if not d.jobs or d.active >= self._limit(d):
                continue
            job = d.jobs.popleft()
            d.active += 1
            self._active_jobs += 1
            self._spawn(self._run_job(d, job))
            self._make_ready(d)  # round-robin: back of the line

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _job_done(self, d: _Dest) -> None:
        d.active -= 1
        self._active_jobs -= 1
        if not d.jobs and d.active == 0 and self._dests.get(d.dest.key) is d:
            del self._dests[d.dest.key]
        else:
            self._make_ready(d)
        if not self._stopping:
            self._pump()

    async def _job_finished(self, msg: QueuedMessage) -> None:
        left = self._outstanding.get(msg.id, 1) - 1
        self._outstanding[msg.id] = left
        if left <= 0:
            await self._finish(msg)

    # ---- one job: some recipients of one message to one destination -------------------------

    async def _run_job(self, d: _Dest, job: _Job) -> None:
        dead: Outcome | None = None
        released = False
        tried = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            if dead is not None:
                until = self.clock() + self.config.policy.delay(1)
                self._dead[d.dest.key] = (until, dead)
            elif tried:
                self._dead.pop(d.dest.key, None)  # it answered: alive again
            if dead is not None and d.jobs:
                # Postfix's dead destination: the jobs waiting for it fail the same way now
                # instead of each timing out in turn.
                waiting, d.jobs = list(d.jobs), deque()
                for w in waiting:
                    self._spawn(self._defer_job(w, dead))
            self._job_done(d)

        try:
            if job.msg.deleted:
                return
            try:
                results, dead = await self._deliver(d.dest, job)
                tried = True
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue: %s: delivery to %s failed", job.msg.id, d.dest.key)
                out = Outcome(Reply(451, "4.3.0", "internal error, will retry"))
                results = [(r, out) for r in job.rcpts]
            # The connection is back in the pool: the next job may use it while we record.
            release()
            await self._apply(job.msg, results)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("queue: %s: recording the outcome failed", job.msg.id)
        finally:
            release()
            await self._job_finished(job.msg)

    async def _defer_job(self, job: _Job, out: Outcome) -> None:
        try:
            if not job.msg.deleted:
                await self._apply(job.msg, [(r, out) for r in job.rcpts])
        except Exception:
            log.exception("queue: %s: recording the outcome failed", job.msg.id)
        finally:
            await self._job_finished(job.msg)

    async def _deliver(
        self, dest: Destination, job: _Job
    ) -> tuple[list[tuple[RecipientState, Outcome]], Outcome | None]:
        msg = job.msg
        if dest.kind == "local":
            return await self._deliver_local(msg, job.rcpts), None
        if dest.kind == "held":
            # Postfix's defer_transports: waits, as deferred, until the client asks (ETRN)
            why = Reply(450, "4.7.0", f"held for {dest.domain} until its host asks (ETRN)")
            return [(r, Outcome(why)) for r in job.rcpts], None
        route = await self.router.route(dest)
        if route.dnssec_failed and self.tls_report is not None:
            for host in route.dnssec_failed:  # RFC 8460 4.3.2.1: not a session, but reported
                self.tls_report.session(dest.domain, None, "dnssec-invalid", host)
        if route.error is not None or not route.hops:
            reply = route.error or Reply(451, "4.4.4", f"no route to {dest.key}")
            return [(r, Outcome(reply)) for r in job.rcpts], None
        data = await self.spool.read(msg)
        observe = None
        if dest.kind == "mx" and self.tls_report is not None:
            observe = self._tls_observer(self.tls_report, dest.domain, route)
        if msg.verp:
            return await self._deliver_verp(route.hops, msg, data, job.rcpts, observe)
        results: dict[int, Outcome] = {}
        todo = list(job.rcpts)
        dead: Outcome | None = None
        for _round in range(MAX_TXN_ROUNDS):
            if not todo:
                break
            n = self.config.max_rcpt_per_transaction
            batch, todo = todo[:n], todo[n:]
            txn = Transaction(
                mail_from=msg.mail_from,
                recipients=tuple(RcptSpec(r.address, r.notify, r.orcpt) for r in batch),
                message=data,
                body=msg.body,
                smtputf8=msg.smtputf8,
                ret=msg.ret,
                envid=msg.envid,
                requiretls=msg.requiretls,
            )
            res, hop = await self._try_hops(route.hops, txn, observe)
            host = hop.host if hop is not None else ""
            if res.session_error is not None:
                out = Outcome(res.session_error, host, res.remote_said)
                for r in batch:
                    results[r.idx] = out
                if res.try_next and not res.remote_said and res.session_error.temporary:
                    dead = out
                continue
            accepted = any(rep.ok for rep in res.recipients)
            for r, rep in zip(batch, res.recipients, strict=True):
                # RFC 5321 4.5.3.1.10: 452 for too many recipients; send them in a new
                # transaction right away instead of waiting for the retry schedule.
                if accepted and rep.code == 452 and _round + 1 < MAX_TXN_ROUNDS:
                    todo.append(r)
                    continue
                results[r.idx] = Outcome(rep, host, True, res.remote_dsn)
        missing = Outcome(Reply(451, "4.3.0", "not attempted"))
        return [(r, results.get(r.idx, missing)) for r in job.rcpts], dead

    async def _deliver_verp(
        self,
        hops: Sequence[Hop],
        msg: QueuedMessage,
        data: bytes,
        rcpts: list[RecipientState],
        observe: Callable[[Hop, SendResult], None] | None = None,
    ) -> tuple[list[tuple[RecipientState, Outcome]], Outcome | None]:
        """One transaction per recipient, each with its own envelope sender (as Postfix's
        XVERP): the connection is reused between them, the content is read once."""
        results: list[tuple[RecipientState, Outcome]] = []
        dead: Outcome | None = None
        for r in rcpts:
            if dead is not None:  # the destination died: the rest wait for the next round
                results.append((r, dead))
                continue
            txn = Transaction(
                mail_from=msg.sender_for(r.address),
                recipients=(RcptSpec(r.address, r.notify, r.orcpt),),
                message=await self._copy_for(msg, r, data),
                body=msg.body,
                smtputf8=msg.smtputf8,
                ret=msg.ret,
                envid=msg.envid,
                requiretls=msg.requiretls,
            )
            res, hop = await self._try_hops(hops, txn, observe)
            host = hop.host if hop is not None else ""
            if res.session_error is not None:
                out = Outcome(res.session_error, host, res.remote_said)
                if res.try_next and not res.remote_said and res.session_error.temporary:
                    dead = out
                results.append((r, out))
                continue
            results.append((r, Outcome(res.recipients[0], host, True, res.remote_dsn)))
        return results, dead

    async def _copy_for(self, msg: QueuedMessage, r: RecipientState, data: bytes) -> bytes:
        """The bytes for one recipient: its own header fields first. A message we signed is
        signed again with them (RFC 8058 4: List-Unsubscribe-Post must be under a valid DKIM
        signature), in a thread (about 1 ms of RSA)."""
        if not r.headers:
            return data
        signer = self.spool.signer
        if not msg.prefix or signer is None:
            return r.headers + data
        content = r.headers + data[len(msg.prefix) :]
        try:
            prefix = await asyncio.to_thread(signer, content)
        except Exception:
            log.exception("queue: %s: DKIM signing for %s failed", msg.id, r.address)
            prefix = b""
        return prefix + content

    async def _try_hops(
        self,
        hops: Sequence[Hop],
        txn: Transaction,
        observe: Callable[[Hop, SendResult], None] | None = None,
    ) -> tuple[SendResult, Hop | None]:
        """RFC 5321 5.1: try the addresses in order until one takes the transaction.
        `observe` sees each attempt's outcome (TLS reports)."""
        last: SendResult | None = None
        last_hop: Hop | None = None
        for hop in hops:
            res = await self.transport.send(hop, txn)
            if observe is not None:
                observe(hop, res)
            if res.session_error is None or not res.try_next:
                return res, hop
            log.info("queue: %s[%s]:%d: %s", hop.host, hop.address, hop.port, res.session_error)
            last, last_hop = res, hop
        if last is None:
            return SendResult(session_error=Reply(451, "4.4.4", "no host to try")), None
        return last, last_hop

    @staticmethod
    def _tls_observer(
        rec: TLSRecorder, domain: str, route: Route
    ) -> Callable[[Hop, SendResult], None]:
        """Counts each new SMTP session with `domain`'s MX hosts for its TLS report (RFC 8460):
        encrypted, a TLS failure of some type, or in clear (STARTTLS not offered). A connection
        that never reached the server negotiated nothing and is not counted; neither is a
        transaction over a kept connection (its session was counted when it was opened)."""

        def observe(hop: Hop, res: SendResult) -> None:
            if res.reused:
                return
            if res.tls:
                result = "success"
            elif res.session_error is not None:
                result = tls_failure(res.session_error.status, res.session_error.text)
                if not result:
                    return  # a connection or protocol failure, not a TLS outcome
            else:
                result = STARTTLS_NOT_SUPPORTED  # delivered in clear
            policy = hop.tlsa or route.sts  # a DANE host's records, else the MTA-STS policy
            rec.session(domain, policy, result, hop.host, hop.address, res.local_ip)

        return observe

    async def _deliver_local(
        self, msg: QueuedMessage, rcpts: list[RecipientState]
    ) -> list[tuple[RecipientState, Outcome]]:
        out: list[tuple[RecipientState, Outcome]] = []
        data = await self.spool.read(msg)
        for r in rcpts:
            if self.local is None:
                reply = Reply(451, "4.3.0", "no local delivery configured")
            else:
                copy = r.headers + data if r.headers else data
                reply = await self.local.deliver(msg.sender_for(r.address), r.address, copy)
            out.append((r, Outcome(reply, "", False, False, local=True)))
        return out

    # ---- recording outcomes -----------------------------------------------------------------

    async def _apply(
        self, msg: QueuedMessage, results: list[tuple[RecipientState, Outcome]]
    ) -> None:
        now = self.clock()
        policy = self.config.policy
        states: list[tuple[RecipientState, Outcome]] = []
        for r, out in results:
            s = r.copy()
            s.attempts += 1
            s.last_attempt = now
            s.last_code, s.last_status, s.last_text = (
                out.reply.code,
                out.reply.status,
                out.reply.text,
            )
            s.remote_mta = out.remote_mta
            s.remote_reply = out.from_remote
            if out.reply.ok:
                s.state = "delivered"
            elif out.reply.permanent:
                s.state = "failed"
            else:
                nxt = policy.next_attempt(msg.arrival, s.attempts, now, self.rng)
                if nxt is None:
                    s.state = "failed"  # RFC 5321 4.5.4.1: given up after max_age
                else:
                    s.next_try = nxt
            states.append((s, out))
        done = [s for s, _ in states if s.state == "delivered"]
        rest = [s for s, _ in states if s.state != "delivered"]
        if done and not rest and self._last_job(msg, done):
            # The whole message is delivered: removing it is the record, one commit for both.
            by_idx = {s.idx: s for s in done}
            msg.recipients = [by_idx.get(r.idx, r) for r in msg.recipients]
            await self.spool.remove(msg)
            for s, out in states:
                self._log(msg, s, out, now)
            return
        if done:
            await self.spool.record(msg, done)  # first, and alone: no second delivery after this
        for s, out in states:
            self._log(msg, s, out, now)
        new: list[NewMessage] = []
        failed = [s for s in rest if s.state == "failed"]
        if failed:
            new.extend(await self._dsns(msg, failed, "failed", now))
        successes = [
            (s, out)
            for s, out in states
            if s.state == "delivered" and (out.local or not out.remote_dsn)
        ]
        if successes:
            actions: tuple[dsn.Action, ...] = ("delivered", "relayed")
            for action in actions:
                group = [s for s, out in successes if (action == "delivered") == out.local]
                if group:
                    new.extend(await self._dsns(msg, group, action, now))
        if rest or new:
            # Only "try again later" for every one: no fsync of its own (FileSpool.record)
            deferral = not new and all(s.state == "pending" for s in rest)
            await self.spool.record(msg, rest, new, deferral=deferral)

    def _last_job(self, msg: QueuedMessage, done: list[RecipientState]) -> bool:
        """True when `done` finishes `msg`: every other recipient is final, no other job of it is
        waiting, and nobody asked for a success notice."""
        if self._outstanding.get(msg.id, 0) != 1 or msg.deleted:
            return False
        mine = {s.idx for s in done}
        if any(r.state == "pending" for r in msg.recipients if r.idx not in mine):
            return False
        return msg.origin == "dsn" or not any(
            dsn.wanted("delivered", s.notify, msg.mail_from) for s in done
        )

    def _log(self, msg: QueuedMessage, s: RecipientState, out: Outcome, now: float) -> None:
        if s.state == "delivered":
            self.delivered += 1
            status = "sent"
        elif s.state == "failed":
            self.bounced += 1
            status = "bounced" if out.reply.permanent else "expired"
        else:
            self.deferred += 1
            status = "deferred"
        relay = "local" if out.local else (out.remote_mta or "none")
        delay = now - msg.arrival
        if self.on_outcome is not None:
            self.on_outcome(status, "local" if out.local else "remote", delay)
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "queue: %s: to=<%s>, relay=%s, delay=%.1f, attempts=%d, dsn=%s, status=%s (%s)",
            msg.id,
            s.address,
            relay,
            delay,
            s.attempts,
            out.reply.status,
            status,
            out.reply,
            extra={
                "event": "queue.attempt",
                "fields": {
                    "queue_id": msg.id,
                    "from": msg.mail_from,
                    "to": s.address,
                    "relay": relay,
                    "delay": round(delay, 3),
                    "attempts": s.attempts,
                    "dsn": out.reply.status,
                    "status": status,
                    "reply": str(out.reply),
                },
            },
        )

    async def _dsns(
        self, msg: QueuedMessage, states: list[RecipientState], action: dsn.Action, now: float
    ) -> list[NewMessage]:
        if not msg.verp:
            one = await self._dsn_to(msg, msg.mail_from, states, action, now)
            return [one] if one is not None else []
        out = []
        for s in states:
            d = await self._dsn_to(msg, msg.sender_for(s.address), [s], action, now)
            if d is not None:
                out.append(d)
        return out

    async def _dsn_to(
        self,
        msg: QueuedMessage,
        sender: str,
        states: list[RecipientState],
        action: dsn.Action,
        now: float,
    ) -> NewMessage | None:
        if msg.origin == "dsn":
            return None  # never report on a report
        wanted = [s for s in states if dsn.wanted(action, s.notify, sender)]
        if not wanted:
            return None
        policy = self.config.policy
        reports = [
            dsn.RecipientReport(
                address=s.address,
                action=action,
                status=s.last_status or ("2.0.0" if action != "failed" else "5.0.0"),
                orcpt=s.orcpt,
                remote_mta=s.remote_mta,
                diagnostic=str(s.last_reply) if s.last_reply else "",
                diagnostic_is_smtp=s.remote_reply,
                last_attempt=s.last_attempt,
                will_retry_until=policy.expires_at(msg.arrival) if action == "delayed" else None,
            )
            for s in wanted
        ]
        original = await self.spool.read(msg)
        report = dsn.build_dsn(
            reporting_mta=self.config.hostname,
            sender=sender,
            reports=reports,
            original=original,
            arrival=msg.arrival,
            now=now,
            envid=msg.envid,
            ret=msg.ret,
            utf8=msg.smtputf8,
        )
        env = Envelope(
            mail_from="",
            recipients=(QueuedRecipient(sender),),
            body=report.body,
            smtputf8=report.smtputf8,
        )
        return NewMessage(env, report.message)

    # ---- end of a round ---------------------------------------------------------------------

    async def _finish(self, msg: QueuedMessage) -> None:
        try:
            self._outstanding.pop(msg.id, None)
            if msg.deleted or msg.done:
                if msg.id in self.spool.messages:
                    await self.spool.remove(msg)
                    if not msg.deleted:
                        log.info("queue: %s: removed", msg.id)
                return
            now = self.clock()
            await self._delay_warning(msg, now)
            msg.active = False
            if not msg.held and not self._stopping:
                self.schedule(msg, self._next_time(msg, now))
        except Exception:
            log.exception("queue: %s: finishing failed", msg.id)
            msg.active = False
            if not self._stopping:
                self.schedule(msg, self.clock() + self.config.policy.delay(1))
        finally:
            if not self._outstanding:
                self._idle.set()

    async def _delay_warning(self, msg: QueuedMessage, now: float) -> None:
        warn = self.config.policy.warn_at(msg.arrival)
        if warn is None or now < warn or not msg.mail_from or msg.origin == "dsn":
            return
        due = [r for r in msg.pending if not r.delay_notified]
        if not due:
            return
        marked = []
        for r in due:
            s = r.copy()
            s.delay_notified = True
            marked.append(s)
        await self.spool.record(msg, marked, await self._dsns(msg, marked, "delayed", now))

    # ---- operator commands ------------------------------------------------------------------

    def _get(self, msg_id: str) -> QueuedMessage:
        msg = self.spool.messages.get(msg_id)
        if msg is None:
            raise KeyError(msg_id)
        return msg

    async def retry(self, msg_id: str | None = None) -> int:
        """Make pending recipients due now (one message, or all when None); returns how many
        messages were rescheduled. Held and running messages are left alone."""
        now = self.clock()
        self._dead.clear()  # as Postfix's flush: every destination gets a new chance
        msgs = [self._get(msg_id)] if msg_id else list(self.spool.messages.values())
        picked = [m for m in msgs if not m.held and not m.active and m.pending]
        for m in picked:
            for r in m.pending:
                r.next_try = min(r.next_try, now)
        await self.spool.save(picked)
        for m in picked:
            self.schedule(m, now)
        self._wake.set()
        return len(picked)

    def _is_released(self, domain: str, now: float) -> bool:
        for node, (sub, until) in list(self._released.items()):
            if until < now:
                del self._released[node]
            elif domain == node or (sub and domain.endswith("." + node)):
                return True
        return False

    async def etrn(self, node: str, subdomains: bool = False) -> int:
        """RFC 1985: send the mail held for `node` (and its subdomains) now. Returns how many
        messages wait for it (0: none)."""
        now = self.clock()
        self._released[node] = (subdomains, now + ETRN_WINDOW)
        self._dead.clear()

        def matches(domain: str) -> bool:
            return domain == node or (subdomains and domain.endswith("." + node))

        picked = [
            m
            for m in self.spool.messages.values()
            if not m.held and any(matches(r.domain) for r in m.pending)
        ]
        for m in picked:
            for r in m.pending:
                if matches(r.domain):
                    r.next_try = min(r.next_try, now)
        await self.spool.save(picked)
        for m in picked:
            if not m.active:
                self.schedule(m, now)
        self._wake.set()
        log.info(
            "queue: ETRN for %s%s: %d message(s)", "@" if subdomains else "", node, len(picked)
        )
        return len(picked)

    def _waiting_for(self, domains: set[str]) -> list[QueuedMessage]:
        return [
            m
            for m in self.spool.messages.values()
            if not m.held and not m.deleted and any(r.domain in domains for r in m.pending)
        ]

    def waiting(self, domains: Collection[str]) -> int:
        return len(self._waiting_for(set(domains)))

    async def atrn(
        self,
        domains: Collection[str],
        send: Callable[[Transaction], Awaitable[SendResult]],
        peer: str,
    ) -> int:
        """RFC 2645: deliver the mail waiting for `domains` over the turned-around ODMR
        connection. Each outcome is recorded as a delivery attempt (success removes, 5xx
        bounces, 4xx waits for the next ATRN). Stops when the connection fails."""
        doms = set(domains)
        tried = 0
        for msg in self._waiting_for(doms):
            if msg.active or msg.deleted:
                continue  # the worker has it right now: the next ATRN will
            rcpts = [r for r in msg.pending if r.domain in doms]
            msg.active = True
            msg.scheduled = None
            self._idle.clear()
            self._outstanding[msg.id] = 1
            broken = False
            try:
                txn = Transaction(
                    mail_from=msg.mail_from,
                    recipients=tuple(RcptSpec(r.address, r.notify, r.orcpt) for r in rcpts),
                    message=await self.spool.read(msg),
                    body=msg.body,
                    smtputf8=msg.smtputf8,
                    ret=msg.ret,
                    envid=msg.envid,
                )
                res = await send(txn)
                if res.session_error is not None:
                    out = Outcome(res.session_error, peer, res.remote_said)
                    results = [(r, out) for r in rcpts]
                    broken = not res.remote_said
                else:
                    results = [
                        (r, Outcome(rep, peer, True, res.remote_dsn))
                        for r, rep in zip(rcpts, res.recipients, strict=True)
                    ]
                await self._apply(msg, results)
                tried += 1
            except Exception:
                log.exception("queue: %s: ATRN delivery to %s failed", msg.id, peer)
                broken = True
            finally:
                await self._job_finished(msg)
            if broken:
                break
        log.info("queue: ATRN for %s by %s: %d message(s)", ",".join(sorted(doms)), peer, tried)
        return tried

    async def delete(self, msg_id: str) -> None:
        msg = self._get(msg_id)
        msg.deleted = True
        if not msg.active:
            await self.spool.remove(msg)
        log.info("queue: %s: deleted by the operator", msg_id)

    async def hold(self, msg_id: str) -> None:
        msg = self._get(msg_id)
        await self.spool.set_held(msg, True)
        log.info("queue: %s: held", msg_id)

    async def release(self, msg_id: str) -> None:
        msg = self._get(msg_id)
        await self.spool.set_held(msg, False)
        log.info("queue: %s: released", msg_id)
        if not msg.active:
            await self.retry(msg_id)

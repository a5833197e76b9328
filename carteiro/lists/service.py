"""The list engine: what arrives for a list address is handled here, after the queue (or the LDA)
made it durable. Posts meet the chain (rules.py) and the pipeline (handlers.py), then go to the
outbound queue in batches of members with VERP senders; requests, confirmations, moderation
replies and bounces change the database (db.py) and answer with notices (notices.py).

Every step may be repeated after a crash without a second effect: fan-out batches, notices and
held posts are named by keys derived from the message, and the queue drops a repeated key.
The queue, the archive and DNS are injected (app.py); the engine opens no socket.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from carteiro.core import verp
from carteiro.lists import addresses, bounces, commands, handlers, notices, rules
from carteiro.lists.db import ListDB, ListError, Pending
from carteiro.lists.digest import build_digest
from carteiro.lists.dmarc import PolicySource
from carteiro.lists.message import RawMessage
from carteiro.lists.model import MailingList, Member

log = logging.getLogger("carteiro.lists")

T = TypeVar("T")
BATCH = 1000  # members per queue message: a big list never makes one huge record
DAY = 86400.0
PROBE = "probe."  # LIST-bounces+probe.TOKEN@: a probe's own bounce address
_WORD = re.compile(r"\b(approve|approved|accept|ok|yes|reject|deny|no|discard)\b", re.I)


@dataclass(frozen=True, slots=True)
class Copy:
    address: str
    headers: bytes = b""  # fields for this member's copy only (RFC 8058 List-Unsubscribe)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the hand-over hears: 2xx done, 4xx try again later, 5xx refused."""

    code: int
    status: str
    text: str


class Sender(Protocol):
    async def send(
        self,
        mail_from: str,
        recipients: Sequence[Copy],
        data: bytes,
        *,
        verp: bool = False,
        trusted: bool = True,
        key: str | None = None,
    ) -> None:
        """Durably queue `data` for `recipients` (the queue's enqueue; `key` drops a repeat)."""
        ...


class Archiver(Protocol):
    async def archive(self, target: str, data: bytes, key: str) -> None:
        """File a post into "account" or "account:Mailbox" (created when missing)."""
        ...


class Sealer(Protocol):
    def seal(self, domain: str, data: bytes) -> bytes:
        """The ARC set (RFC 8617 5.1) the list `domain` puts on top of `data`: b"" when the
        post carries no Authentication-Results of ours (nothing to vouch for) or no key."""
        ...


class ListService:
    def __init__(
        self,
        db: ListDB,
        sender: Sender,
        policy: PolicySource | None = None,
        archiver: Archiver | None = None,
        *,
        sealer: Sealer | None = None,
        web_url: str = "",
        clock: Callable[[], float] = time.time,
        batch: int = BATCH,
    ) -> None:
        self.db = db
        self.sender = sender
        self.policy = policy
        self.archiver = archiver
        self.sealer = sealer
        self.web_url = web_url.rstrip("/")
        self.clock = clock
        self.batch = batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lists-db")
        self._addresses: set[str] = set()
        self._addresses_version: tuple[int, int] | None = None
        self._secret = db.secret()
        self._task: asyncio.Task[None] | None = None
        self._next_sweep = 0.0

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---- which addresses are ours ---------------------------------------------------------------

    def _is_list(self, address: str) -> bool:
        # The CLI creates lists behind the server's back: a commit by any process changes the
        # file's version, and the next lookup reloads (no window in which a new list is unknown).
        try:
            version = self.db.version()
            if version != self._addresses_version:
                self._addresses = self.db.addresses()
                self._addresses_version = version
        except Exception:  # a locked or damaged file: keep what we knew, say so
            log.exception("lists: cannot read the list addresses; using the last known")
        return address in self._addresses

    def parse(self, address: str) -> addresses.ListAddress | None:
        return addresses.parse(address, self._is_list)

    def owns(self, address: str) -> bool:
        """Is this one of a list's addresses (for RCPT and the local hand-over)?"""
        return self.parse(address) is not None

    def loops(self, recipient: str, header: bytes) -> bool:
        """The SMTP server asks at the end of data: a post to `recipient` carrying the list's own
        List-Id / X-BeenThere comes back from a member's forwarder; refuse it (RFC 2919)."""
        la = self.parse(recipient)
        if la is None or la.role != "post":
            return False
        try:
            ml = self.db.get(la.list)
        except Exception:  # the chain's loop rule still catches it after the queue
            log.exception("lists: cannot read %s for the loop check", la.list)
            return False
        return ml is not None and rules.is_loop(RawMessage.parse(header + b"\r\n"), ml)

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self, interval: float = 2.0) -> None:
        self._task = asyncio.get_running_loop().create_task(self._maintain_loop(interval))

    async def stop(self) -> None:
        """Stop the maintenance task (hand-overs still work until close())."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def close(self) -> None:
        """After the queue stopped: nothing hands mail over any more."""
        self._executor.shutdown(wait=True)
        self.db.close()

    async def _maintain_loop(self, interval: float) -> None:
        while True:
            try:
                await self.maintain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lists: maintenance failed; trying again later")
            await asyncio.sleep(interval)

    # ---- the hand-over ----------------------------------------------------------------------

    async def receive(self, mail_from: str, recipient: str, data: bytes) -> Outcome:
        la = self.parse(recipient)
        if la is None:
            return Outcome(550, "5.1.1", f"no such list address: {recipient}")
        ml = await self._run(self.db.get, la.list)
        if ml is None:
            return Outcome(550, "5.1.1", f"no such list: {la.list}")
        key = hashlib.sha256(recipient.lower().encode() + b"\0" + data).hexdigest()[:32]
        msg = RawMessage.parse(data)
        try:
            if la.role == "post":
                await self.post(ml, mail_from, msg, len(data), key)
            elif la.role == "bounces":
                await self.bounce(ml, la.detail, data)
            elif la.role == "owner":
                await self._to_owners(ml, mail_from, data, key)
            elif _automatic(msg, mail_from):
                # RFC 3834 5: no answer to an automatic message (a bounce, a vacation notice)
                log.info("lists: %s: automatic message to %s ignored", ml.address, recipient)
            elif la.role == "join":
                await self._answer(
                    ml, msg, key, [await self.request_join(ml, _sender(msg, mail_from))]
                )
            elif la.role == "leave":
                await self._answer(
                    ml, msg, key, [await self.request_leave(ml, _sender(msg, mail_from))]
                )
            elif la.role == "request" or (la.role == "confirm" and not la.detail):
                await self.commands(ml, msg, mail_from, key)
            elif la.role == "confirm":
                text = await self.confirm(ml, la.detail, msg, _sender(msg, mail_from))
                await self._answer(ml, msg, key, [text])
        except ListError as e:
            return Outcome(550, "5.7.1", str(e))
        return Outcome(250, "2.0.0", f"accepted by the list {ml.address}")

    async def _answer(self, ml: MailingList, msg: RawMessage, key: str, lines: list[str]) -> None:
        to = _sender(msg, "")
        if not to:
            return
        subject = msg.get("Subject") or ""
        text = "\n".join(lines) + "\n"
        await self._notify(
            ml,
            to,
            f"Re: {subject}" if subject else f"{ml.name}: your request",
            text,
            f"{key}:answer",
            auto="auto-replied",
            in_reply_to=msg.get("Message-ID"),
        )

    async def _notify(
        self, ml: MailingList, to: str, subject: str, text: str, key: str, **kw: Any
    ) -> None:
        data = notices.notice(ml, to, subject, text, **kw)
        # Notices come from LIST-bounces: a bounce of one lands in bounce processing, not a loop
        await self.sender.send(ml.role_address("bounces"), [Copy(to)], data, key=key)

    async def _to_owners(self, ml: MailingList, mail_from: str, data: bytes, key: str) -> None:
        owners = [Copy(o) for o in ml.owners]
        if owners:
            await self.sender.send(
                ml.role_address("bounces"), owners, data, trusted=False, key=f"{key}:owner"
            )

    # ---- tokens -----------------------------------------------------------------------------

    def _token(self, key: str) -> str:
        """Secret and the same for the same message: a repeated hand-over makes no new one."""
        mac = hmac.new(self._secret, key.encode(), hashlib.sha256).digest()
        return base64.b32encode(mac[:15]).decode().lower()

    def unsubscribe_url(self, ml: MailingList, address: str) -> str:
        raw = f"{ml.address}\0{address}".encode()
        mac = hmac.new(self._secret, b"unsub\0" + raw, hashlib.sha256).digest()[:12]
        token = (
            base64.urlsafe_b64encode(raw).decode().rstrip("=")
            + "."
            + (base64.urlsafe_b64encode(mac).decode().rstrip("="))
        )
        return f"{self.web_url}/lists/unsubscribe/{token}"

    def _read_unsubscribe(self, token: str) -> tuple[str, str] | None:
        body, dot, sig = token.partition(".")
        if not dot or len(token) > 1024:
            return None
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            mac = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
        except ValueError:
            return None
        want = hmac.new(self._secret, b"unsub\0" + raw, hashlib.sha256).digest()[:12]
        if not hmac.compare_digest(mac, want):
            return None
        list_address, _, address = raw.decode("utf-8", "replace").partition("\0")
        return list_address, address

    async def one_click(self, token: str) -> bool | None:
        """RFC 8058 3.2: the POST of a List-Unsubscribe link. None for a bad token; True when a
        member was removed, False when there was nobody to remove (it is idempotent)."""
        found = self._read_unsubscribe(token)
        if found is None:
            return None
        list_address, address = found
        removed = await self._run(self.db.remove_member, list_address, address)
        if removed:
            log.info("lists: %s: %s unsubscribed (one-click)", list_address, address)
        return removed

    # ---- subscriptions ----------------------------------------------------------------------

    async def request_join(self, ml: MailingList, address: str, name: str = "") -> str:
        s = ml.settings
        if not address:
            return "No address to subscribe."
        existing = await self._run(self.db.member, ml.address, address)
        if existing is not None:
            if existing.status != "enabled":
                existing.status, existing.bounce_score, existing.warnings = "enabled", 0.0, 0
                await self._run(self.db.update_member, ml.address, existing)
                return f"Delivery to {address} is enabled again."
            return f"{address} is already a member of {ml.address}."
        if s.subscription == "closed":
            return f"{ml.address} is closed: ask {ml.role_address('owner')}."
        if s.subscription == "open":
            await self._add(ml, address, name)
            return f"{address} is now subscribed to {ml.address}."
        await self._ask(ml, "subscribe", address, f"join {ml.address}")
        return f"A confirmation request was sent to {address}."

    async def request_leave(self, ml: MailingList, address: str) -> str:
        if await self._run(self.db.member, ml.address, address) is None:
            # the same answer whether or not: no member enumeration
            return f"If {address} is a member, a confirmation request was sent to it."
        await self._ask(ml, "unsubscribe", address, f"leave {ml.address}")
        return f"If {address} is a member, a confirmation request was sent to it."

    async def _ask(self, ml: MailingList, kind: str, address: str, what: str) -> None:
        now = self.clock()
        token = self._token(f"{kind}:{ml.address}:{address}:{int(now // 3600)}")
        p = Pending(
            token,
            ml.address,
            kind,
            address,
            "",
            what,
            None,
            now,
            now + ml.settings.token_hours * 3600.0,
            "waiting",
        )
        if await self._run(self.db.pending, token) is None:
            await self._run(self.db.add_pending, p)
        confirm = ml.role_address("confirm", token)
        text = (
            f"Someone (perhaps you) asked to {what} for {address}.\n\n"
            f"To confirm, reply to this message (its Reply-To is {confirm}),\n"
            f"or send a message with the subject 'confirm {token}' to"
            f" {ml.role_address('request')}.\n\n"
            f"If you did not ask, ignore this message: nothing happens.\n"
            f"This request expires in {ml.settings.token_hours} hours.\n"
        )
        await self._notify(
            ml,
            address,
            f"confirm {token}",
            text,
            f"ask:{token}",
            sender_role="request",
            reply_to=confirm,
        )

    async def query(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a ListDB call on the engine's database thread (for the owners' web page)."""
        return await self._run(fn, *args)

    async def add_by_owner(self, ml: MailingList, address: str, by: str) -> None:
        """An owner adds a member directly (as `carteiro list members add`), who is welcomed."""
        log.info("lists: %s: %s added by owner %s", ml.address, address, by)
        await self._add(ml, address, why=f"owner:{by}:{self.clock()}")

    async def _add(self, ml: MailingList, address: str, name: str = "", why: str = "") -> None:
        """Subscribe (a repeat does nothing) and welcome; `why` names the request, so that a
        repeated hand-over welcomes once."""
        await self._run(self.db.add_member, ml.address, Member(address, name, since=self.clock()))
        log.info("lists: %s: %s subscribed", ml.address, address)
        await self._notify(
            ml,
            address,
            f"Welcome to {ml.address}",
            "You are subscribed.\n\n" + notices.help_text(ml),
            f"welcome:{ml.address}:{address}:{why or self.clock()}",
        )

    async def confirm(self, ml: MailingList, token: str, msg: RawMessage, replier: str) -> str:
        token = token.lower()
        p = await self._run(self.db.pending, token)
        if p is None or p.list != ml.address or p.state != "waiting" or p.expires <= self.clock():
            return "That confirmation is unknown or has expired: nothing was done."
        if p.kind in ("post", "approve-subscription"):
            return await self._moderate_reply(ml, p, msg, replier)
        # the effect first, then the token goes: a crash in between leaves a token whose
        # second use repeats an effect that is idempotent, never a used token without effect
        if p.kind == "subscribe":
            if ml.settings.subscription == "moderated":
                await self._hold_subscription(ml, p.address, p.token)
                text = "Confirmed; a moderator will now consider the request."
            else:
                await self._add(ml, p.address, why=p.token)
                text = f"{p.address} is now subscribed to {ml.address}."
        elif p.kind == "unsubscribe":
            await self._run(self.db.remove_member, ml.address, p.address)
            log.info("lists: %s: %s unsubscribed", ml.address, p.address)
            text = f"{p.address} is no longer subscribed to {ml.address}."
        else:
            return "Nothing to confirm."
        await self._run(self.db.take_pending, token)
        return text

    async def _hold_subscription(self, ml: MailingList, address: str, why: str) -> None:
        now = self.clock()
        token = self._token(f"approve-sub:{why}")
        if await self._run(self.db.pending, token) is not None:
            return
        await self._run(
            self.db.add_pending,
            Pending(
                token,
                ml.address,
                "approve-subscription",
                address,
                "",
                f"subscription of {address}",
                None,
                now,
                now + ml.settings.hold_days * DAY,
                "waiting",
            ),
        )
        await self._tell_moderators(ml, token, f"{address} asks to join {ml.address}", None)

    # ---- moderation -------------------------------------------------------------------------

    async def _tell_moderators(
        self, ml: MailingList, token: str, what: str, held: bytes | None
    ) -> None:
        confirm = ml.role_address("confirm", token)
        text = (
            f"{what}\n\nTo approve, reply to this message with 'approve' as its first line.\n"
            f"To reject, reply with 'reject' and a reason on the same line.\n"
            f"To discard a post silently, reply with 'discard'.\n"
            f"(Replies go to {confirm}.) Or: carteiro list moderate {ml.address}"
            f" approve|reject|discard {token}\n"
        )
        for mod in sorted(set(ml.owners) | set(ml.settings.moderators)):
            await self._notify(
                ml,
                mod,
                f"{ml.name}: moderator request {token}",
                text,
                f"mod:{token}:{mod}",
                reply_to=confirm,
                attach=held,
            )

    async def _moderate_reply(
        self, ml: MailingList, p: Pending, msg: RawMessage, replier: str
    ) -> str:
        if not ml.is_moderator(replier):
            log.warning(
                "lists: %s: %s is no moderator; request %s left", ml.address, replier, p.token
            )
            return "Only the list's owners and moderators decide on requests."
        body = [
            line
            for line in msg.body[:4096].decode("utf-8", "replace").splitlines()
            if line.strip() and not line.startswith(">")
        ]
        verdict = None
        reason = ""
        # the first lines the moderator wrote, then the subject ("approve" typed there)
        for line in [*body[:2], msg.get("Subject") or ""]:
            m = _WORD.search(line)
            if m:
                verdict = m.group(1).lower()
                reason = line[m.end() :].strip(" :-")
                break
        if verdict is None:
            return "Say 'approve', 'reject REASON' or 'discard' on the first line of your reply."
        action = {
            "approve": "approve",
            "approved": "approve",
            "accept": "approve",
            "ok": "approve",
            "yes": "approve",
            "reject": "reject",
            "deny": "reject",
            "no": "reject",
            "discard": "discard",
        }[verdict]
        return await self.moderate(ml, p.token, action, reason, replier)

    async def moderate(
        self, ml: MailingList, token: str, action: str, reason: str = "", by: str = "operator"
    ) -> str:
        token = token.lower()
        p = await self._run(self.db.pending, token)
        if p is None or p.list != ml.address:
            return "No such request (already decided, or expired)."
        log.info("lists: %s: %s %s by %s", ml.address, p.kind, action, by)
        # as in confirm(): the effect (idempotent, keyed by the token), then the token goes
        text = await self._decide(ml, p, action, reason)
        await self._run(self.db.take_pending, token)
        return text

    async def _decide(self, ml: MailingList, p: Pending, action: str, reason: str) -> str:
        if p.kind == "approve-subscription":
            if action == "approve":
                await self._add(ml, p.address, why=p.token)
                return f"{p.address} is subscribed."
            if action == "reject":
                await self._notify(
                    ml,
                    p.address,
                    f"Your request to join {ml.address}",
                    f"A moderator refused your subscription.\n{reason}\n",
                    f"refused:{p.token}",
                )
            return f"The subscription of {p.address} was refused."
        if p.kind != "post" or p.message is None:
            return "Nothing to decide."
        if action == "approve":
            await self.post(
                ml,
                "",
                RawMessage.parse(p.message),
                len(p.message),
                f"approved:{p.token}",
                approved=True,
            )
            return "The post was approved and sent to the list."
        if action == "reject" and p.address:
            text = f"Your post to {ml.address} was rejected by a moderator.\n" + (
                f"Reason: {reason}\n" if reason else ""
            )
            await self._notify(
                ml,
                p.address,
                f"Rejected: {p.subject}",
                text,
                f"rejected:{p.token}",
                attach=p.message,
            )
        return f"The post was {'rejected' if action == 'reject' else 'discarded'}."

    # ---- posts --------------------------------------------------------------------------------

    async def post(
        self,
        ml: MailingList,
        mail_from: str,
        msg: RawMessage,
        size: int,
        key: str,
        approved: bool = False,
    ) -> rules.Decision:
        senders = tuple(
            dict.fromkeys(
                [a for _, a in msg.addresses("From")] + ([mail_from.lower()] if mail_from else [])
            )
        )
        member = None
        for a in senders:
            member = await self._run(self.db.member, ml.address, a)
            if member is not None:
                break
        post = rules.Post(ml, mail_from, msg, size, senders, member, approved)
        d = rules.run(post)
        poster = senders[0] if senders else ""
        log.info(
            "lists: %s: post from <%s>: %s%s",
            ml.address,
            poster,
            d.action,
            f" ({d.rule}: {d.reason})" if d.rule else "",
        )
        if d.action == "accept":
            await self.distribute(ml, msg, key)
        elif d.action == "hold":
            await self._hold(ml, msg, poster, d, key, mail_from)
        elif d.action == "reject" and poster and not _automatic(msg, mail_from):
            await self._notify(
                ml,
                poster,
                f"Rejected: {msg.get('Subject') or ''}",
                f"Your post to {ml.address} was not accepted: {d.reason}.\n",
                f"{key}:reject",
                attach=msg.to_bytes(),
            )
        return d

    async def _hold(
        self,
        ml: MailingList,
        msg: RawMessage,
        poster: str,
        d: rules.Decision,
        key: str,
        mail_from: str,
    ) -> None:
        now = self.clock()
        token = self._token(f"held:{key}")
        subject = msg.get("Subject") or "(no subject)"
        data = msg.to_bytes()
        if await self._run(self.db.pending, token) is None:
            await self._run(
                self.db.add_pending,
                Pending(
                    token,
                    ml.address,
                    "post",
                    poster,
                    d.reason,
                    subject,
                    data,
                    now,
                    now + ml.settings.hold_days * DAY,
                    "waiting",
                ),
            )
        await self._tell_moderators(
            ml,
            token,
            f"A post to {ml.address} from {poster} is held: {d.reason}.\nSubject: {subject}",
            data,
        )
        if poster and not _automatic(msg, mail_from):
            await self._notify(
                ml,
                poster,
                f"Your post to {ml.address} awaits a moderator",
                f"Your post '{subject}' is held: {d.reason}.\nA moderator will decide on it.\n",
                f"{key}:held",
            )

    async def distribute(self, ml: MailingList, msg: RawMessage, key: str) -> int:
        """The pipeline, then the queue: returns how many members get a copy."""
        froms = msg.addresses("From")
        author = froms[0] if froms else ("", "")
        strict = False
        if self.policy is not None and ml.settings.dmarc_mitigation and author[1]:
            try:
                strict = await self.policy.policy(author[1].rpartition("@")[2]) in (
                    "reject",
                    "quarantine",
                )
            except Exception:
                log.exception("lists: DMARC lookup for %s failed; From left as it is", author[1])
        handlers.run(msg, handlers.Context(ml, author, strict))
        data = msg.to_bytes()
        if ml.settings.archive and self.archiver is not None:
            await self.archiver.archive(ml.settings.archive, data, f"{key}:archive")
        members = await self._run(self.db.members, ml.address)
        regular = [m for m in members if m.status == "enabled" and m.delivery == "regular"]
        digest = any(m.status == "enabled" and m.delivery == "digest" for m in members)
        if digest and await self._run(self.db.first_time, f"digest:{key}", self.clock()):
            await self._run(self.db.add_digest, ml.address, data, self.clock())
        if regular:
            data = await self._sealed(ml, data, key)
        bounces_to = ml.role_address("bounces")
        for i in range(0, len(regular), self.batch):
            copies = [
                Copy(m.address, self._personal(ml, m.address)) for m in regular[i : i + self.batch]
            ]
            # trusted (DKIM-signed by our domain) only when the From is the list's, written by
            # us: a stranger's post claiming one of our domains in From: is never signed
            await self.sender.send(
                bounces_to, copies, data, verp=True, trusted=strict, key=f"{key}:{i}"
            )
        return len(regular)

    async def _sealed(self, ml: MailingList, data: bytes, key: str) -> bytes:
        """RFC 8617 5.1: the copies leave changed (subject tag, footer, From rewritten), so the
        list seals what its receiving side saw; the queue DKIM-signs after, as for a forwarded
        message. The archive and the digest keep the post unsealed (they do not travel on)."""
        if self.sealer is None:
            return data
        try:
            fields = await asyncio.to_thread(self.sealer.seal, ml.domain, data)
        except Exception:
            log.exception("lists: could not ARC-seal post %s to %s; sent unsealed", key, ml.address)
            return data
        return fields + data

    def _personal(self, ml: MailingList, address: str) -> bytes:
        leave = f"<mailto:{ml.role_address('leave')}>"
        if not self.web_url:
            return f"List-Unsubscribe: {leave}\r\n".encode()
        # RFC 8058 3.1: an HTTPS URI that identifies the member, and List-Unsubscribe-Post
        return (
            f"List-Unsubscribe: <{self.unsubscribe_url(ml, address)}>,\r\n {leave}\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        ).encode()

    # ---- -request commands --------------------------------------------------------------------

    async def commands(self, ml: MailingList, msg: RawMessage, mail_from: str, key: str) -> None:
        who = _sender(msg, mail_from)
        results = []
        for cmd in commands.parse(msg):
            if cmd.name == "subscribe":
                results.append(f"> subscribe\n{await self.request_join(ml, who)}")
            elif cmd.name == "unsubscribe":
                results.append(f"> unsubscribe\n{await self.request_leave(ml, who)}")
            elif cmd.name == "confirm" and cmd.args:
                results.append(f"> confirm\n{await self.confirm(ml, cmd.args[0], msg, who)}")
            elif cmd.name == "digest":
                results.append(f"> digest\n{await self._digest_mode(ml, who, cmd.args)}")
            elif cmd.name == "help":
                results.append(notices.help_text(ml))
        if not results:
            results.append("No command found.\n\n" + notices.help_text(ml))
        await self._answer(ml, msg, key, results)

    async def _digest_mode(self, ml: MailingList, who: str, args: tuple[str, ...]) -> str:
        m = await self._run(self.db.member, ml.address, who)
        if m is None:
            return f"{who} is not a member."
        if not ml.settings.digest:
            return "This list sends no digests."
        m.delivery = "digest" if (args[:1] or ("on",))[0].lower() in ("on", "yes") else "regular"
        await self._run(self.db.update_member, ml.address, m)
        return f"Delivery mode of {who}: {m.delivery}."

    # ---- bounces ------------------------------------------------------------------------------

    async def bounce(self, ml: MailingList, detail: str, data: bytes) -> None:
        now = self.clock()
        if detail.startswith(PROBE):
            p = await self._run(self.db.take_pending, detail[len(PROBE) :].lower())
            if p is not None and p.kind == "probe" and p.list == ml.address:
                await self._disable(ml, p.address, now)
            return
        failed = bounces.failed_recipients(data)
        if detail:
            member = verp.decode(detail)
            if member is None:
                return
            msg = RawMessage.parse(data)
            if "report" in (msg.get("Content-Type") or "").lower() and not failed:
                return  # a DSN that reports only delays or successes
            failed = [member.lower()]
        for address in failed:
            await self.register_bounce(ml, address, now)

    async def register_bounce(self, ml: MailingList, address: str, now: float) -> None:
        """Mailman's score: one point per day with bounces; a score older than stale_days
        starts again; at the threshold a probe goes out, and if it bounces, delivery stops."""
        s = ml.settings
        m = await self._run(self.db.member, ml.address, address)
        if m is None or m.status != "enabled":
            return
        if m.last_bounce and int(m.last_bounce // DAY) == int(now // DAY):
            return  # one per day
        if now - m.last_bounce > s.bounce_stale_days * DAY:
            m.bounce_score = 0.0
        m.bounce_score += 1.0
        m.last_bounce = now
        await self._run(self.db.update_member, ml.address, m)
        log.info("lists: %s: bounce from %s, score %.0f", ml.address, address, m.bounce_score)
        if m.bounce_score >= s.bounce_threshold:
            await self._probe(ml, address, now)

    async def _probe(self, ml: MailingList, address: str, now: float) -> None:
        waiting = await self._run(self.db.pending_of, ml.address, "probe")
        if any(p.address == address for p in waiting):
            return
        token = self._token(f"probe:{ml.address}:{address}:{now}")
        await self._run(
            self.db.add_pending,
            Pending(
                token,
                ml.address,
                "probe",
                address,
                "",
                "",
                None,
                now,
                now + ml.settings.bounce_stale_days * DAY,
                "waiting",
            ),
        )
        text = (
            f"Mail from {ml.address} to you has bounced.\nThis message checks your address:"
            " if it bounces too, delivery to you stops.\nYou need not do anything.\n"
        )
        data = notices.notice(ml, address, f"{ml.name}: checking your address", text)
        await self.sender.send(
            ml.role_address("bounces", PROBE + token), [Copy(address)], data, key=f"probe:{token}"
        )

    async def _disable(self, ml: MailingList, address: str, now: float) -> None:
        m = await self._run(self.db.member, ml.address, address)
        if m is None or m.status != "enabled":
            return
        m.status, m.warnings, m.last_warning = "bounce", 1, now
        await self._run(self.db.update_member, ml.address, m)
        log.warning("lists: %s: delivery to %s disabled (bounces)", ml.address, address)
        await self._notify(
            ml,
            address,
            f"{ml.name}: delivery disabled",
            self._disabled_text(ml, address),
            f"disabled:{ml.address}:{address}:{now}",
        )
        for owner in ml.owners:
            await self._notify(
                ml,
                owner,
                f"{ml.name}: delivery to {address} disabled",
                f"Mail to {address} kept bouncing; delivery is disabled.\n",
                f"disabled-owner:{ml.address}:{address}:{now}:{owner}",
            )

    def _disabled_text(self, ml: MailingList, address: str) -> str:
        return (
            f"Mail from {ml.address} to {address} bounced too often: delivery to you is"
            f" disabled.\nTo enable it again, send 'subscribe' to {ml.role_address('request')}."
            "\n"
        )

    # ---- maintenance: decisions made elsewhere, expiry, warnings, digests --------------------

    async def maintain(self) -> None:
        now = self.clock()
        for p in (
            await self._run(self.db.by_state, "approved")
            + await self._run(self.db.by_state, "rejected")
            + await self._run(self.db.by_state, "discarded")
        ):
            ml = await self._run(self.db.get, p.list)
            if ml is not None:
                action = {"approved": "approve", "rejected": "reject"}.get(p.state, "discard")
                await self.moderate(ml, p.token, action, p.reason, "the command line")
        for p in await self._run(self.db.expired, now):
            ml = await self._run(self.db.get, p.list)
            if ml is None:
                continue
            if p.kind == "post" and p.address:
                await self._notify(
                    ml,
                    p.address,
                    f"Expired: {p.subject}",
                    f"Your post to {ml.address} waited {ml.settings.hold_days}"
                    " days for a moderator and was dropped.\n",
                    f"expired:{p.token}",
                )
            elif p.kind == "probe":  # the probe did not bounce: the address works
                m = await self._run(self.db.member, ml.address, p.address)
                if m is not None and m.status == "enabled":
                    m.bounce_score = 0.0
                    await self._run(self.db.update_member, ml.address, m)
        if now >= self._next_sweep:  # warnings and digests: once a minute is plenty
            self._next_sweep = now + 60.0
            for ml in await self._run(self.db.all):
                await self._warn_disabled(ml, now)
                await self.send_digest(ml, now)

    async def _warn_disabled(self, ml: MailingList, now: float) -> None:
        s = ml.settings
        for m in await self._run(self.db.members, ml.address):
            if m.status != "bounce" or now - m.last_warning < s.bounce_warning_days * DAY:
                continue
            if m.warnings >= s.bounce_warnings:
                await self._run(self.db.remove_member, ml.address, m.address)
                log.warning(
                    "lists: %s: %s removed after %d warnings", ml.address, m.address, m.warnings
                )
                continue
            m.warnings += 1
            m.last_warning = now
            await self._run(self.db.update_member, ml.address, m)
            await self._notify(
                ml,
                m.address,
                f"{ml.name}: delivery still disabled",
                self._disabled_text(ml, m.address),
                f"warn:{ml.address}:{m.address}:{m.warnings}",
            )

    async def send_digest(self, ml: MailingList, now: float, force: bool = False) -> int:
        """RFC 2046 5.1.5 multipart/digest of the posts since the last one, daily."""
        if not force and now - ml.last_digest < DAY:
            return 0
        posts = await self._run(self.db.digest_posts, ml.address)
        if not posts:
            return 0
        members = [
            m
            for m in await self._run(self.db.members, ml.address)
            if m.status == "enabled" and m.delivery == "digest"
        ]
        last = posts[-1][0]
        if members:
            data = build_digest(ml, [p for _, p in posts], now)
            for i in range(0, len(members), self.batch):
                copies = [
                    Copy(m.address, self._personal(ml, m.address))
                    for m in members[i : i + self.batch]
                ]
                await self.sender.send(
                    ml.role_address("bounces"),
                    copies,
                    data,
                    verp=True,
                    key=f"digest:{ml.address}:{last}:{i}",
                )
        await self._run(self.db.drop_digest, ml.address, last, now)
        return len(members)


def _sender(msg: RawMessage, mail_from: str) -> str:
    froms = msg.addresses("From")
    return froms[0][1] if froms else mail_from.lower()


def _automatic(msg: RawMessage, mail_from: str) -> bool:
    """RFC 3834: a bounce (null sender) or an auto-submitted message needs no answer."""
    auto = (msg.get("Auto-Submitted") or "no").lower()
    precedence = (msg.get("Precedence") or "").lower()
    return not mail_from or auto != "no" or precedence in ("bulk", "junk", "list")

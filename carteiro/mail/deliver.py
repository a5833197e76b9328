"""Local delivery: address -> aliases -> accounts -> mailbox, all recipients or none.

The only local delivery: used by the SMTP server (final delivery of mail for our domains), by
`carteiro deliver` (a standalone LDA, as dovecot-lda or procmail are used from another MTA) and,
through `deliver_to` injected by app.py, by the queue for DSNs and queued local recipients.
Each account gets the store (default) or its classic mbox spool file (`delivery = mbox`); with
`plus_folders`, alice+Folder@ files into Folder when it exists. Accounts in the store with an
active Sieve script get its plan (mail/sieve_filter.py): copies into folders, redirects and
replies through the queue. A delivery that fails anywhere is undone everywhere before the error
is raised: a 4xx never leaves a partial copy behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.policy
import email.utils
import errno
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from carteiro.directory.accounts import Directory, DirectoryError, Resolution
from carteiro.mail.mbox_spool import Held, MboxLockTimeout, MboxSpool
from carteiro.mail.sieve_filter import Copy, Outbound, Plan, SieveFilter
from carteiro.mime.parse import parse as parse_message
from carteiro.store.api import (
    AccountNotFound,
    AccountStore,
    AppendResult,
    Delivery,
    InvalidName,
    MailboxExists,
    MailboxNotFound,
    MailStore,
    OverQuota,
    Quota,
    StorageFull,
    StoreError,
)

log = logging.getLogger("carteiro.deliver")
CACHE_MAX = 10_000
# Hands remote alias targets (addresses) to the outbound queue; raising undoes the delivery.
Forward = Callable[[Sequence[str]], Awaitable[object]]


class DeliveryError(Exception):
    """A delivery that did not happen (nothing was delivered). `temporary`: try again later."""

    def __init__(self, reason: str, temporary: bool = True, status: str = "4.3.0") -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary
        self.status = status


class UnknownRecipient(DeliveryError):
    def __init__(self, address: str) -> None:
        super().__init__(f"no such user: {address}", temporary=False, status="5.1.1")


@dataclass(frozen=True, slots=True)
class Target:
    """One mailbox that receives a copy."""

    account: str
    mailbox: str = "INBOX"
    # the recipient address (with its +detail): Sieve's envelope "to"; not part of identity
    address: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What one delivery did: the store appends (for undo) and the mbox accounts written."""

    appended: tuple[AppendResult, ...]
    mbox_accounts: tuple[str, ...]


class LocalDelivery:
    def __init__(
        self,
        store: MailStore,
        directory: Directory,
        mbox_dir: Path,
        plus_folders: bool = False,
        mbox_lock_timeout: float = 30.0,
        cache_ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sieve: SieveFilter | None = None,
        outbound: Outbound | None = None,
    ) -> None:
        self.store = store
        self.sieve = sieve
        # Where Sieve's redirects and replies are queued; without it a script that redirects
        # keeps the message instead (with a note).
        self.outbound = outbound
        self.directory = directory
        self.mbox = MboxSpool(mbox_dir, mbox_lock_timeout)
        self.plus_folders = plus_folders
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._resolved: dict[str, tuple[float, Resolution | DeliveryError]] = {}
        self._mbox: dict[str, tuple[float, bool]] = {}
        # account handles for the quota check after each delivery: looking one up is a read in
        # the store's pool (a thread hop each way), for a name -> id that hardly ever changes
        self._accounts: dict[str, tuple[float, AccountStore]] = {}

    # ---- resolution -------------------------------------------------------------------------

    def resolve(self, address: str) -> Resolution:
        """Aliases, catch-alls and plus-addressing. Raises UnknownRecipient or DeliveryError.

        Answers (and refusals) are remembered for `cache_ttl` seconds: a busy MX asks about the
        same few addresses again and again, and a directory change still shows within a second.
        """
        now = self._clock()
        hit = self._resolved.get(address)
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], DeliveryError):
                raise hit[1].with_traceback(None)  # a shared instance: do not grow its traceback
            return hit[1]
        try:
            res: Resolution | DeliveryError = self._resolve(address)
        except DeliveryError as e:
            res = e
        if len(self._resolved) >= CACHE_MAX:
            self._resolved.clear()
        self._resolved[address] = (now + self.cache_ttl, res)
        if isinstance(res, DeliveryError):
            raise res
        return res

    def _resolve(self, address: str) -> Resolution:
        try:
            res = self.directory.resolve(address)
        except DirectoryError as e:
            raise DeliveryError(str(e), temporary=False, status="5.4.6") from None
        except ValueError as e:
            raise DeliveryError(f"bad address: {e}", temporary=False, status="5.1.3") from None
        if res is None:
            raise UnknownRecipient(address)
        if not res.local_accounts and not res.remote:
            # aliases that only lead back to themselves
            raise DeliveryError("alias loop: no mailbox", temporary=False, status="5.4.6")
        return res

    async def targets(
        self, local_accounts: Iterable[tuple[str, str]], recipient: Mapping[str, str] | None = None
    ) -> list[Target]:
        """(account, detail) pairs -> one Target per account (a message is filed once per
        account even when several recipients or aliases lead to it). `recipient`: the address
        the client gave (RCPT TO) for each account, Sieve's envelope "to" (an alias, say)."""
        out: dict[str, Target] = {}
        for account, detail in local_accounts:
            if account in out:
                continue
            local, _, domain = account.rpartition("@")
            address = f"{local}+{detail}@{domain}" if detail and local else account
            if recipient is not None:
                address = recipient.get(account, address)
            # (most have no folder to look for: no coroutine for them)
            folder = await self._folder_for(account, detail) if detail else "INBOX"
            out[account] = Target(account, folder, address)
        return list(out.values())

    async def junk_targets(self, targets: Iterable[Target]) -> list[Target]:
        """The same accounts' Junk folders (the mailbox with the \\Junk special use, RFC 6154),
        for mail judged suspicious; an account without one keeps its target."""
        out: list[Target] = []
        for t in targets:
            junk = None
            if not self._uses_mbox(t.account):
                try:
                    acct = await self.store.account(t.account)
                    for info in await acct.list_mailboxes():
                        if info.selectable and info.special_use == "\\Junk":
                            junk = info.name
                            break
                except AccountNotFound:
                    pass
            out.append(dataclasses.replace(t, mailbox=junk) if junk else t)
        return out

    async def _folder_for(self, account: str, detail: str) -> str:
        if not (self.plus_folders and detail) or self._uses_mbox(account):
            return "INBOX"
        try:
            acct = await self.store.account(account)
        except AccountNotFound:
            return "INBOX"
        try:
            info = await acct.get_mailbox(detail)
            return info.name if info.selectable else "INBOX"
        except (MailboxNotFound, InvalidName):
            pass
        # The directory lower-cases addresses (alice+Lists@ arrives as "lists"): match folder
        # names without regard to case, the exact name first.
        wanted = detail.casefold()
        for info in await acct.list_mailboxes():
            if info.selectable and info.name.casefold() == wanted:
                return info.name
        return "INBOX"

    # ---- delivery ---------------------------------------------------------------------------

    async def deliver(
        self,
        targets: Sequence[Target],
        source: bytes | Path,
        mail_from: str,
        then: Callable[[], Awaitable[object]] | None = None,
        delivery_id: str | None = None,
        crlf: bool = False,
    ) -> Receipt:
        """Deliver the message (bytes, or a file on the data dir's filesystem; already carrying
        Return-Path) to every target,
        atomically; then run `then` (e.g. queueing the remote recipients) before committing.
        Raises DeliveryError, or what `then` raised; either way nothing was delivered anywhere,
        except with a `delivery_id`: then the store's part stays (a crash at the same point would
        leave it too) and the caller's retry with the same id completes the rest without a second
        copy (the store and the queue both make a repeated id a no-op). Classic mbox spools have
        no ids: their part is always rolled back. `crlf`: the caller checked that every line of
        `source` ends in CRLF (store.MailStore.deliver); said for the message as given, so not
        for a copy Sieve edited.
        """
        in_store: list[Target] = []
        in_mbox: list[str] = []
        for t in targets:
            if self._uses_mbox(t.account):
                in_mbox.append(t.account)
            else:
                in_store.append(t)
        plans: dict[str, Plan] = {}
        body = b""
        if self.sieve is not None and in_store and _any_script(self.sieve, in_store):
            plans, body = await self._sieve_plans(self.sieve, in_store, source, mail_from)
        held: list[Held] = []
        if in_mbox:
            try:
                held = await asyncio.to_thread(self.mbox.acquire, in_mbox)
            except MboxLockTimeout as e:
                raise DeliveryError(f"mailbox locked: {e}", status="4.2.0") from None
            except OSError as e:
                raise _os_error(e) from e
        appended: tuple[AppendResult, ...] = ()
        try:
            if held:
                try:
                    await asyncio.to_thread(
                        self.mbox.write_all, held, source, mail_from, time.time()
                    )
                except OSError as e:
                    raise _os_error(e) from e
            if plans:
                appended = await self._sieve_deliver(in_store, plans, source, body, delivery_id)
            elif in_store:
                deliveries = [Delivery(account=t.account, mailbox=t.mailbox) for t in in_store]
                appended = await self._append(deliveries, source, delivery_id, crlf)
            if then is not None:
                await then()
            if plans:  # redirects and rejections: the message's only way on, so part of it
                await self._sieve_send(plans, delivery_id, required=True)
        except BaseException:
            if held:
                await asyncio.to_thread(self.mbox.rollback, held)
            if appended and delivery_id is None:
                await self._undo(appended)
            raise
        finally:
            if held:
                await asyncio.to_thread(self.mbox.release, held)
        if plans:
            await self._sieve_send(plans, delivery_id, required=False)
            await self._sieve_commit(plans)
        for account in {t.account for t in in_store}:
            await self._warn_quota(account)
        return Receipt(appended, tuple(h.account for h in held))

    # ---- Sieve ------------------------------------------------------------------------------

    async def _sieve_plans(
        self, sieve: SieveFilter, in_store: Sequence[Target], source: bytes | Path, mail_from: str
    ) -> tuple[dict[str, Plan], bytes]:
        """Each scripted account's plan, and the message body (after the header) they share.
        A failure here is the script's, never the message's: that account keeps the message."""
        try:
            scripted = [t for t in in_store if sieve.has_script(t.account)]
        except OSError:
            log.exception("sieve: cannot read the script area; delivering without filters")
            return {}, b""
        if not scripted:
            return {}, b""
        try:
            data = (
                source if isinstance(source, bytes) else await asyncio.to_thread(source.read_bytes)
            )
        except OSError as e:
            raise _os_error(e) from e
        msg = await asyncio.to_thread(parse_message, data)
        plans: dict[str, Plan] = {}
        can_send = self.outbound is not None
        for t in scripted:
            try:
                acct = await self.store.account(t.account)
                boxes = {i.name for i in await acct.list_mailboxes()}
                aliases = await asyncio.to_thread(self.directory.aliases_of, t.account)
                plan = await asyncio.to_thread(
                    sieve.plan, t.account, t.address or t.account, mail_from, msg, boxes, aliases,
                    can_send,
                )  # fmt: skip
            except Exception as e:
                log.exception("sieve %s: filtering failed; message kept", t.account)
                header = msg.header_bytes(msg.root)
                plan = Plan(t.account, [Copy("", header=header)], error=repr(e))
            if plan is not None:
                plans[t.account] = plan
        return plans, msg.data[msg.root.body_start :]

    async def _sieve_mailbox(self, account: str, box: str, create: bool) -> str:
        """The mailbox a copy goes to: `box` if it exists (or :create made it), else INBOX
        (RFC 5228 4.1: a fileinto that cannot be done falls back to keeping the message)."""
        if box.upper() == "INBOX":
            return "INBOX"
        acct = await self.store.account(account)
        try:
            info = await acct.get_mailbox(box)
            return info.name if info.selectable else "INBOX"
        except InvalidName:
            return "INBOX"
        except MailboxNotFound:
            pass
        if not create:
            log.info("sieve %s: fileinto %r: no such mailbox; kept in INBOX", account, box)
            return "INBOX"
        try:
            await acct.create_mailbox(box)  # RFC 5490 3.2 (:create)
        except MailboxExists:
            pass
        except InvalidName:
            return "INBOX"
        return box

    async def _sieve_deliver(
        self,
        in_store: Sequence[Target],
        plans: dict[str, Plan],
        source: bytes | Path,
        body: bytes,
        delivery_id: str | None,
    ) -> tuple[AppendResult, ...]:
        # One store delivery per distinct message: the original, and each edited header.
        groups: dict[bytes | None, list[Delivery]] = {None: []}
        for t in in_store:
            plan = plans.get(t.account)
            if plan is None:
                groups[None].append(Delivery(t.account, t.mailbox))
                continue
            seen: set[str] = set()
            for c in plan.copies:
                box = await self._sieve_mailbox(t.account, c.mailbox or t.mailbox, c.create)
                if box in seen:
                    continue
                seen.add(box)
                groups.setdefault(c.header, []).append(Delivery(t.account, box, c.flags))
        out: list[AppendResult] = []
        try:
            for k, (header, deliveries) in enumerate(groups.items()):
                if not deliveries:
                    continue
                src = source if header is None else header + body
                did = delivery_id if delivery_id is None or k == 0 else f"{delivery_id}.{k}"
                out.extend(await self._append(deliveries, src, did))
            for account, plan in plans.items():
                if plan.notice is not None:  # the script is broken: tell the user
                    did = None if delivery_id is None else f"{delivery_id}.notice.{account}"
                    out.extend(await self._append([Delivery(account)], plan.notice, did))
        except BaseException:
            if out and delivery_id is None:
                await self._undo(out)
            raise
        return tuple(out)

    async def _sieve_send(
        self, plans: dict[str, Plan], delivery_id: str | None, required: bool
    ) -> None:
        for plan in plans.values():
            for i, s in enumerate(plan.sends):
                if s.required != required:
                    continue
                if self.outbound is None:
                    if required:  # pragma: no cover - the filter keeps instead when it cannot send
                        raise DeliveryError(f"cannot send the {s.what}: no outbound queue")
                    continue
                # the same id on a retry of the same delivery: the queue sends it once
                key = None if delivery_id is None else f"sieve:{delivery_id}:{plan.account}:{i}"
                try:
                    await self.outbound(s.mail_from, s.recipients, s.data, key, s.trusted)
                except Exception as e:
                    if required:
                        log.warning("sieve %s: cannot queue the %s: %r", plan.account, s.what, e)
                        raise DeliveryError(f"cannot queue the {s.what}: {e}") from e
                    log.warning("sieve %s: %s not sent: %r", plan.account, s.what, e)
                    if s.what == "vacation":
                        plan.replies.clear()  # not sent: do not count it as the reply

    async def _sieve_commit(self, plans: dict[str, Plan]) -> None:
        assert self.sieve is not None
        for plan in plans.values():
            if not (plan.replies or plan.duplicates):
                continue
            try:
                await asyncio.to_thread(self.sieve.commit, plan)
            except Exception:  # the message is delivered; at worst a second vacation reply
                log.exception("sieve %s: cannot record the vacation/duplicate state", plan.account)

    async def _warn_quota(self, account: str) -> None:
        """RFC 9208 leaves warnings to the server: past 90 % of a limit the owner gets one
        message in the INBOX (again only after usage went back under). It never fails the
        delivery that is already done."""
        try:
            acct = self._cached_account(account) or await self._account(account)
            q = await acct.quota_warning()
            if q is None:
                return
            await self.store.deliver([Delivery(account)], quota_warning_message(account, q))
        except OverQuota:
            log.warning("delivery: no room left for the quota warning of %s", account)
        except Exception:
            log.exception("delivery: quota warning for %s failed", account)

    async def deliver_to(
        self, address: str, mail_from: str, data: bytes, forward: Forward | None
    ) -> str:
        """Deliver `data` (as received, without Return-Path) to one local address: aliases
        expanded, remote alias targets handed to `forward` inside the same all-or-nothing
        delivery. For mail that is already ours (the queue's DSNs and local recipients). Returns
        what happened ("delivered locally" or "forwarded"); raises DeliveryError.
        """
        res = await asyncio.to_thread(self.resolve, address)
        targets = await self.targets(
            res.local_accounts, {a: address for a, _ in res.local_accounts}
        )
        if res.remote and forward is None:
            raise DeliveryError("cannot forward alias targets")
        remote = tuple(res.remote)

        async def then() -> None:
            assert forward is not None
            await forward(remote)

        if not targets:
            await then()
            return "forwarded"
        # RFC 5321 4.4: the delivering MTA records the reverse-path in Return-Path.
        message = f"Return-Path: <{mail_from}>\r\n".encode() + data
        await self.deliver(targets, message, mail_from, then if remote else None)
        return "delivered locally"

    def _cached_account(self, account: str) -> AccountStore | None:
        """The remembered handle, if still fresh (the usual case: no coroutine for it)."""
        hit = self._accounts.get(account)
        return hit[1] if hit is not None and hit[0] > self._clock() else None

    async def _account(self, account: str) -> AccountStore:
        """The store's handle of `account`, remembered for `cache_ttl` seconds (an account
        deleted meanwhile is seen within that time, as the directory's answers are)."""
        now = self._clock()
        hit = self._accounts.get(account)
        if hit is not None and hit[0] > now:
            return hit[1]
        acct = await self.store.account(account)
        if len(self._accounts) >= CACHE_MAX:
            self._accounts.clear()
        self._accounts[account] = (now + self.cache_ttl, acct)
        return acct

    def _uses_mbox(self, account: str) -> bool:
        now = self._clock()
        hit = self._mbox.get(account)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            mbox = self.directory.delivery_of(account) == "mbox"
        except Exception:  # a directory failure must not pick the wrong target silently
            log.exception("delivery: cannot read the delivery setting of %s", account)
            raise DeliveryError("directory unavailable") from None
        if len(self._mbox) >= CACHE_MAX:
            self._mbox.clear()
        self._mbox[account] = (now + self.cache_ttl, mbox)
        return mbox

    async def _append(
        self,
        deliveries: Sequence[Delivery],
        source: bytes | Path,
        delivery_id: str | None,
        crlf: bool = False,
    ) -> tuple[AppendResult, ...]:
        try:
            if crlf:
                return tuple(await self.store.deliver(deliveries, source, delivery_id, crlf=True))
            return tuple(await self.store.deliver(deliveries, source, delivery_id))
        except AccountNotFound as e:
            # The account vanished between RCPT and the end of data: temporary, so the client
            # retries and then hears 550 at RCPT for that address alone.
            raise DeliveryError(f"mailbox unavailable: {e}") from None
        except MailboxNotFound:
            # a plus-folder (or Sieve's folder) removed meanwhile: the INBOX is always there
            if all(d.mailbox == "INBOX" for d in deliveries):
                raise DeliveryError("INBOX missing") from None
            inbox: dict[str, Delivery] = {}
            for d in deliveries:
                inbox.setdefault(d.account, Delivery(d.account, "INBOX", d.flags))
            return await self._append(list(inbox.values()), source, delivery_id, crlf)
        except OverQuota as e:
            raise DeliveryError(f"mailbox full: {e}", status="4.2.2") from None
        except StorageFull as e:  # chained: the server logs which (ENOSPC or EDQUOT)
            raise DeliveryError("insufficient system storage", status="4.3.1") from e
        except StoreError as e:
            raise DeliveryError(f"store refused the message: {e}") from None
        except OSError as e:
            raise _os_error(e) from e

    async def _undo(self, appended: Sequence[AppendResult]) -> None:
        """Remove what this delivery added to the store, because a later step failed."""
        for r in appended:
            try:
                acct = await self.store.account(r.account)
                await acct.delete_messages(r.mailbox_id, [r.uid])
            except Exception:
                log.exception("delivery: could not undo %s uid %d", r.account, r.uid)


def _any_script(sieve: SieveFilter, in_store: Sequence[Target]) -> bool:
    """Whether a target has an active Sieve script (remembered a second by the filter): most
    have none, and then no coroutine for the plans. An unreadable script area says yes, so
    _sieve_plans logs it."""
    try:
        return any(sieve.has_script(t.account) for t in in_store)
    except OSError:
        return True


def quota_warning_message(account: str, q: Quota) -> bytes:
    """The message that tells an account's owner the mailbox is nearly full."""
    domain = account.rpartition("@")[2] or "localhost"
    lines = []
    if q.storage_limit is not None:
        pct = 100 * q.storage // max(q.storage_limit, 1)
        lines.append(f"Storage: {q.storage} of {q.storage_limit} octets ({pct} %).")
    if q.message_limit is not None:
        pct = 100 * q.messages // max(q.message_limit, 1)
        lines.append(f"Messages: {q.messages} of {q.message_limit} ({pct} %).")
    msg = EmailMessage()
    msg["From"] = f"Mail System <postmaster@{domain}>"
    msg["To"] = account
    msg["Subject"] = "Your mailbox is almost full"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834 5
    msg.set_content(
        "Your mailbox has used more than 90 % of its quota:\n\n"
        + "\n".join(lines)
        + "\n\nWhen it is full, new mail is refused (senders are told to try again later)."
        "\nDelete or archive messages, and empty the Trash, to make room.\n"
    )
    return msg.as_bytes(policy=email.policy.SMTP)


def _os_error(e: OSError) -> DeliveryError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DeliveryError("insufficient system storage", status="4.3.1")
    log.error("delivery: I/O error: %s", e)
    return DeliveryError(f"local I/O error: {e.strerror or e}")

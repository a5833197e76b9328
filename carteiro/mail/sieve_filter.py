"""Runs an account's active Sieve script on a message being delivered and turns the actions into
a plan: the copies to store (mailbox, flags, edited header) and the messages to queue (redirects,
vacation replies, rejections, notifications), with the state to record once delivery succeeded.

A script that fails (compile or runtime error, CPU limit) never loses the message: the plan is
a keep into the default mailbox, with an X-Sieve-Error header field telling the user why.
Blocking (reads the script, SQLite, CPU): call `plan` and `commit` from a thread.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path

from carteiro import __version__
from carteiro.mail.sieve_scripts import GLOBAL, ScriptStore
from carteiro.mail.sieve_state import SieveState
from carteiro.mime.parse import Message
from carteiro.sieve.actions import (
    Action,
    Discard,
    DuplicateMark,
    FileInto,
    Keep,
    Notify,
    Redirect,
    Reject,
    Vacation,
)
from carteiro.sieve.autoreply import (
    is_automatic,
    notification,
    rejection,
    vacation_refusal,
    vacation_reply,
)
from carteiro.sieve.compiler import Script, compile_script
from carteiro.sieve.errors import SieveSyntaxError
from carteiro.sieve.headers import HeaderList
from carteiro.sieve.interp import Context, Envelope, Limits, evaluate

log = logging.getLogger("carteiro.sieve")

# (mail_from, recipients, message, dedupe key, trusted) -> queued. trusted: the queue may DKIM-sign
# it for our domains (our own replies); a redirected stranger's message is not.
Outbound = Callable[[str, tuple[str, ...], bytes, str | None, bool], Awaitable[object]]

SIEVE_DIR = "sieve"
STATE_FILE = "state.sqlite"
REDIRECT_MARK = "X-Sieve-Redirected-From"
MAX_REDIRECT_HOPS = 5  # our redirect marks in one message before we stop redirecting it
CACHE_MAX = 1000
ACTIVE_TTL = 1.0


@dataclass(frozen=True, slots=True)
class Copy:
    mailbox: str  # "" = the target's default mailbox
    flags: frozenset[str] = frozenset()
    header: bytes | None = None  # a replacement header block (editheader, error note)
    create: bool = False


@dataclass(frozen=True, slots=True)
class Send:
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    required: bool  # the message's only way on (redirect, rejection): failing fails delivery
    trusted: bool
    what: str


@dataclass(slots=True)
class Plan:
    account: str
    copies: list[Copy] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    replies: list[tuple[str, str, int]] = field(default_factory=list)  # handle, sender, seconds
    duplicates: list[DuplicateMark] = field(default_factory=list)
    error: str | None = None
    notice: bytes | None = None  # a message for the user's INBOX: the script is broken


def _note(header: bytes, error: str) -> bytes:
    """The header with an X-Sieve-Error field after Return-Path (the note to the user)."""
    text = error.replace("\r", " ").replace("\n", " ")[:900]
    note = f"X-Sieve-Error: {text}\r\n".encode("utf-8", "replace")
    if header[:12].lower() == b"return-path:":
        end = header.find(b"\n") + 1
        return header[:end] + note + header[end:]
    return note + header


def notice(host: str, account: str, name: str, error: str, now: float, message_id: str) -> bytes:
    """The note a user finds in the INBOX when the active script fails."""
    text = (
        f"Your mail filter (Sieve script {name!r}) could not be run on a message delivered to\n"
        f"{account}:\n\n    {error}\n\n"
        "The message was kept in your INBOX (it carries an X-Sieve-Error header field), and so\n"
        "will every message until the script is fixed: check it with your mail client's filter\n"
        "editor (ManageSieve) or `carteiro sieve check`.\n"
    )
    date = format_datetime(datetime.fromtimestamp(now).astimezone())
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>\r\nTo: <{account}>\r\n"
        f"Subject: Your mail filter {name!r} failed\r\nDate: {date}\r\n"
        f"Message-ID: {message_id}\r\nAuto-Submitted: auto-generated\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + text.replace("\n", "\r\n")
    ).encode("utf-8", "replace")


def _strip_return_path(header: bytes) -> bytes:
    while header[:12].lower() == b"return-path:":
        end = header.find(b"\n")
        header = header[end + 1 :] if end >= 0 else b""
    return header


def open_sieve_filter(
    data_dir: Path,
    hostname: str,
    *,
    max_scripts: int = 20,
    max_script_size: int = 64 * 1024,
    max_cpu: int = 2_000_000,
    max_redirects: int = 4,
) -> SieveFilter:
    """The filter over DATA/sieve (scripts and state), as deliveries use it."""
    root = data_dir / SIEVE_DIR
    return SieveFilter(
        ScriptStore(root, max_scripts, max_script_size),
        SieveState(root / STATE_FILE),
        hostname,
        limits=Limits(cost=max_cpu, redirects=max_redirects),
    )


class SieveFilter:
    def __init__(
        self,
        scripts: ScriptStore,
        state: SieveState,
        hostname: str,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.scripts = scripts
        self.state = state
        self.hostname = hostname
        self.limits = limits or Limits()
        self.clock = clock
        self.environment = {
            "domain": hostname.partition(".")[2] or hostname,
            "host": hostname,
            "location": "MDA",
            "name": "carteiro",
            "phase": "during",
            "version": __version__,
            **(environment or {}),
        }
        self._active: dict[str, tuple[float, bool]] = {}
        self._noticed: set[tuple[str, str, tuple[int, int] | None, str]] = set()
        self._compiled: dict[
            tuple[str, str], tuple[tuple[int, int], Script | SieveSyntaxError]
        ] = {}

    def has_script(self, account: str) -> bool:
        """Whether the account has an active script: one stat of its .active file, remembered
        for a second (a busy MX asks for the same accounts again and again; a script activated
        over ManageSieve applies within that second). Cheap enough for the event loop."""
        now = time.monotonic()
        hit = self._active.get(account)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = self.scripts.has_active(account)
        if len(self._active) >= CACHE_MAX:
            self._active.clear()
        self._active[account] = (now + ACTIVE_TTL, found)
        return found

    def _script(self, account: str, name: str) -> Script | SieveSyntaxError | None:
        st = self.scripts.stat(account, name)
        if st is None:
            return None
        hit = self._compiled.get((account, name))
        if hit is not None and hit[0] == st:
            return hit[1]
        text = self.scripts.get(account, name)
        if text is None:
            return None
        try:
            compiled: Script | SieveSyntaxError = compile_script(text)
        except SieveSyntaxError as e:
            compiled = e
        if len(self._compiled) >= CACHE_MAX:
            self._compiled.clear()
        self._compiled[(account, name)] = (st, compiled)
        return compiled

    def _included(self, owner: str, name: str) -> str | Script | None:
        """An included script, compiled once per file version like the active one (its text
        when it does not compile, so that the interpreter reports the error)."""
        compiled = self._script(owner, name)
        if isinstance(compiled, SieveSyntaxError):
            return self.scripts.get(owner, name)
        return compiled

    def _message_id(self) -> str:
        return f"<sieve.{int(self.clock())}.{secrets.token_hex(8)}@{self.hostname}>"

    def plan(
        self,
        account: str,
        recipient: str,
        mail_from: str,
        msg: Message,
        mailboxes: set[str],
        user_addresses: Iterable[str] = (),
        can_send: bool = True,
    ) -> Plan | None:
        """The plan for `account`, or None when it has no active script (plain delivery)."""
        name = self.scripts.active_name(account)
        if name is None:
            return None
        header = msg.header_bytes(msg.root)
        script = self._script(account, name)
        if script is None:
            return None  # deleted meanwhile
        if isinstance(script, SieveSyntaxError):
            err = f"script {name!r} does not compile: {script}"
            return self._failed(account, name, header, err)
        now = self.clock()
        ctx = Context(
            now=datetime.fromtimestamp(now).astimezone(),
            mailbox_exists=lambda box: box in mailboxes or box.upper() == "INBOX",
            duplicate_seen=lambda key: self.state.seen(account, key, now),
            load_script=lambda loc, n: self._included(GLOBAL if loc == "global" else account, n),
            environment=self.environment,
            limits=self.limits,
        )
        result = evaluate(script, msg, Envelope(mail_from, recipient), ctx)
        if result.error is not None:
            err = f"script {name!r} failed: {result.error}"
            return self._failed(account, name, header, err)
        return self._actions(
            account,
            recipient,
            mail_from,
            msg,
            result.actions,
            user_addresses,
            result.duplicates,
            now,
            can_send,
        )

    def _failed(self, account: str, name: str, header: bytes, err: str) -> Plan:
        """Keep the message with an X-Sieve-Error note; and, once per script version and error
        (per process), a short notice in the INBOX, so the user learns the filter is broken."""
        log.warning("sieve %s: %s; message kept", account, err)
        plan = Plan(account, [Copy("", header=_note(header, err))], error=err)
        key = (account, name, self.scripts.stat(account, name), err)
        if key not in self._noticed:
            if len(self._noticed) >= CACHE_MAX:
                self._noticed.clear()
            self._noticed.add(key)
            plan.notice = notice(
                self.hostname, account, name, err, self.clock(), self._message_id()
            )
        return plan

    def _actions(
        self,
        account: str,
        recipient: str,
        mail_from: str,
        msg: Message,
        actions: Sequence[Action],
        user_addresses: Iterable[str],
        duplicates: list[DuplicateMark],
        now: float,
        can_send: bool = True,
    ) -> Plan:
        plan = Plan(account, duplicates=duplicates)
        headers = HeaderList(msg)
        header = msg.header_bytes(msg.root)
        body = msg.data[msg.root.body_start :]
        marks = [v.strip().lower() for v in headers.values(REDIRECT_MARK)]
        stored: dict[str, int] = {}  # mailbox -> its copy in plan.copies
        dt_now = datetime.fromtimestamp(now).astimezone()

        def store(
            box: str,
            flags: tuple[str, ...],
            edited: bytes | None,
            create: bool,
            implicit: bool = False,
        ) -> None:
            key = box.upper() if box.upper() == "INBOX" or box == "" else box
            key = "" if key == "INBOX" else key
            at = stored.get(key)
            if at is None:
                stored[key] = len(plan.copies)
                plan.copies.append(Copy(key, frozenset(flags), edited, create))
            elif not implicit:
                # RFC 5228 2.10.3: one copy per mailbox. Named again, it takes the later
                # action's flags and header, as Pigeonhole does (`fileinto "X"; ... fileinto
                # :flags "\\Seen" "X"` files X once, seen); the implicit keep changes nothing
                # an explicit action already stored.
                old = plan.copies[at]
                plan.copies[at] = Copy(key, frozenset(flags), edited, create or old.create)

        for a in actions:
            if isinstance(a, Keep):
                store("", a.flags, a.header, False, a.implicit)
            elif isinstance(a, FileInto):
                store(a.mailbox, a.flags, a.header, a.create)
            elif isinstance(a, Redirect | Reject) and not can_send:
                what = "redirect" if isinstance(a, Redirect) else "reject"
                store("", (), _note(header, f"{what} not possible here (no outbound queue)"), False)
            elif isinstance(a, Redirect):
                if account.lower() in marks or len(marks) >= MAX_REDIRECT_HOPS:
                    # a loop (two accounts redirecting to each other) or too many hops: keep
                    log.warning("sieve %s: redirect to %s refused (loop); kept", account, a.address)
                    store(
                        "", (), _note(header, f"redirect to {a.address} refused: mail loop"), False
                    )
                    continue
                out = f"{REDIRECT_MARK}: {account}\r\n".encode() + _strip_return_path(
                    a.header or header
                )
                # RFC 5228 4.2: the envelope sender is ours to choose. The user's address, so
                # SPF passes and bounces reach the user; a bounce (null sender) stays one.
                sender = account if mail_from else ""
                plan.sends.append(Send(sender, (a.address,), out + body, True, False, "redirect"))
            elif isinstance(a, Reject):
                if not mail_from or is_automatic(headers):
                    continue  # RFC 5429 2.1: never reject a bounce or robot mail: discard it
                data = rejection(
                    headers, _strip_return_path(header), a.reason, mail_from, recipient,
                    self.hostname, dt_now, self._message_id(), a.extended,
                )  # fmt: skip
                plan.sends.append(Send("", (mail_from,), data, True, True, "reject"))
            elif isinstance(a, Vacation):
                why = vacation_refusal(headers, mail_from, (recipient, account, *user_addresses), a)
                if why is not None:
                    log.info("sieve %s: no vacation reply to <%s>: %s", account, mail_from, why)
                    continue
                if a.seconds and self.state.replied(account, a.handle, mail_from, now):
                    continue  # RFC 5230 4.2: once per sender per period
                data = vacation_reply(headers, a, mail_from, recipient, dt_now, self._message_id())
                # RFC 3834 3.3 / RFC 5230 5.8: to the envelope sender, from the null path
                plan.sends.append(Send("", (mail_from,), data, False, True, "vacation"))
                if a.seconds:
                    plan.replies.append((a.handle, mail_from, a.seconds))
            elif isinstance(a, Notify):
                if is_automatic(headers) == "Auto-Submitted":
                    continue  # RFC 5436 2.7: no notification about automatic mail
                data = notification(headers, a, recipient, dt_now, self._message_id())
                plan.sends.append(Send("", a.recipients, data, False, True, "notify"))
            elif isinstance(a, Discard):
                pass
        return plan

    def commit(self, plan: Plan) -> None:
        """Record what a successful delivery must remember (vacation replies, duplicate ids)."""
        now = self.clock()
        for handle, sender, seconds in plan.replies:
            self.state.record_reply(plan.account, handle, sender, now, now + seconds)
        for d in plan.duplicates:
            self.state.record_id(plan.account, d.key, now, now + d.seconds, d.last)

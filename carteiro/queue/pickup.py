"""The server's pickup: turns maildrop files (left by `carteiro-sendmail`) into queued messages.

Like Postfix's pickup + cleanup for local submissions: the sender defaults to the submitter's login
name (the drop file's owner, never a name written inside it) at the origin domain, unqualified
addresses get @origin, a Received: line names the uid, and Date:, Message-ID: and From: are added
when missing. The queue commit comes first, the unlink second; a crash between them is caught by
the spool's dedupe key (the drop's name), so a drop is queued exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import pwd
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from carteiro.core.address import AddressError, parse_address
from carteiro.queue.api import Envelope, QueuedRecipient, Spool
from carteiro.queue.dsn import RecipientReport, build_dsn, header_block
from carteiro.queue.maildrop import (
    Drop,
    MaildropError,
    TooBig,
    ensure_maildrop,
    list_drops,
    open_drop,
    stale_temps,
)

log = logging.getLogger("carteiro.queue")

HEAD_MAX = 256 * 1024  # header sections longer than this are not searched for missing fields
CORRUPT = "corrupt"  # under DATA/queue: drops that could not be understood, kept for a human
_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


@dataclass(frozen=True)
class PickupConfig:
    hostname: str
    origin: str  # the domain for unqualified addresses and the default sender
    max_size: int


def login_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def qualify(address: str, origin: str) -> str:
    """`alice` -> `alice@origin`; a full address is returned as given (checked by the caller)."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    if "@" not in address:
        return f"{address}@{origin}"
    return address


def header_names(head: bytes) -> set[bytes]:
    """Field names of a header section (lower case)."""
    return {m.group(1).lower() for m in _NAME.finditer(head)}


def header_end(buf: bytes) -> int:
    """Offset just past the blank line ending the header section, or -1."""
    if buf.startswith(b"\r\n"):
        return 2
    i = buf.find(b"\r\n\r\n")
    return i + 4 if i >= 0 else -1


class Pickup:
    """Scans DATA/queue/maildrop; `scan()` is safe to call from several wake-ups at once."""

    def __init__(
        self,
        root: Path,
        spool: Spool,
        config: PickupConfig,
    ) -> None:
        self.root = Path(root)
        self.dir = ensure_maildrop(self.root)
        self.incoming = self.root / "incoming"
        self.spool = spool
        self.config = config
        self._lock = asyncio.Lock()
        self.picked = 0

    async def scan(self, include_deferred: bool = False) -> list[tuple[str, str]]:
        """Queue every complete drop (deferred ones, from `sendmail -odq`, only with
        `include_deferred`: a queue run). Returns [(drop name, queue id)]."""
        async with self._lock:
            out: list[tuple[str, str]] = []
            for tmp in await asyncio.to_thread(lambda: list(stale_temps(self.dir))):
                with contextlib.suppress(OSError):
                    tmp.unlink()
            for path in await asyncio.to_thread(lambda: list(list_drops(self.dir))):
                try:
                    qid = await self._one(path, include_deferred)
                except Exception as e:
                    # the queue is full or broken: leave the drop for the next scan
                    log.warning("pickup: %s: cannot queue it now: %r", path.name, e)
                    break
                if qid is not None:
                    out.append((path.name, qid))
            return out

    async def _one(self, path: Path, include_deferred: bool) -> str | None:
        try:
            drop, f = await asyncio.to_thread(open_drop, path, self.config.max_size)
        except FileNotFoundError:
            return None  # another scan took it
        except TooBig as e:
            # accepted by sendmail (exit 0), so never dropped silently: the submitter hears
            await self._bounce(path, e.drop, "5.3.4", f"message too big for this system: {e}")
            return None
        except (MaildropError, OSError) as e:
            log.warning("pickup: %s is not a usable drop (%s): moved to %s/", path.name, e, CORRUPT)
            await asyncio.to_thread(self._set_aside, path)
            return None
        try:
            if drop.envelope.defer and not include_deferred:
                return None
            envelope = self._envelope(drop)
            if envelope is None:
                await self._bounce(path, drop, "5.1.3", "no valid recipient address")
                return None
            tmp = await asyncio.to_thread(self._copy, drop, f, envelope.mail_from)
        finally:
            f.close()
        try:
            body = "8BITMIME" if await asyncio.to_thread(_has_8bit, tmp) else "7BIT"
            envelope = Envelope(
                mail_from=envelope.mail_from,
                recipients=envelope.recipients,
                ret=envelope.ret,
                envid=envelope.envid,
                body=body,
                smtputf8=envelope.smtputf8,
                trusted=True,  # a local user of this host, as Postfix's mynetworks=127.0.0.0/8
            )
            qid = await self.spool.enqueue(envelope, tmp, dedupe_key=f"maildrop:{drop.name}")
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        # queued durably: only now may the drop go (a crash before this line: the dedupe key
        # above makes the next scan return the same queue id instead of queueing it twice)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, path)
        self.picked += 1
        log.info(
            "pickup: %s from uid %d (%s) queued as %s",
            drop.name,
            drop.uid,
            login_name(drop.uid),
            qid,
        )
        return qid

    def _envelope(self, drop: Drop) -> Envelope | None:
        env = drop.envelope
        origin = self.config.origin
        if env.sender is None:
            sender = f"{login_name(drop.uid)}@{origin}"
        elif env.sender in ("", "<>"):
            sender = ""
        else:
            sender = qualify(env.sender, origin)
        try:
            if sender:
                parse_address(sender)
        except AddressError as e:
            log.warning("pickup: %s: bad sender %r: %s", drop.name, sender, e)
            return None
        rcpts: list[QueuedRecipient] = []
        seen: set[str] = set()
        for r in env.recipients:
            addr = qualify(r, origin)
            try:
                parse_address(addr)
            except AddressError as e:
                log.warning("pickup: %s: bad recipient %r skipped: %s", drop.name, r, e)
                continue
            if addr.lower() in seen:
                continue
            seen.add(addr.lower())
            rcpts.append(QueuedRecipient(addr, tuple(n.upper() for n in env.notify)))
        if not rcpts:
            log.warning("pickup: %s: no valid recipient", drop.name)
            return None
        ret = env.ret.upper() if env.ret and env.ret.upper() in ("FULL", "HDRS") else None
        return Envelope(
            mail_from=sender,
            recipients=tuple(rcpts),
            ret=ret,
            envid=env.envid,
            smtputf8=not (sender.isascii() and all(r.address.isascii() for r in rcpts)),
        )

    def _copy(self, drop: Drop, f: object, sender: str) -> Path:
        """The message with our Received: and any missing Date:/Message-ID:/From:, in a new file
        under DATA/queue/incoming (the spool links or reads it)."""
        import typing

        src = typing.cast(typing.BinaryIO, f)
        head = src.read(HEAD_MAX)
        end = header_end(head)
        names = header_names(head[: end if end >= 0 else len(head)])
        host = self.config.hostname
        user = login_name(drop.uid)
        date = email.utils.formatdate(localtime=True)
        # RFC 5321 4.4: every hop adds its Received:; this one is local (no "from" clause),
        # Postfix's "by HOST (Postfix, from userid N)" form
        added = [f"Received: by {host} (carteiro, from userid {drop.uid} ({user}))"]
        added.append(f"\tid {drop.name}; {date}")
        if end >= 0 or len(head) < HEAD_MAX:
            # RFC 5322 3.6: Date and From are required; Message-ID should be there (3.6.4)
            if b"date" not in names:
                added.append(f"Date: {date}")
            if b"message-id" not in names:
                added.append(f"Message-ID: <{drop.name}.{secrets.token_hex(4)}@{host}>")
            if b"from" not in names:
                frm = sender or f"MAILER-DAEMON@{host}"
                name = drop.envelope.fullname
                # RFC 2047 for a non-ASCII full name (sendmail -F)
                added.append(f"From: {email.utils.formataddr((name or '', frm), 'utf-8')}")
        prefix = ("\r\n".join(added) + "\r\n").encode("utf-8")
        self.incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
        dst = self.incoming / f"pickup-{secrets.token_hex(10)}"
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(prefix)
                out.write(head)
                while block := src.read(1 << 20):
                    out.write(block)
        except BaseException:
            with contextlib.suppress(OSError):
                dst.unlink()
            raise
        return dst

    async def _bounce(self, path: Path, drop: Drop, status: str, reason: str) -> None:
        """A DSN (RFC 3464) to the submitter for a drop that cannot be queued; the drop is
        kept in corrupt/ for the administrator. The submitter is the file's owner."""
        to = f"{login_name(drop.uid)}@{self.config.origin}"
        env = drop.envelope
        if env.sender not in (None, "", "<>"):
            assert env.sender is not None
            with contextlib.suppress(AddressError):
                to = str(parse_address(qualify(env.sender, self.config.origin)))
        elif env.sender is not None:
            log.warning("pickup: %s: %s (null sender: no report)", drop.name, reason)
            await asyncio.to_thread(self._set_aside, path)
            return
        try:
            with open(path, "rb") as f:
                f.seek(drop.offset)
                head = f.read(HEAD_MAX)
            report = build_dsn(
                reporting_mta=self.config.hostname,
                sender=to,
                reports=[
                    RecipientReport(
                        address=qualify(r, self.config.origin) if r.isprintable() else "?",
                        action="failed",
                        status=status,
                        diagnostic=reason,
                        diagnostic_is_smtp=False,
                    )
                    for r in env.recipients[:100]
                ],
                original=header_block(head),
                arrival=drop.mtime,
                now=time.time(),
                ret="HDRS",
            )
            await self.spool.enqueue(
                Envelope("", (QueuedRecipient(to),), body=report.body, smtputf8=report.smtputf8),
                report.message,
                dedupe_key=f"maildrop-bounce:{drop.name}",
            )
            log.warning(
                "pickup: %s from uid %d: %s; bounced to %s", drop.name, drop.uid, reason, to
            )
        except Exception:
            log.exception("pickup: %s: could not report: %s", drop.name, reason)
        await asyncio.to_thread(self._set_aside, path)

    def _set_aside(self, path: Path) -> None:
        bad = self.root / CORRUPT
        bad.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.rename(path, bad / path.name)
        except FileNotFoundError:
            pass


def _has_8bit(path: Path) -> bool:
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            if not block.isascii():
                return True
    return False

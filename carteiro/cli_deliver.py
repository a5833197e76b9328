"""`carteiro deliver`: the standalone local delivery agent, for use from another MTA (as dovecot-lda
or procmail are used), e.g. Postfix's `mailbox_command = carteiro deliver --to "$RECIPIENT"`.

Reads one message on standard input (LF or CRLF line endings; a leading mbox `From ` line is
taken as the envelope sender), streams it to a temp file in the data dir, and delivers it through
mail.deliver: aliases, plus-addressing, store or mbox. Alias targets in other domains go to the
outbound queue (through a running server's control socket, or straight into the spool under its
lock when none runs), committed together with the local copies: all or nothing. The exit status
follows sysexits(3): 0 delivered (and queued), 67 unknown user, 65 bad address, 69 cannot deliver
here, 75 try later (nothing was delivered or queued).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from carteiro.queue.api import Envelope

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78

BLOCK = 1 << 20
QUEUE_ANSWER_TIMEOUT = 60.0  # the server fsyncs before answering; a stuck one means "try later"
QUEUE_BUSY_WAIT = 30.0  # the lock is held but nobody answers yet: a server starting, another LDA


class QueueHandoffError(Exception):
    """The outbound queue did not take the message (nothing was queued, as far as we know)."""


class EmptyMessage(ValueError):
    """Standard input held no message (SMTP has no way to send one: RFC 5321 4.1.1.4 needs at
    least the end-of-data line, and a message needs a header section, RFC 5322 3.5)."""


class _NoServer(QueueHandoffError):
    """Nobody listens on the control socket (yet): the request was never sent."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "deliver",
        help="deliver one message from standard input to a local address (an LDA)",
        description="Deliver one message from standard input to a local address, as "
        "dovecot-lda or procmail do for another MTA (e.g. Postfix's mailbox_command = carteiro "
        'deliver --to "$RECIPIENT"). Without --from, a leading mbox "From " line gives the '
        "sender, else it is unknown (Return-Path: <>). Exit status (sysexits): 0 delivered, "
        "65 bad address or empty message, 67 unknown user, 69 refused for good, 75 try later "
        "(nothing was delivered or queued).",
    )
    p.add_argument("--data", help="data dir (default: $CARTEIRO_DATA, then ./var)")
    p.add_argument("--to", required=True, metavar="ADDRESS", help="the local recipient")
    p.add_argument("--from", dest="sender", metavar="SENDER", help="the envelope sender")
    p.set_defaults(func=cmd_deliver)


def spool_stdin(
    stream: BinaryIO, tmp_dir: Path, sender: str | None
) -> tuple[Path, str | None, int]:
    """Copy the message to a new file in `tmp_dir` with CRLF line endings and a Return-Path
    (RFC 5321 4.4). With no sender given (no --from, no mbox `From ` line) the sender is
    unknown and taken as the null path, `Return-Path: <>`, as dovecot-lda takes MAILER-DAEMON:
    nothing will ever answer it. Returns (path, sender, octets of the Return-Path line we added).
    Raises EmptyMessage when there is no message at all."""
    tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = tmp_dir / f"lda-{secrets.token_hex(12)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    added = 0
    try:
        with os.fdopen(fd, "wb") as out:
            first = stream.read(BLOCK)
            if first.startswith(b"From "):
                # an mbox separator line (Postfix pipe flag F, procmail): the envelope sender
                line, nl, rest = first.partition(b"\n")
                if sender is None:
                    words = line.split()
                    sender = words[1].decode("utf-8", "replace") if len(words) > 1 else None
                    if sender == "MAILER-DAEMON":
                        sender = ""
                first = rest if nl else b""
            if not first.strip(b"\r\n"):
                raise EmptyMessage("empty message: nothing to deliver")
            if sender is None and first[:12].lower() != b"return-path:":
                sender = ""
            if sender is not None and first[:12].lower() != b"return-path:":
                rp = f"Return-Path: <{sender}>\r\n".encode()
                out.write(rp)
                added = len(rp)
            carry = b""
            block = first
            while block:
                block = carry + block
                carry = b""
                if block.endswith(b"\r"):
                    block, carry = block[:-1], b"\r"  # its LF may start the next block
                out.write(block.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
                block = stream.read(BLOCK)
            if carry:
                out.write(carry)
            out.flush()
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    return path, sender, added


async def hand_to_queue(root: Path, envelope: Envelope, source: Path, skip: int) -> str:
    """Durably queue `source` without its first `skip` octets (our Return-Path) in the outbound
    spool at `root` (DATA/queue); returns the queue id. Raises QueueHandoffError or OSError.

    A running server owns the spool (it holds root/lock and keeps the queue in memory; rows
    written behind its back would only be seen at its next start), so the copy goes to
    root/incoming/ and the server is asked, on its control socket, to enqueue it: its worker
    schedules it at once. With no server, the spool is opened here under the same lock and
    the next `carteiro serve` sends it.
    """
    from carteiro.queue.service import INCOMING, QueueBusy, QueueLock
    from carteiro.queue.spool import FileSpool
    from carteiro.servers.smtp.message import clean_tmp, without_prefix

    incoming = root / INCOMING
    incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
    await asyncio.to_thread(clean_tmp, incoming, 3600.0)  # left by a crashed LDA
    copy = await asyncio.to_thread(without_prefix, source, skip, incoming)
    assert isinstance(copy, Path)
    try:
        lock = QueueLock(root)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QUEUE_BUSY_WAIT
        while True:
            try:
                await asyncio.to_thread(lock.acquire, 0.0)
                break
            except QueueBusy:
                pass
            try:
                return await _ask_server(root, envelope, copy.name)
            except _NoServer:
                # another LDA holds the lock for a moment, or a server is starting (it takes
                # the lock before it listens): try both again
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.1)
        try:
            spool = FileSpool(root)
            try:
                await spool.open()
                return await spool.enqueue(envelope, copy)
            finally:
                await spool.close()
        finally:
            lock.release()
    finally:
        with contextlib.suppress(FileNotFoundError):
            copy.unlink()


async def _ask_server(root: Path, envelope: Envelope, name: str) -> str:
    import json

    from carteiro.queue.service import CONTROL_SOCKET, envelope_to_wire

    path = root / CONTROL_SOCKET
    request = {"op": "enqueue", "file": name, "envelope": envelope_to_wire(envelope)}
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise _NoServer(f"the queue is locked but nobody answers on {path}: {e}") from None
    except OSError as e:
        raise QueueHandoffError(f"{path}: {e}") from None
    try:
        async with asyncio.timeout(QUEUE_ANSWER_TIMEOUT):
            try:
                writer.write(json.dumps(request).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        raise QueueHandoffError("the server did not answer") from None
    except OSError as e:
        raise QueueHandoffError(f"{path}: {e}") from None
    try:
        answer: Any = json.loads(line)
    except ValueError:
        raise QueueHandoffError("no answer from the server") from None
    if not isinstance(answer, dict) or not answer.get("ok") or not answer.get("id"):
        error = answer.get("error") if isinstance(answer, dict) else None
        raise QueueHandoffError(str(error or "the server refused the message"))
    return str(answer["id"])


def _queue_outbound(
    data_dir: Path,
) -> Callable[[str, tuple[str, ...], bytes, str | None, bool], Awaitable[object]]:
    """What Sieve scripts send (redirects, vacation replies), handed to the queue like the
    message's remote recipients."""
    from carteiro.queue.api import Envelope, QueuedRecipient
    from carteiro.queue.service import QUEUE_DIR

    async def outbound(
        mail_from: str, recipients: tuple[str, ...], data: bytes, key: str | None, trusted: bool
    ) -> str:
        tmp = data_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=tmp, prefix="sieve.")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            env = Envelope(
                mail_from,
                tuple(QueuedRecipient(r) for r in recipients),
                smtputf8=not (mail_from.isascii() and all(r.isascii() for r in recipients)),
                body="8BITMIME",
                trusted=trusted,
            )
            return await hand_to_queue(data_dir / QUEUE_DIR, env, path, 0)
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    return outbound


def _is_list_address(data_dir: Path, address: str) -> bool:
    from carteiro.lists import addresses
    from carteiro.lists.db import ListDB, db_path

    path = db_path(data_dir)
    if not path.exists():
        return False
    db = ListDB(path)
    try:
        return addresses.parse(address, db.addresses().__contains__) is not None
    finally:
        db.close()


def cmd_deliver(args: argparse.Namespace) -> int:
    from carteiro.cli import CLIError, load_config

    try:
        cfg = load_config(args)
    except CLIError as e:
        print(f"carteiro deliver: {e}", file=sys.stderr)
        return EX_CONFIG
    try:
        return asyncio.run(_deliver(cfg, args.to, args.sender))
    except KeyboardInterrupt:
        return EX_TEMPFAIL


async def _deliver(cfg: object, to: str, sender: str | None) -> int:
    from carteiro.app import open_directory, open_local_delivery, open_store
    from carteiro.config import Config
    from carteiro.mail.deliver import DeliveryError, UnknownRecipient
    from carteiro.queue.api import Envelope, QueuedRecipient
    from carteiro.queue.service import QUEUE_DIR

    assert isinstance(cfg, Config)

    def fail(code: int, message: str) -> int:
        print(f"carteiro deliver: {message}", file=sys.stderr)
        return code

    directory = open_directory(cfg)
    try:
        store = open_store(cfg)
    except Exception as e:
        directory.close()
        return fail(EX_TEMPFAIL, f"cannot open the store: {e}")
    path: Path | None = None
    try:
        delivery = open_local_delivery(cfg, store, directory, _queue_outbound(cfg.data_dir))
        if _is_list_address(cfg.data_dir, to):
            # a mailing list's address: queued for it, as the SMTP server does; the server's list
            # engine expands it once the queue holds it
            try:
                message, sender, added = await asyncio.to_thread(
                    spool_stdin, sys.stdin.buffer, cfg.data_dir / "tmp", sender
                )
            except OSError as e:
                return fail(EX_TEMPFAIL, f"cannot read the message: {e}")
            path = message
            envelope = Envelope(
                mail_from=sender or "",
                recipients=(QueuedRecipient(to),),
                smtputf8=not (to.isascii() and (sender or "").isascii()),
            )
            try:
                await hand_to_queue(cfg.data_dir / QUEUE_DIR, envelope, message, added)
            except (QueueHandoffError, OSError) as e:
                return fail(EX_TEMPFAIL, f"cannot queue the message for the list {to}: {e}")
            return EX_OK
        try:
            res = delivery.resolve(to)
        except UnknownRecipient:
            return fail(EX_NOUSER, f"{to}: no such user here")
        except DeliveryError as e:
            return fail(EX_DATAERR if not e.temporary else EX_TEMPFAIL, f"{to}: {e.reason}")
        try:
            message, sender, added = await asyncio.to_thread(
                spool_stdin, sys.stdin.buffer, cfg.data_dir / "tmp", sender
            )
        except EmptyMessage as e:
            return fail(EX_DATAERR, str(e))
        except OSError as e:
            return fail(EX_TEMPFAIL, f"cannot read the message: {e}")
        path = message
        # RFC 3461 4.2: ORCPT names the address we were given when an alias expanded it
        remote = tuple(
            QueuedRecipient(addr, (), f"rfc822;{to}" if addr != to else None) for addr in res.remote
        )
        envelope = Envelope(
            mail_from=sender or "",
            recipients=remote,
            smtputf8=not (to.isascii() and (sender or "").isascii()),
        )

        async def enqueue() -> None:
            await hand_to_queue(cfg.data_dir / QUEUE_DIR, envelope, message, added)

        try:
            if res.local_accounts:
                targets = await delivery.targets(
                    res.local_accounts, {a: to for a, _ in res.local_accounts}
                )
                # the queue hand-off runs before the local copies are kept (mbox locks still
                # held): if it fails, they are undone and the MTA retries the whole message
                await delivery.deliver(targets, message, sender or "", enqueue if remote else None)
            else:
                await enqueue()
        except DeliveryError as e:
            return fail(EX_TEMPFAIL if e.temporary else EX_UNAVAILABLE, e.reason)
        except QueueHandoffError as e:
            return fail(
                EX_TEMPFAIL,
                f"cannot queue the message for {', '.join(res.remote)}: {e}; nothing delivered",
            )
        except OSError as e:
            return fail(EX_TEMPFAIL, f"I/O error: {e}; nothing delivered")
        return EX_OK
    except Exception as e:  # an unexpected failure must make the MTA retry, not lose mail
        return fail(EX_TEMPFAIL, f"delivery failed: {e!r}")
    finally:
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        await store.close()
        directory.close()

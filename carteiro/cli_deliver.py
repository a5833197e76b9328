"""`carteiro deliver`: the standalone local delivery agent, for use from another MTA (as dovecot-lda
or procmail are used), e.g. Postfix's `mailbox_command = carteiro deliver --to "$RECIPIENT"`.

Reads one message on standard input (LF or CRLF line endings; a leading mbox `From ` line is
taken as the envelope sender), streams it to a temp file in the data dir, and delivers it through
mail.deliver: aliases, plus-addressing, store or mbox, all-or-nothing. The exit status follows
sysexits(3): 0 delivered, 67 unknown user, 65 bad address, 69 cannot deliver here, 75 try later.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
from pathlib import Path
from typing import BinaryIO

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78

BLOCK = 1 << 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "deliver",
        help="deliver one message from standard input to a local address (an LDA)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--data", help="data dir (default: $CARTEIRO_DATA, then ./var)")
    p.add_argument("--to", required=True, metavar="ADDRESS", help="the local recipient")
    p.add_argument("--from", dest="sender", metavar="SENDER", help="the envelope sender")
    p.set_defaults(func=cmd_deliver)


def spool_stdin(stream: BinaryIO, tmp_dir: Path, sender: str | None) -> tuple[Path, str | None]:
    """Copy the message to a new file in `tmp_dir` with CRLF line endings and a Return-Path
    when the sender is known. Returns (path, sender)."""
    tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = tmp_dir / f"lda-{secrets.token_hex(12)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
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
            if sender is not None and not first.startswith(b"Return-Path:"):
                out.write(f"Return-Path: <{sender}>\r\n".encode())
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
    return path, sender


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
    from carteiro.app import open_directory, open_store
    from carteiro.config import Config
    from carteiro.mail.deliver import DeliveryError, LocalDelivery, UnknownRecipient

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
        delivery = LocalDelivery(
            store,
            directory,
            cfg.path(cfg.smtp.mbox_dir),
            plus_folders=cfg.smtp.plus_folder_delivery,
            mbox_lock_timeout=cfg.smtp.mbox_lock_timeout,
        )
        try:
            res = delivery.resolve(to)
        except UnknownRecipient:
            return fail(EX_NOUSER, f"{to}: no such user here")
        except DeliveryError as e:
            return fail(EX_DATAERR if not e.temporary else EX_TEMPFAIL, f"{to}: {e.reason}")
        if not res.local_accounts:
            return fail(
                EX_UNAVAILABLE,
                f"{to} forwards only to other domains ({', '.join(res.remote)}); "
                "the LDA cannot forward: deliver it over SMTP",
            )
        if res.remote:
            print(
                f"carteiro deliver: warning: not forwarding to {', '.join(res.remote)}",
                file=sys.stderr,
            )
        try:
            message, sender = await asyncio.to_thread(
                spool_stdin, sys.stdin.buffer, cfg.data_dir / "tmp", sender
            )
        except OSError as e:
            return fail(EX_TEMPFAIL, f"cannot read the message: {e}")
        path = message
        targets = await delivery.targets(res.local_accounts)
        try:
            await delivery.deliver(targets, message, sender or "")
        except DeliveryError as e:
            return fail(EX_TEMPFAIL if e.temporary else EX_UNAVAILABLE, e.reason)
        return EX_OK
    except Exception as e:  # an unexpected failure must make the MTA retry, not lose mail
        return fail(EX_TEMPFAIL, f"delivery failed: {e!r}")
    finally:
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        await store.close()
        directory.close()

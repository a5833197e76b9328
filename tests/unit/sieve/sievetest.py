"""Helpers for the Sieve unit tests: run a script on a message, describe actions briefly."""

from __future__ import annotations

from datetime import UTC, datetime

from carteiro.mime.parse import parse
from carteiro.sieve.actions import (
    Action,
    Discard,
    FileInto,
    Keep,
    Notify,
    Redirect,
    Reject,
    Result,
    Vacation,
)
from carteiro.sieve.compiler import compile_script
from carteiro.sieve.interp import Context, Envelope, evaluate

MESSAGE = (
    b"Return-Path: <joe@example.com>\r\n"
    b"Received: from mx.example.com by mail.example.test; Mon, 7 Dec 2026 09:00:00 +0000\r\n"
    b"Date: Mon, 7 Dec 2026 10:00:00 +0100\r\n"
    b"From: Joe Bloggs <Joe+Lists@Example.COM>\r\n"
    b"To: Alice <alice@example.test>, bob@example.org\r\n"
    b"Cc: carol@example.net\r\n"
    b"Subject: [acme-users] [fwd] version 1.0 is out\r\n"
    b"Message-ID: <1234@example.com>\r\n"
    b"X-Spam-Level: ***\r\n"
    b"\r\n"
    b"Hello Alice,\r\nthe new MAKE MONEY FAST release is out.\r\n"
)
NOW = datetime(2026, 12, 7, 12, 30, 15, tzinfo=UTC)


def run(
    script: str,
    message: bytes = MESSAGE,
    mail_from: str = "joe@example.com",
    rcpt_to: str = "alice@example.test",
    ctx: Context | None = None,
) -> Result:
    ctx = ctx or Context(now=NOW)
    return evaluate(compile_script(script), parse(message), Envelope(mail_from, rcpt_to), ctx)


def brief(a: Action) -> str:
    if isinstance(a, Keep):
        return "keep" + (f" {list(a.flags)}" if a.flags else "")
    if isinstance(a, FileInto):
        extra = "".join(f" :{t}" for t, on in (("copy", a.copy), ("create", a.create)) if on) + (
            f" {list(a.flags)}" if a.flags else ""
        )
        return f"fileinto{extra} {a.mailbox}"
    if isinstance(a, Redirect):
        return f"redirect{' :copy' if a.copy else ''} {a.address}"
    if isinstance(a, Discard):
        return "discard"
    if isinstance(a, Reject):
        return f"{'ereject' if a.extended else 'reject'} {a.reason}"
    if isinstance(a, Vacation):
        return f"vacation {a.seconds}s {a.reason}"
    if isinstance(a, Notify):
        return f"notify {','.join(a.recipients)}"
    raise AssertionError(a)


def actions(script: str, message: bytes = MESSAGE, **kw: object) -> list[str]:
    r = run(script, message, **kw)  # type: ignore[arg-type]
    assert r.error is None, r.error
    return [brief(a) for a in r.actions]

"""`carteiro sieve`: manage accounts' Sieve scripts (put, get, list, activate, delete), check a
script, and `test` one on a saved message, printing the actions it would take (like
Pigeonhole's sieve-test) without delivering or sending anything."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from carteiro.core.address import AddressError, canonical

EX_DATAERR, EX_NOUSER, EX_NOINPUT, EX_CONFIG = 65, 67, 66, 78


def _account(name: str) -> str:
    try:
        return canonical(name)
    except AddressError:
        return name


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.buffer.read().decode("utf-8")
    return Path(path).read_bytes().decode("utf-8")


def cmd_sieve(args: argparse.Namespace) -> int:
    from carteiro.sieve.errors import SieveSyntaxError

    if args.action == "check":
        from carteiro.sieve.compiler import compile_script

        try:
            compile_script(_read(args.script))
        except (OSError, UnicodeDecodeError) as e:
            print(f"carteiro sieve: {args.script}: {e}", file=sys.stderr)
            return EX_NOINPUT
        except SieveSyntaxError as e:
            print(f"{args.script}: {e}", file=sys.stderr)
            return EX_DATAERR
        print(f"{args.script}: valid")
        return 0
    if args.action == "test":
        return _test(args)
    return _manage(args)


def _manage(args: argparse.Namespace) -> int:
    from carteiro.app import open_directory
    from carteiro.cli import CLIError, load_config
    from carteiro.mail.sieve_filter import SIEVE_DIR
    from carteiro.mail.sieve_scripts import ScriptError, ScriptStore

    try:
        cfg = load_config(args)
    except CLIError as e:
        print(f"carteiro sieve: {e}", file=sys.stderr)
        return EX_CONFIG
    account = _account(args.user)
    directory = open_directory(cfg)
    try:
        if not directory.user_exists(account):
            print(f"carteiro sieve: no such account: {account}", file=sys.stderr)
            return EX_NOUSER
    finally:
        directory.close()
    scripts = ScriptStore(
        cfg.data_dir / SIEVE_DIR, cfg.sieve.max_scripts, cfg.sieve.max_script_size
    )
    try:
        if args.action == "list":
            for name, active in scripts.list(account):
                print(f"{name}{'  (active)' if active else ''}")
        elif args.action == "get":
            text = scripts.get(account, args.name)
            if text is None:
                raise ScriptError(f"no script named {args.name!r}")
            sys.stdout.write(text)
        elif args.action == "put":
            name = args.name or Path(args.file).stem
            try:
                text = _read(args.file)
            except (OSError, UnicodeDecodeError) as e:
                print(f"carteiro sieve: {args.file}: {e}", file=sys.stderr)
                return EX_NOINPUT
            scripts.put(account, name, text)
            if args.activate:
                scripts.set_active(account, name)
            print(f"stored {name!r} for {account}{' (active)' if args.activate else ''}")
        elif args.action == "activate":
            scripts.set_active(account, args.name)
            print(f"active script of {account}: {args.name!r}" if args.name else "no active script")
        elif args.action == "delete":
            scripts.delete(account, args.name)
            print(f"deleted {args.name!r}")
    except ScriptError as e:
        print(f"carteiro sieve: {e.message}", file=sys.stderr)
        return EX_DATAERR
    return 0


def _test(args: argparse.Namespace) -> int:
    from carteiro.mime.parse import parse
    from carteiro.sieve.actions import Discard, FileInto, Keep, Notify, Redirect, Reject, Vacation
    from carteiro.sieve.compiler import compile_script
    from carteiro.sieve.errors import SieveSyntaxError
    from carteiro.sieve.interp import Context, Envelope, evaluate

    try:
        text = _read(args.script)
        raw = Path(args.message).read_bytes()
    except (OSError, UnicodeDecodeError) as e:
        print(f"carteiro sieve: {e}", file=sys.stderr)
        return EX_NOINPUT
    try:
        script = compile_script(text)
    except SieveSyntaxError as e:
        print(f"{args.script}: {e}", file=sys.stderr)
        return EX_DATAERR
    msg = parse(raw)
    env = Envelope(args.mail_from or "", args.rcpt_to or "")
    mailboxes = set(args.mailbox or ())
    ctx = Context(
        now=datetime.now().astimezone(),
        mailbox_exists=lambda b: b.upper() == "INBOX" or b in mailboxes,
        load_script=lambda loc, name: _include(args.script, name),
        environment={"location": "MDA", "phase": "during", "name": "carteiro"},
    )
    result = evaluate(script, msg, env, ctx)
    if result.error is not None:
        print(f"runtime error: {result.error}")
        print("the message would be kept (in INBOX)")
        return EX_DATAERR
    print("Performed actions:")
    for a in result.actions:
        flags = (
            f" with flags {' '.join(a.flags)}" if isinstance(a, Keep | FileInto) and a.flags else ""
        )
        edited = " (header edited)" if isinstance(a, Keep | FileInto) and a.header else ""
        if isinstance(a, Keep):
            print(f"  * {'implicit ' if a.implicit else ''}keep into INBOX{flags}{edited}")
        elif isinstance(a, FileInto):
            opts = "".join(t for t, on in ((" :copy", a.copy), (" :create", a.create)) if on)
            print(f"  * fileinto{opts} {a.mailbox!r}{flags}{edited}")
        elif isinstance(a, Redirect):
            print(f"  * redirect{' :copy' if a.copy else ''} to <{a.address}>")
        elif isinstance(a, Discard):
            print("  * discard")
        elif isinstance(a, Reject):
            print(f"  * {'ereject' if a.extended else 'reject'}: {a.reason.strip()}")
        elif isinstance(a, Vacation):
            print(
                f"  * vacation reply (once per {a.seconds} s per sender): {a.reason.strip()[:60]}"
            )
        elif isinstance(a, Notify):
            print(f"  * notify {', '.join(a.recipients)} (importance {a.importance})")
    for d in result.duplicates:
        print(f"  (duplicate tracking: id {d.key[:12]}... for {d.seconds} s)")
    return 0


def _include(script_path: str, name: str) -> str | None:
    """`include` in `sieve test`: scripts next to the tested one, NAME.sieve."""
    if script_path == "-" or "/" in name:
        return None
    p = Path(script_path).parent / f"{name}.sieve"
    try:
        return p.read_text("utf-8")
    except OSError:
        return None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "sieve",
        help="mail filters: manage, check and test Sieve scripts",
        description="Each account has Sieve scripts (RFC 5228), one of them active: it runs on "
        "every message delivered to the account. See docs/sieve.md.",
    )
    ss = s.add_subparsers(dest="action", required=True)

    def data(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", help="data dir (default: $CARTEIRO_DATA, then ./var)")

    a = ss.add_parser("list", help="the account's scripts (the active one marked)")
    a.add_argument("user")
    data(a)
    a = ss.add_parser("get", help="print a script")
    a.add_argument("user")
    a.add_argument("name")
    data(a)
    a = ss.add_parser("put", help="store a script (checked first); FILE may be -")
    a.add_argument("user")
    a.add_argument("file")
    a.add_argument("--name", help="script name (default: the file name without extension)")
    a.add_argument("--activate", action="store_true", help="make it the active script")
    data(a)
    a = ss.add_parser("activate", help='make NAME the active script ("" for none)')
    a.add_argument("user")
    a.add_argument("name")
    data(a)
    a = ss.add_parser("delete", help="delete a script (not the active one)")
    a.add_argument("user")
    a.add_argument("name")
    data(a)
    a = ss.add_parser("check", help="compile a script; errors name line and column")
    a.add_argument("script")
    a = ss.add_parser(
        "test", help="print the actions a script would take on a message (nothing is sent)"
    )
    a.add_argument("script")
    a.add_argument("message")
    a.add_argument("--from", dest="mail_from", help="envelope sender")
    a.add_argument("--to", dest="rcpt_to", help="envelope recipient")
    a.add_argument(
        "--mailbox", action="append", help="a mailbox that exists (for mailboxexists); repeatable"
    )
    s.set_defaults(func=cmd_sieve)

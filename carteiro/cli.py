"""The `carteiro` command: init, serve, and the administration subcommands.

`--data` defaults to $CARTEIRO_DATA, then ./var. Errors are one line on stderr and a non-zero exit
status (sysexits where a caller such as an MTA relies on them); never a traceback for a user error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from carteiro import __version__
from carteiro.config import CONFIG_NAME, Config, ConfigError, default_text, load
from carteiro.core.address import AddressError, canonical, check_domain
from carteiro.core.plural import plural
from carteiro.directory.accounts import DirectoryError
from carteiro.store.api import StoreError

EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_CONFIG = 78
EX_TEMPFAIL = 75
EX_CANTCREAT = 73

DEMO_PASSWORD_FILE = "demo-password.txt"

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


class CLIError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def data_dir(args: argparse.Namespace) -> Path:
    d = args.data or os.environ.get("CARTEIRO_DATA") or "var"
    return Path(d)


def load_config(args: argparse.Namespace) -> Config:
    try:
        return load(data_dir(args))
    except ConfigError as e:
        raise CLIError(str(e), EX_CONFIG) from None


def read_password(args: argparse.Namespace) -> str:
    if getattr(args, "password_stdin", False):
        pw = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        import getpass

        pw = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != pw:
            raise CLIError("passwords differ")
    else:
        raise CLIError("give the password on standard input with --password-stdin")
    if not pw:
        raise CLIError("empty password")
    return pw


# ---- init -------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from carteiro.app import open_directory, open_store
    from carteiro.net.tls import make_self_signed

    d = data_dir(args)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    cfg_path = d / CONFIG_NAME
    try:
        domains = [check_domain(x) for x in args.domain]
    except AddressError as e:
        raise CLIError(f"--domain: {e}", EX_DATAERR) from None
    if not cfg_path.exists():
        if not domains:
            raise CLIError("--domain is required the first time")
        hostname = args.hostname or f"mail.{domains[0]}"
        try:
            hostname = check_domain(hostname)
        except AddressError as e:
            raise CLIError(f"--hostname: {e}", EX_DATAERR) from None
        cfg_path.write_text(default_text(hostname, domains))
        print(f"wrote {cfg_path}")
    cfg = load_config(args)
    cert, key = cfg.path(cfg.tls.cert), cfg.path(cfg.tls.key)
    if not cert.exists() or not key.exists():
        make_self_signed(cert, key, cfg.hostname)
        print(f"made a self-signed certificate for {cfg.hostname}: {cert}")
    directory = open_directory(cfg)
    for dom in domains:
        if dom not in cfg.domains:
            directory.add_domain(dom)
    from carteiro.mailauth.dkim_keys import ensure_defaults

    for dom in directory.domains():
        ensure_defaults(d, dom, cfg.dkim.selector)  # RSA and Ed25519 (RFC 8463)

    async def make_store() -> None:
        store = open_store(cfg)
        try:
            if args.demo:
                acct = f"demo@{directory.domains()[0]}"
                pw_file = d / DEMO_PASSWORD_FILE
                if not directory.user_exists(acct):
                    pw = secrets.token_urlsafe(12)
                    directory.add_user(acct, pw)
                    fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "w") as f:
                        f.write(f"{acct} {pw}\n")
                    print(f"demo account {acct} created (password in {pw_file})")
                await store.create_account(acct)
        finally:
            await store.close()

    asyncio.run(make_store())
    directory.close()
    print(f"data dir {d} ready")
    return 0


# ---- serve ------------------------------------------------------------------------------------


def setup_logging(level: str) -> None:
    """Plain text logging for commands other than `serve` (which configures [log] fully)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from carteiro.app import App
    from carteiro.net.listener import ListenError
    from carteiro.net.tls import TLSFileError
    from carteiro.ops.logsetup import configure
    from carteiro.ops.privileges import PrivilegeError
    from carteiro.ops.serverlock import ServerLock, ServerRunning

    cfg = load_config(args)
    trace: set[str] = set()
    for t in args.trace or ():
        trace.update(x.strip() for x in t.split(",") if x.strip())
    unknown = trace - {"smtp", "imap", "pop3", "lmtp"}
    if unknown:
        raise CLIError(f"--trace: unknown protocol(s) {', '.join(sorted(unknown))}", EX_USAGE)
    lock = ServerLock(cfg.data_dir)
    try:
        # before anything opens: a second server says so at once, not after the queue's wait
        lock.acquire()
    except ServerRunning as e:
        raise CLIError(str(e), EX_TEMPFAIL) from None
    except OSError as e:
        raise CLIError(f"{cfg.data_dir}: cannot take the server lock: {e}", EX_CANTCREAT) from None
    configure(cfg.log, args.log_level)
    log = logging.getLogger("carteiro")

    async def run() -> int:
        app = App(cfg, trace=frozenset(trace), log_level_override=args.log_level)
        # Before start: the ports accept (into the kernel's backlog) as soon as they are bound,
        # so a supervisor may signal while the rest starts; a stop then waits for the start to
        # finish, and a reload asks to be sent again (the default actions would kill us).
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: log.warning("reload: still starting; send SIGHUP once ready")
        )
        try:
            await app.start()
        except (ListenError, TLSFileError, PrivilegeError) as e:
            print(f"carteiro: {e}", file=sys.stderr)
            await app.stop(grace=0)
            return EX_CONFIG
        reloading: set[asyncio.Task[bool]] = set()

        def hup() -> None:
            task = loop.create_task(app.reload())
            reloading.add(task)
            task.add_done_callback(reloading.discard)

        loop.add_signal_handler(signal.SIGHUP, hup)
        lock.write_state(
            {
                "version": __version__,
                "started": app.started,
                "listeners": {
                    lst.service: f"{lst.bound[0]}:{lst.bound[1]}"
                    for lst in app.listeners
                    if lst.bound
                },
            }
        )
        demo = cfg.data_dir / DEMO_PASSWORD_FILE
        if demo.exists():
            acct = demo.read_text().strip().partition(" ")[0]
            log.info("demo account: %s (its password is in %s)", acct, demo)
        log.info("carteiro %s ready (data dir %s, pid %d)", __version__, cfg.data_dir, os.getpid())
        await stop.wait()
        log.info("stopping: no new connections; finishing sessions")
        await app.stop()
        log.info("stopped")
        return 0

    try:
        return run_loop(run())
    finally:
        lock.release()


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run the server's event loop: uvloop (libuv; measured below the asyncio loop's CPU per
    command, docs/architecture.md) when installed, unless CARTEIRO_EVENT_LOOP=asyncio."""
    if os.environ.get("CARTEIRO_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


# ---- users, aliases, domains --------------------------------------------------------------------


def cmd_user(args: argparse.Namespace) -> int:
    from carteiro.app import open_directory, open_store

    cfg = load_config(args)
    directory = open_directory(cfg)
    if args.action == "list":
        users = directory.users()
        width = max((len(u) for u in users), default=0)
        for u in users:
            print(f"{u:<{width}}  {directory.delivery_of(u)}")
        return 0
    if args.action == "set":
        from carteiro.cli_ops import set_delivery

        return set_delivery(cfg, directory, args.address, args.delivery)
    if args.action == "add":
        pw = read_password(args)
        acct = directory.add_user(args.address, pw, delivery=args.delivery)

        async def create() -> None:
            store = open_store(cfg)
            try:
                await store.create_account(acct)
            finally:
                await store.close()

        asyncio.run(create())
        print(f"added {acct}")
        if args.delivery == "mbox":
            from carteiro.cli_ops import mbox_note

            print(mbox_note(cfg, acct))
        return 0
    if args.action == "passwd":
        directory.set_password(args.address, read_password(args))
        print("password changed")
        return 0
    if args.action == "del":
        acct = directory.del_user(args.address)

        async def delete() -> None:
            store = open_store(cfg)
            try:
                await store.delete_account(acct, purge=args.purge)
            finally:
                await store.close()

        asyncio.run(delete())
        print(
            f"deleted {acct}"
            + (" and its mail" if args.purge else " (mail kept; --purge removes it)")
        )
        return 0
    if args.action == "quota":
        return _user_quota(args, cfg, directory)
    raise CLIError(f"unknown action {args.action}", EX_USAGE)  # pragma: no cover


def _size(text: str) -> int:
    """An octet count with an optional K/M/G/T suffix (powers of 1024); 0 is no limit."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B")
    mult = units.get(t[-1:], 1)
    digits = t[:-1] if t[-1:] in units else t
    if not digits.isdigit():
        raise CLIError(f"not a size: {text!r} (e.g. 500M, 2G, 0 for no limit)", EX_USAGE)
    return int(digits) * mult


def _user_quota(args: argparse.Namespace, cfg: Config, directory: Any) -> int:
    from carteiro.app import open_store

    if not directory.user_exists(args.address):
        raise CLIError(f"no account {args.address}", EX_USAGE)
    acct_name = canonical(args.address)
    storage = None if args.storage in (None, "default") else _size(args.storage)
    messages = None if args.messages in (None, "default") else int(args.messages)
    if messages is not None and messages < 0:
        raise CLIError("--messages must not be negative", EX_USAGE)

    async def run() -> str:
        store = open_store(cfg)
        try:
            acct = await store.account(acct_name)
            if args.storage is not None or args.messages is not None:
                q = await acct.quota()
                # an option not given keeps its current per-account value
                await acct.set_quota(
                    storage if args.storage is not None else _explicit(q.storage_limit),
                    messages if args.messages is not None else _explicit(q.message_limit),
                )
            q = await acct.quota()
        finally:
            await store.close()

        def limit(v: int | None) -> str:
            return "no limit" if v is None else str(v)

        return (
            f"{acct_name}: storage {q.storage} of {limit(q.storage_limit)} octets,"
            f" {q.messages} of {limit(q.message_limit)} messages"
        )

    print(asyncio.run(run()))
    return 0


def _explicit(limit: int | None) -> int:
    return 0 if limit is None else limit


def cmd_alias(args: argparse.Namespace) -> int:
    from carteiro.app import open_directory

    directory = open_directory(load_config(args))
    if args.action == "list":
        for src, tgt in directory.aliases():
            print(f"{src} -> {tgt}")
    elif args.action == "add":
        directory.add_alias(args.source, args.target)
        print(f"{args.source} -> {args.target}")
    elif args.action == "del":
        n = directory.del_alias(args.source, args.target)
        if not n:
            raise CLIError(
                f"no alias {args.source}" + (f" -> {args.target}" if args.target else "")
            )
        print(f"removed {plural(n, 'alias')}")
    return 0


def cmd_domain(args: argparse.Namespace) -> int:
    from carteiro.app import open_directory

    cfg = load_config(args)
    directory = open_directory(cfg)
    if args.action == "list":
        for dom in directory.domains():
            print(dom + ("  (carteiro.toml)" if dom in directory.static_domains else ""))
        for dom, user in directory.held_domains().items():
            print(f"{dom}  (held for ETRN" + (f"; ATRN by {user})" if user else ")"))
    elif args.action == "add" and (args.hold or args.atrn_user):
        # relayed and held until the domain's host asks (ETRN, or ATRN by that user)
        name = directory.add_held_domain(args.domain, args.atrn_user or "")
        print(f"added {name} (held)")
    elif args.action == "add":
        name = directory.add_domain(args.domain)
        print(f"added {name}")
        if cfg.dkim.enabled:
            from carteiro.mailauth.dkim import ensure_dkim_key

            # the key is made here, once, not as a side effect of printing the DNS records
            print(f"DKIM key: {ensure_dkim_key(cfg.data_dir, name, cfg.dkim.selector)}")
    elif args.action == "del":
        if not directory.del_held_domain(args.domain):
            directory.del_domain(args.domain)
        print(f"removed {args.domain.lower()}")
    return 0


# ---- parser -----------------------------------------------------------------------------------


def extra_commands() -> list[Register]:
    """Subcommands owned by other areas (queue, mailbox formats, delivery agent, store tools)."""
    regs: list[Register] = []
    from carteiro.cli_queue import register as register_queue

    regs.append(register_queue)
    from carteiro.cli_mailbox import register as register_mailbox

    regs.append(register_mailbox)
    from carteiro.cli_deliver import register as register_deliver

    regs.append(register_deliver)
    from carteiro.cli_mailauth import register as register_mailauth

    regs.append(register_mailauth)
    from carteiro.cli_ops import register as register_ops

    regs.append(register_ops)
    from carteiro.cli_sieve import register as register_sieve

    regs.append(register_sieve)
    from carteiro.cli_etrn import register as register_etrn

    regs.append(register_etrn)
    from carteiro.cli_fetch import register as register_fetch

    regs.append(register_fetch)
    from carteiro.cli_lists import register as register_lists

    regs.append(register_lists)
    from carteiro.cli_web import register as register_web

    regs.append(register_web)
    return regs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carteiro", description="A complete e-mail system.")
    p.add_argument("--version", action="version", version=f"carteiro {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", help="data dir (default: $CARTEIRO_DATA, then ./var)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "init", parents=[common], help="create a data dir: config, certificate, store"
    )
    s.add_argument("--domain", action="append", default=[], help="a domain to receive mail for")
    s.add_argument("--hostname", help="this server's name (default mail.DOMAIN)")
    s.add_argument(
        "--demo", action="store_true", help="also create demo@DOMAIN with a random password"
    )
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("serve", parents=[common], help="run every configured service (foreground)")
    s.add_argument(
        "--trace", action="append", metavar="PROTO", help="print smtp/imap/pop3 transcripts"
    )
    s.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("user", help="accounts")
    us = s.add_subparsers(dest="action", required=True)
    a = us.add_parser("add", parents=[common])
    a.add_argument("address")
    a.add_argument("--password-stdin", action="store_true")
    a.add_argument("--delivery", choices=["store", "mbox"], default="store")
    a = us.add_parser("del", parents=[common])
    a.add_argument("address")
    a.add_argument("--purge", action="store_true", help="also delete the account's mail")
    a = us.add_parser("passwd", parents=[common])
    a.add_argument("address")
    a.add_argument("--password-stdin", action="store_true")
    us.add_parser("list", parents=[common], help="accounts and their delivery (store or mbox)")
    a = us.add_parser("set", parents=[common], help="change an account's delivery")
    a.add_argument("address")
    a.add_argument(
        "--delivery",
        choices=["store", "mbox"],
        required=True,
        help="store: the mailbox IMAP/POP3 serve; mbox: a classic spool file for local programs",
    )
    a = us.add_parser(
        "quota",
        parents=[common],
        help="show or set an account's mail quota (RFC 9208 STORAGE and MESSAGE)",
    )
    a.add_argument("address")
    a.add_argument("--storage", help='octets, with K/M/G/T; 0: no limit; "default": [quota]')
    a.add_argument("--messages", help='a count; 0: no limit; "default": [quota]')
    s.set_defaults(func=cmd_user)

    s = sub.add_parser("alias", help="aliases (catch-all: @domain)")
    al = s.add_subparsers(dest="action", required=True)
    a = al.add_parser("add", parents=[common])
    a.add_argument("source")
    a.add_argument("target")
    a = al.add_parser("del", parents=[common])
    a.add_argument("source")
    a.add_argument("target", nargs="?")
    al.add_parser("list", parents=[common])
    s.set_defaults(func=cmd_alias)

    s = sub.add_parser("domain", help="local domains")
    dm = s.add_subparsers(dest="action", required=True)
    for action in ("add", "del"):
        a = dm.add_parser(action, parents=[common])
        a.add_argument("domain")
    a = dm.choices["add"]
    a.add_argument("--hold", action="store_true", help="relay it, held until ETRN/ATRN")
    a.add_argument("--atrn-user", metavar="ACCOUNT", help="the account that may ATRN for it")
    dm.add_parser("list", parents=[common])
    s.set_defaults(func=cmd_domain)

    for register in extra_commands():
        register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "data"):
        args.data = None
    try:
        code: int = args.func(args)
        return code
    except CLIError as e:
        print(f"carteiro: {e}", file=sys.stderr)
        return e.code
    except (DirectoryError, AddressError, StoreError) as e:
        print(f"carteiro: {e}", file=sys.stderr)
        return EX_DATAERR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

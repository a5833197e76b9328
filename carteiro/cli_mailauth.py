"""The `carteiro dkim ...` subcommands (registered by cli.py): the DKIM keys of each domain,
RSA and Ed25519, and their rotation (dkim_keys has the life cycle and why).

    carteiro dkim list [DOMAIN]
    carteiro dkim rotate DOMAIN [--algorithm rsa|ed25519] [--selector NAME]
    carteiro dkim activate DOMAIN SELECTOR
    carteiro dkim retire DOMAIN SELECTOR
    carteiro dmarc report [--account ADDRESS] [--days N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from carteiro.config import Config, ConfigError, load
from carteiro.core.plural import plural

T = TypeVar("T")

EX_CONFIG = 78


def _config(args: argparse.Namespace) -> Config:
    return load(Path(args.data or os.environ.get("CARTEIRO_DATA") or "var"))


def _domains(cfg: Config) -> list[str]:
    from carteiro.directory.accounts import Directory

    domains = list(cfg.domains)
    path = cfg.data_dir / "directory.sqlite"
    if path.exists():
        d = Directory(path, static_domains=cfg.domains)
        try:
            domains += [x for x in d.domains() if x not in domains]
        finally:
            d.close()
    return domains


def _record_lines(name: str, value: str) -> str:
    from carteiro.mailauth.dns_records import _quote_txt

    return f"{name}. 3600 IN TXT {_quote_txt(value)}"


def cmd_dkim(args: argparse.Namespace) -> int:
    from carteiro.mailauth import dkim_keys
    from carteiro.mailauth.dkim import key_path

    try:
        cfg = _config(args)
    except ConfigError as e:
        print(f"carteiro: {e}", file=sys.stderr)
        return EX_CONFIG
    selector = cfg.dkim.selector
    domains = _domains(cfg)
    domain = (getattr(args, "domain", None) or "").lower().rstrip(".")
    if domain and domain not in domains:
        print(f"carteiro: {domain} is not one of our domains", file=sys.stderr)
        return 1
    try:
        if args.dkim_action == "list":
            for dom in [domain] if domain else domains:
                for ent in dkim_keys.entries(cfg.data_dir, dom, selector):
                    when = (
                        datetime.datetime.fromtimestamp(ent.created).strftime("%Y-%m-%d")
                        if ent.created
                        else "-"
                    )
                    print(f"{dom:30} {ent.selector:20} {ent.algorithm:8} {ent.state:9} {when}")
            return 0
        if args.dkim_action == "rotate":
            entry = dkim_keys.rotate(
                cfg.data_dir, domain, args.algorithm, selector, args.selector or None
            )
            path = key_path(cfg.data_dir, domain, entry.selector)
            print(f"; new {entry.algorithm} key {entry.selector} for {domain} (pending).")
            print("; 1. publish this record:")
            print(
                _record_lines(f"{entry.selector}._domainkey.{domain}", dkim_keys.txt_record(path))
            )
            print(f"; 2. once it resolves: carteiro dkim activate {domain} {entry.selector}")
            print("; the key it replaces keeps being published until you retire it.")
            return 0
        if args.dkim_action == "activate":
            dkim_keys.activate(cfg.data_dir, domain, args.selector, selector)
            print(f"{domain}: mail is signed with {args.selector} from now on")
            for ent in dkim_keys.entries(cfg.data_dir, domain, selector):
                if ent.state == "retiring":
                    print(
                        f"{ent.selector} is retiring: keep its record a few days, then remove it"
                        f" and run: carteiro dkim retire {domain} {ent.selector}"
                    )
            return 0
        if args.dkim_action == "retire":
            ent = dkim_keys.retire(cfg.data_dir, domain, args.selector, selector)
            print(f"{domain}: key {ent.selector} deleted; remove its record from DNS:")
            print(f"  {ent.selector}._domainkey.{domain}. TXT")
            return 0
    except dkim_keys.KeyError_ as err_:
        print(f"carteiro: {err_}", file=sys.stderr)
        return 1
    return 64  # pragma: no cover - argparse requires an action


def _report_account(cfg: Config, given: str) -> str | None:
    """The account whose mail holds received reports: `given`, else postmaster's of the first
    domain (None, said on stderr, when there is none)."""
    from carteiro.app import open_directory

    if given:
        return given
    domains = _domains(cfg)
    if not domains:
        print("carteiro: no domains configured", file=sys.stderr)
        return None
    directory = open_directory(cfg)
    try:
        res = directory.resolve(f"postmaster@{domains[0]}")
    finally:
        directory.close()
    if res is None or not res.local_accounts:
        print(
            f"carteiro: postmaster@{domains[0]} is no account here; give --account",
            file=sys.stderr,
        )
        return None
    return res.local_accounts[0][0]


def _parsed_mail(cfg: Config, account: str, parse: Callable[[bytes], T | None]) -> list[T]:
    """Every message of `account` (every selectable folder) that `parse` makes something of."""
    import asyncio

    from carteiro.app import open_store

    async def read() -> list[T]:
        store = open_store(cfg)
        found: list[T] = []
        try:
            acct = await store.account(account)
            for info in await acct.list_mailboxes():
                if not info.selectable:
                    continue
                for m in await acct.list_messages(info.id):
                    got = parse(await acct.read_message(info.id, m.uid))
                    if got is not None:
                        found.append(got)
        finally:
            await store.close()
        return found

    return asyncio.run(read())


def _received(
    args: argparse.Namespace, parse: Callable[[bytes], T | None]
) -> tuple[Config, str, list[T]] | int:
    """The reports `parse` finds in the report account's mail (--account, else postmaster's),
    with the configuration and the account; or the exit status when there is none to read."""
    try:
        cfg = _config(args)
    except ConfigError as e:
        print(f"carteiro: {e}", file=sys.stderr)
        return EX_CONFIG
    account = _report_account(cfg, args.account)
    if account is None:
        return 1
    return cfg, account, _parsed_mail(cfg, account, parse)


def cmd_dmarc(args: argparse.Namespace) -> int:
    """Read the DMARC aggregate reports delivered to the report account (every folder), keep
    the new ones in DATA/dmarc.sqlite, and print what they say."""
    import time

    from carteiro.mailauth import dmarc_reports

    got = _received(args, dmarc_reports.parse_report)
    if isinstance(got, int):
        return got
    cfg, account, reports = got
    new = dmarc_reports.store_received(cfg.data_dir, reports)
    since = int(time.time() - args.days * 86400) if args.days else 0
    lines = dmarc_reports.summary(cfg.data_dir, since)
    print(f"{plural(len(reports), 'report')} in {account}'s mail ({new} new)")
    for line in lines:
        print(line)
    return 0


def cmd_tls_report(args: argparse.Namespace) -> int:
    """Read the SMTP TLS reports (RFC 8460) other senders mailed to the report account (the
    `_smtp._tls` record `carteiro dns-records` prints names postmaster) and print what they
    say: sessions with and without TLS per sender and policy, then each kind of failure."""
    from carteiro.queue import tlsrpt

    got = _received(args, tlsrpt.parse_received)
    if isinstance(got, int):
        return got
    _cfg, account, reports = got
    if args.days:
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=args.days)

        def recent(r: tlsrpt.Received) -> bool:
            try:
                return datetime.datetime.fromisoformat(r.end) >= since
            except ValueError:
                return True  # an unreadable date: shown rather than hidden

        reports = [r for r in reports if recent(r)]
    print(f"{plural(len(reports), 'TLS report')} in {account}'s mail")
    for line in tlsrpt.summary(reports):
        print(line)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dkim` to the carteiro command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", help="data dir (default: $CARTEIRO_DATA, then ./var)")
    s = subparsers.add_parser("dkim", help="DKIM signing keys: list, rotate, activate, retire")
    ds = s.add_subparsers(dest="dkim_action", required=True, metavar="ACTION")
    a = ds.add_parser("list", parents=[common], help="each domain's keys and their state")
    a.add_argument("domain", nargs="?")
    a = ds.add_parser("rotate", parents=[common], help="make a new (pending) key; print its record")
    a.add_argument("domain")
    a.add_argument("--algorithm", choices=["rsa", "ed25519"], default="rsa")
    a.add_argument("--selector", help="its selector (default: cYYYYMMDDr or cYYYYMMDDe)")
    a = ds.add_parser("activate", parents=[common], help="sign with this key from now on")
    a.add_argument("domain")
    a.add_argument("selector")
    a = ds.add_parser("retire", parents=[common], help="delete a replaced key")
    a.add_argument("domain")
    a.add_argument("selector")
    s.set_defaults(func=cmd_dkim)

    s = subparsers.add_parser("tls-report", parents=[common], help="SMTP TLS reports received")
    s.add_argument("--account", help="whose mail holds them (default: postmaster's account)")
    s.add_argument("--days", type=float, default=0, help="only reports of the last N days")
    s.set_defaults(func=cmd_tls_report)
    s = subparsers.add_parser("dmarc", help="DMARC aggregate reports received")
    ds = s.add_subparsers(dest="dmarc_action", required=True, metavar="ACTION")
    a = ds.add_parser("report", parents=[common], help="read, keep and summarise reports")
    a.add_argument("--account", help="whose mail holds them (default: postmaster's account)")
    a.add_argument("--days", type=float, default=0, help="only reports of the last N days")
    s.set_defaults(func=cmd_dmarc)

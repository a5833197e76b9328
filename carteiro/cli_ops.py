"""Operations subcommands: `status`, `backup`, `restore`, and the delivery mode of accounts.

Thin: arguments, output and sysexits-style exit statuses; the work is in carteiro.ops (server lock
and state, health, backup) and the services it calls. Registered by cli.py's `extra_commands()`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from carteiro.cli import EX_DATAERR, CLIError, load_config

if TYPE_CHECKING:
    from carteiro.config import Config
    from carteiro.directory.accounts import Directory


def mbox_note(cfg: Config, account: str) -> str:
    """What an operator must know about an account delivered to an mbox spool."""
    from carteiro.mail.mbox_spool import MboxSpool

    path = MboxSpool(cfg.path(cfg.smtp.mbox_dir)).path_for(account)
    return (
        f"{account}: mail is delivered to the mbox spool {path}, for mail programs on this host; "
        "IMAP and POP3 refuse this account's logins (`carteiro user set --delivery store` "
        "switches it)"
    )


def set_delivery(cfg: Config, directory: Directory, address: str, delivery: str) -> int:
    """`carteiro user set ADDRESS --delivery store|mbox`."""
    from carteiro.core.address import canonical
    from carteiro.mail.mbox_spool import MboxSpool

    acct = canonical(address)
    if not directory.user_exists(acct):
        raise CLIError(f"no account {acct}", EX_DATAERR)
    before = directory.delivery_of(acct)
    if before == delivery:
        print(f"{acct}: delivery is already {delivery}")
        return 0
    directory.set_delivery(acct, delivery)
    print(f"{acct}: delivery {before} -> {delivery}")
    if delivery == "mbox":
        print(mbox_note(cfg, acct))
        return 0

    async def create() -> None:
        from carteiro.app import open_store

        store = open_store(cfg)
        try:
            await store.create_account(acct)
        finally:
            await store.close()

    asyncio.run(create())
    spool = MboxSpool(cfg.path(cfg.smtp.mbox_dir)).path_for(acct)
    if spool.exists() and spool.stat().st_size:
        # never moved behind the operator's back: a program on the host may still read it
        print(
            f"the spool {spool} still holds the mail delivered so far; to serve it over IMAP/POP3: "
            f"carteiro mailbox import --format mbox {spool} {acct}"
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Nothing of its own yet beyond what cli.py's `user` command calls."""


def _unused(args: argparse.Namespace) -> None:  # pragma: no cover
    load_config(args)

"""`carteiro list ...`: mailing lists and their members, settings and held posts.

Works on DATA/lists/lists.sqlite directly, with or without a running server (which sees changes
within a second). Decisions on held posts are recorded here and carried out by the server (it owns
the queue): the post goes out, or the poster hears of the rejection, at its next pass.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from carteiro.core.address import AddressError, parse_address
from carteiro.core.plural import plural


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", help="data dir (default: $CARTEIRO_DATA, then ./var)")
    s = subparsers.add_parser("list", help="mailing lists: members, settings, moderation")
    ls = s.add_subparsers(dest="list_action", required=True, metavar="ACTION")
    a = ls.add_parser("create", parents=[common], help="make a list (LIST@DOMAIN)")
    a.add_argument("address")
    a.add_argument("--owner", action="append", required=True, help="an owner's address")
    a.add_argument("--description", default="")
    a.add_argument("--subscription", choices=["open", "confirm", "moderated", "closed"])
    a.add_argument("--posting", choices=["members", "anyone", "moderated", "announce"])
    a = ls.add_parser("del", parents=[common], help="delete a list with its members")
    a.add_argument("address")
    a = ls.add_parser("show", parents=[common], help="settings, members count, held posts")
    a.add_argument("address")
    a.add_argument("--json", action="store_true")
    ls.add_parser("list", parents=[common], help="every list")
    a = ls.add_parser("set", parents=[common], help="change a setting (see `list show`)")
    a.add_argument("address")
    a.add_argument("key")
    a.add_argument("value")
    a = ls.add_parser("members", help="add, remove or list members")
    ms = a.add_subparsers(dest="members_action", required=True, metavar="ACTION")
    m = ms.add_parser("add", parents=[common], help="subscribe addresses (no confirmation)")
    m.add_argument("address")
    m.add_argument("members", nargs="+")
    m.add_argument("--digest", action="store_true", help="daily digests instead of each post")
    m = ms.add_parser("del", parents=[common])
    m.add_argument("address")
    m.add_argument("members", nargs="+")
    m = ms.add_parser("list", parents=[common])
    m.add_argument("address")
    a = ls.add_parser("moderate", parents=[common], help="held posts and subscriptions")
    a.add_argument("address")
    a.add_argument("action", nargs="?", choices=["approve", "reject", "discard"])
    a.add_argument("token", nargs="?")
    a.add_argument("--reason", default="")
    s.set_defaults(func=cmd_list)


def _address(text: str) -> str:
    try:
        return parse_address(text).canonical
    except AddressError as e:
        from carteiro.cli import CLIError

        raise CLIError(f"{text}: {e}") from None


def cmd_list(args: argparse.Namespace) -> int:
    from carteiro.app import open_directory
    from carteiro.cli import EX_DATAERR, CLIError, load_config
    from carteiro.lists.db import ListDB, ListError, db_path
    from carteiro.lists.model import MailingList, Member, SettingError, Settings

    cfg = load_config(args)
    db = ListDB(db_path(cfg.data_dir))
    try:

        def get(address: str) -> MailingList:
            ml = db.get(_address(address))
            if ml is None:
                raise CLIError(f"no list {address}", EX_DATAERR)
            return ml

        act = args.list_action
        if act == "create":
            address = _address(args.address)
            directory = open_directory(cfg)
            try:
                domain = address.rpartition("@")[2]
                if not directory.is_local_domain(domain):
                    raise CLIError(f"{domain} is not one of our domains", EX_DATAERR)
                name = address.rpartition("@")[0]
                aliases = {src for src, _ in directory.aliases()}
                for taken in (address, *(f"{name}-{r}@{domain}" for r in ("request", "owner"))):
                    if directory.user_exists(taken) or taken in aliases:
                        raise CLIError(f"{taken} is an account or alias already", EX_DATAERR)
            finally:
                directory.close()
            settings = Settings(description=args.description)
            if args.subscription:
                settings.subscription = args.subscription
            if args.posting:
                settings.posting = args.posting
            owners = [_address(o) for o in args.owner]
            db.create(MailingList(address, owners, settings, time.time()))
            print(f"created {address} (owners: {', '.join(owners)})")
        elif act == "del":
            db.delete(_address(args.address))
            print(f"deleted {args.address}")
        elif act == "list":
            for ml in db.all():
                print(
                    f"{ml.address}  {plural(len(db.members(ml.address)), 'member')}  "
                    f"{ml.settings.description}"
                )
        elif act == "show":
            ml = get(args.address)
            members = db.members(ml.address)
            info: dict[str, Any] = {
                "address": ml.address,
                "list_id": ml.list_id,
                "owners": ml.owners,
                "members": len(members),
                "disabled": sum(1 for m in members if m.status != "enabled"),
                "held": len(db.pending_of(ml.address, "post")),
                "settings": ml.settings.to_json(),
            }
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                for k, v in info.items():
                    if k != "settings":
                        print(f"{k}: {', '.join(v) if isinstance(v, list) else v}")
                for k, v in info["settings"].items():
                    print(f"  {k} = {', '.join(v) if isinstance(v, list) else json.dumps(v)}")
        elif act == "set":
            ml = get(args.address)
            try:
                ml.settings.set(args.key, args.value)
            except SettingError as e:
                raise CLIError(str(e), EX_DATAERR) from None
            db.save(ml)
            print(f"{ml.address}: {args.key} = {getattr(ml.settings, args.key)!r}")
        elif act == "members":
            ml = get(args.address)
            if args.members_action == "list":
                for m in db.members(ml.address):
                    extra = "" if m.status == "enabled" else f" (disabled: {m.status})"
                    print(f"{m.address}  {m.delivery}{extra}")
            elif args.members_action == "add":
                now = time.time()
                mode = "digest" if args.digest else "regular"
                new = [Member(_address(a), delivery=mode, since=now) for a in args.members]
                n = db.add_members(ml.address, new)
                print(f"{ml.address}: {n} added, {len(new) - n} already members")
            else:
                n = sum(db.remove_member(ml.address, _address(a)) for a in args.members)
                print(f"{ml.address}: {n} removed")
        elif act == "moderate":
            ml = get(args.address)
            if args.action is None:
                for p in db.pending_of(ml.address):
                    if p.kind in ("post", "approve-subscription"):
                        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(p.created))
                        print(
                            f"{p.token}  {p.kind}  {when}  {p.address}  {p.subject!r}"
                            f"  ({p.reason or p.state})"
                        )
                return 0
            if not args.token:
                raise CLIError("give the request's token (see `carteiro list moderate LIST`)")
            req = db.pending(args.token.lower())
            if (
                req is None
                or req.list != ml.address
                or req.kind not in ("post", "approve-subscription")
            ):
                raise CLIError(f"no held request {args.token} on {ml.address}", EX_DATAERR)
            state = {"approve": "approved", "reject": "rejected", "discard": "discarded"}
            if not db.set_pending_state(req.token, state[args.action], args.reason or None):
                raise CLIError(f"{args.token} is decided already", EX_DATAERR)
            print(f"{args.token}: {state[args.action]} (the server carries it out)")
        return 0
    except ListError as e:
        raise CLIError(str(e), EX_DATAERR) from None
    finally:
        db.close()

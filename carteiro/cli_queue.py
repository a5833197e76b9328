"""The `carteiro queue ...` / `carteiro dns-records` subcommands (registered by cli.py). The queue
service itself is built by app.py.

A running server holds DATA/queue/lock and listens on DATA/queue/control.sock; queue commands that
change something go there, and with no server they edit the spool directly under the lock.
`queue list` and `queue show` read the committed state from disk either way.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carteiro.config import Config, ConfigError, load
from carteiro.core.plural import plural
from carteiro.queue import service as qservice
from carteiro.queue.model import QueuedMessage
from carteiro.queue.service import CONTROL_SOCKET, QUEUE_DIR

if TYPE_CHECKING:
    from carteiro.mailauth.dns_records import Record

# ---- talking to a running server -------------------------------------------------------------


def request_queue(root: Path, request: dict[str, Any]) -> dict[str, Any]:
    """A queue command: to the running server, else done here under the queue's lock."""
    lock = qservice.QueueLock(root)
    if not lock.held_elsewhere():
        return qservice.offline(root, request)
    return _ask_server(root, request)


def settle(root: Path) -> None:
    """Before reading the queue from disk: a running server commits the deferral records it
    holds back (at most a second, see FileSpool.record), so list/show/mailq show every attempt
    made so far. Best effort: who may not reach the server reads what is on disk."""
    try:
        if not qservice.QueueLock(root).held_elsewhere():
            return
    except OSError:
        return
    _ask_server(root, {"op": "sync"}, timeout=5.0)


def _ask_server(root: Path, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    path = root / CONTROL_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError as e:
            return {"ok": False, "error": f"the server holds the queue but {path}: {e}"}
        buf = b""
        try:
            s.sendall(json.dumps(request).encode() + b"\n")
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except OSError as e:
            return {"ok": False, "error": f"{path}: {e}"}
    try:
        answer: dict[str, Any] = json.loads(buf)
    except ValueError:
        return {"ok": False, "error": "no answer from the server"}
    return answer


# ---- output ----------------------------------------------------------------------------------


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _to_json(m: QueuedMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "sender": m.mail_from,
        "size": m.size,
        "arrival": m.arrival,
        "held": m.held,
        "origin": m.origin,
        "ret": m.ret,
        "envid": m.envid,
        "body": m.body,
        "smtputf8": m.smtputf8,
        "dkim": bool(m.prefix),
        "recipients": [
            {
                "address": r.address,
                "state": r.state,
                "attempts": r.attempts,
                "next_try": r.next_try if r.state == "pending" else None,
                "last_attempt": r.last_attempt,
                "last_error": r.last_error,
                "notify": list(r.notify),
                "orcpt": r.orcpt,
                "delay_notified": r.delay_notified,
            }
            for r in m.recipients
        ],
    }


def _print_message(m: QueuedMessage, out: Any) -> None:
    flags = " HELD" if m.held else ""
    flags += " (bounce)" if m.origin == "dsn" else ""
    print(f"{m.id}  {m.size:>9}  {_when(m.arrival)}  <{m.mail_from}>{flags}", file=out)
    for r in m.recipients:
        nxt = f"next {_when(r.next_try)}" if r.state == "pending" else ""
        print(f"    {r.state:<9} attempts={r.attempts:<3} {nxt:<24} <{r.address}>", file=out)
        if r.last_error and r.state != "delivered":
            print(f"        ({r.last_error})", file=out)


# ---- commands --------------------------------------------------------------------------------


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data or os.environ.get("CARTEIRO_DATA") or "var")


def _config(args: argparse.Namespace) -> Config:
    return load(_data_dir(args))


def cmd_queue(args: argparse.Namespace) -> int:
    from carteiro.queue.dsn import header_block

    root = _data_dir(args) / QUEUE_DIR
    action = args.queue_action
    if action == "list":
        settle(root)
        msgs = qservice.snapshot(root)
        if args.json:
            print(json.dumps([_to_json(m) for m in msgs], indent=2))
            return 0
        if not msgs:
            print("queue is empty")
            return 0
        print(f"{'ID':<14}  {'Size':>9}  {'Arrival':<19}  Sender")
        for m in msgs:
            _print_message(m, sys.stdout)
        pending = sum(len(m.pending) for m in msgs)
        size = sum(m.size for m in msgs)
        print(
            f"-- {plural(len(msgs), 'message')}, {plural(size, 'byte')}, "
            f"{plural(pending, 'recipient')} pending"
        )
        return 0
    if action == "show":
        settle(root)
        one = qservice.load_one(root, args.id)
        if one is None:
            print(f"carteiro: no message {args.id} in the queue", file=sys.stderr)
            return 1
        m = one
        if args.json:
            print(json.dumps(_to_json(m), indent=2))
            return 0
        _print_message(m, sys.stdout)
        for key, value in (("ret", m.ret), ("envid", m.envid), ("body", m.body)):
            if value:
                print(f"  {key}: {value}")
        if m.smtputf8:
            print("  smtputf8: yes")
        print(f"  dkim: {'signed' if m.prefix else 'unsigned'}")
        content = qservice.load_content(root, m)
        head = header_block(content) if content is not None else b"(message content gone)\n"
        print()
        sys.stdout.write(head.decode("utf-8", "replace").replace("\r\n", "\n"))
        return 0
    request: dict[str, Any] = {"op": action}
    if action != "flush":
        request["id"] = args.id
    try:
        answer = request_queue(root, request)
    except qservice.QueueBusy as e:
        print(f"carteiro: {e}", file=sys.stderr)
        return 75
    if not answer.get("ok"):
        print(f"carteiro: {answer.get('error', 'failed')}", file=sys.stderr)
        return 1
    if action in ("flush", "retry"):
        print(f"{action}: {plural(int(answer.get('count', 0)), 'message')} scheduled now")
    else:
        print(f"{args.id}: {action}d" if action != "hold" else f"{args.id}: held")
    if answer.get("note"):
        print(answer["note"])
    return 0


def _mailq_time(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%a %b %e %H:%M:%S")


def mailq(root: Path, out: Any, err: Any) -> int:
    """The queue in Postfix's `mailq` layout: id (`*` being delivered, `!` held), size, arrival,
    sender; the last error of a deferred recipient in parentheses; then the pending recipients.
    Messages still in the maildrop (not yet picked up) are listed first, marked `+`."""
    from carteiro.queue.maildrop import MAILDROP, MaildropError, list_drops, open_drop

    rows: list[tuple[str, int, float, str, list[tuple[str, str]]]] = []
    try:
        for path in list_drops(root / MAILDROP):
            try:
                drop, f = open_drop(path, 1 << 62)
                f.close()
            except (OSError, MaildropError):
                continue
            env = drop.envelope
            sender = env.sender if env.sender is not None else f"(uid {drop.uid})"
            rows.append(
                (
                    drop.name[:24] + "+",
                    drop.size,
                    drop.mtime,
                    sender,
                    [("", r) for r in env.recipients],
                )
            )
        settle(root)
        for m in qservice.snapshot(root):
            mark = "!" if m.held else " "
            rcpts = [(r.last_error, r.address) for r in m.pending]
            rows.append((m.id + mark, m.size, m.arrival, m.mail_from or "MAILER-DAEMON", rcpts))
    except PermissionError as e:
        print(f"mailq: cannot read the queue: {e}", file=err)
        return 77  # EX_NOPERM
    if not rows:
        print("Mail queue is empty", file=out)
        return 0
    print(
        f"{'-Queue ID-':<15} {'--Size--':>8} {'----Arrival Time----':<20} -Sender/Recipient-------",
        file=out,
    )
    total = 0
    for qid, size, arrival, sender, rcpts in rows:
        total += size
        print(f"{qid:<15} {size:>8} {_mailq_time(arrival):<20} {sender}", file=out)
        last = None
        for error, address in rcpts:
            if error and error != last:
                print(f"({error})", file=out)
                last = error
            print(f"{'':<46}{address}", file=out)
        print(file=out)
    n = len(rows)
    print(f"-- {(total + 1023) // 1024} Kbytes in {n} Request{'s' if n != 1 else ''}.", file=out)
    return 0


def cmd_mailq(args: argparse.Namespace) -> int:
    return mailq(_data_dir(args) / QUEUE_DIR, sys.stdout, sys.stderr)


def cmd_dns_records(args: argparse.Namespace) -> int:
    from carteiro.core.address import AddressError, check_domain
    from carteiro.core.hostport import parse_hostport
    from carteiro.directory.accounts import Directory
    from carteiro.mailauth.dkim import key_path
    from carteiro.mailauth.dns_records import SRV_SERVICES, client_records, format_zone, records_for

    try:
        cfg = _config(args)
    except ConfigError as e:
        print(f"carteiro: {e}", file=sys.stderr)
        return 78
    domains = list(cfg.domains)
    dpath = cfg.data_dir / "directory.sqlite"
    if dpath.exists():
        d = Directory(dpath, static_domains=cfg.domains)
        try:
            domains += [x for x in d.domains() if x not in domains]
        finally:
            d.close()
    if args.domain:
        try:
            want = check_domain(args.domain)
        except AddressError as e:
            print(f"carteiro: {e}", file=sys.stderr)
            return 65
        if want not in domains:
            print(f"carteiro: {want} is not one of our domains", file=sys.stderr)
            return 1
        domains = [want]
    if not domains:
        print("carteiro: no domains configured", file=sys.stderr)
        return 1
    out = []
    for dom in domains:
        # never makes a key: printing must not change the data dir (init and `domain add` do)
        if cfg.dkim.enabled and not key_path(cfg.data_dir, dom, cfg.dkim.selector).exists():
            print(
                f"carteiro: warning: no DKIM key for {dom} "
                f"({key_path(cfg.data_dir, dom, cfg.dkim.selector)}); "
                "`carteiro init` makes the missing ones",
                file=sys.stderr,
            )
        ports = {
            svc: parse_hostport(getattr(cfg.listen, svc))[1]
            for svc in SRV_SERVICES
            if getattr(cfg.listen, svc)
        }
        out.append(
            format_zone(
                records_for(dom, cfg.hostname, cfg.data_dir, cfg.dkim.selector, cfg.dkim.enabled)
                + client_records(dom, cfg.hostname, ports)
                + _mta_sts_records(cfg, dom),
                cfg.hostname,
            )
        )
    if cfg.mta_sts.mode and not cfg.listen.web:
        print(
            "carteiro: warning: [mta_sts] is set but the web listener is off ([listen] web):"
            " nothing serves https://mta-sts.<domain>/.well-known/mta-sts.txt",
            file=sys.stderr,
        )
    print("\n".join(out), end="")
    return 0


def _mta_sts_records(cfg: Config, domain: str) -> list[Record]:
    """RFC 8461 3: the TXT record announcing our policy (its id changes with the policy), and
    the name senders fetch it from, pointing at this host (whose web listener serves it)."""
    from carteiro.app import published_mta_sts
    from carteiro.mailauth.dns_records import Record, _quote_txt

    if not cfg.mta_sts.mode:
        return []
    d = domain.lower().rstrip(".")
    _text, ident = published_mta_sts(cfg)
    return [
        Record(
            f"_mta-sts.{d}.",
            "TXT",
            _quote_txt(f"v=STSv1; id={ident};"),
            f"MTA-STS: senders fetch the policy ({cfg.mta_sts.mode}); the id changes with it",
        ),
        Record(
            f"mta-sts.{d}.",
            "CNAME",
            cfg.hostname.rstrip(".") + ".",
            "serves /.well-known/mta-sts.txt over HTTPS on 443, with a certificate for this name",
        ),
        Record(
            f"_smtp._tls.{d}.",
            "TXT",
            _quote_txt(f"v=TLSRPTv1; rua=mailto:postmaster@{d}"),
            "TLS reports (RFC 8460): senders mail a daily account of their TLS with your MX",
        ),
    ]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `queue` and `dns-records` to the carteiro command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", help="data dir (default: $CARTEIRO_DATA, then ./var)")

    s = subparsers.add_parser("queue", help="the outbound mail queue")
    qs = s.add_subparsers(dest="queue_action", required=True, metavar="ACTION")
    a = qs.add_parser("list", parents=[common], help="queued messages and recipient states")
    a.add_argument("--json", action="store_true")
    a = qs.add_parser("show", parents=[common], help="one message: envelope, state, headers")
    a.add_argument("id")
    a.add_argument("--json", action="store_true")
    qs.add_parser("flush", parents=[common], help="try every deferred message now")
    for action, text in (
        ("retry", "try this message now"),
        ("delete", "remove this message without a bounce"),
        ("hold", "keep this message from being delivered"),
        ("release", "deliver a held message again"),
    ):
        a = qs.add_parser(action, parents=[common], help=text)
        a.add_argument("id")
    s.set_defaults(func=cmd_queue)

    s = subparsers.add_parser(
        "mailq", parents=[common], help="the queue in the sendmail/Postfix `mailq` layout"
    )
    s.set_defaults(func=cmd_mailq)

    s = subparsers.add_parser(
        "dns-records", parents=[common], help="print the MX, SPF, DKIM and DMARC records to publish"
    )
    s.add_argument("domain", nargs="?")
    s.set_defaults(func=cmd_dns_records)

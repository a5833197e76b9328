"""The outbound queue's composition and commands: `make_queue_service` (for app.py) and the
`carteiro queue ...` / `carteiro dns-records` subcommands (registered by cli.py).

A running server holds DATA/queue/lock and listens on DATA/queue/control.sock; queue commands that
change something go there, and with no server they edit the spool directly under the lock.
`queue list` and `queue show` read the committed state from disk either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carteiro.config import Config, ConfigError, load
from carteiro.queue import service as qservice
from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.queue.model import QueuedMessage
from carteiro.queue.service import QueueService
from carteiro.queue.transport import Reply, TLSPolicy

if TYPE_CHECKING:  # the CLI starts fast: what serving needs is imported when it is needed
    from carteiro.directory.accounts import Directory
    from carteiro.mail.deliver import LocalDelivery as MailDelivery
    from carteiro.queue.local import LocalDelivery, Requeue
    from carteiro.queue.routing import Resolver
    from carteiro.queue.transport import Transport
    from carteiro.store.api import MailStore

log = logging.getLogger("carteiro.queue")

QUEUE_DIR = "queue"
CONTROL_SOCKET = "control.sock"
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


# ---- composition ----------------------------------------------------------------------------


class ControlledQueueService(QueueService):
    """QueueService plus the control socket the CLI talks to."""

    def __init__(self, *args: Any, control_path: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.control_path = control_path
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        await super().start()
        path = self.control_path
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            log.warning("queue: %s is too long for a socket; queue commands need a restart", path)
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(path))
        finally:
            os.umask(old)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.control_path.unlink()
        await super().stop()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
                answer = await self.handle(request)
            except ValueError as e:
                answer = {"ok": False, "error": f"bad request: {e}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError) as e:
            log.debug("queue: control client: %s", e)
        except Exception:
            log.exception("queue: control request failed")
        finally:
            writer.close()


class MailLocalDelivery:
    """The queue's LocalDelivery over the mail layer's (aliases, mbox accounts, plus folders):
    DSNs and queued local recipients are filed exactly as the SMTP server files mail."""

    def __init__(self, delivery: MailDelivery, tmp_dir: Path, requeue: Requeue | None) -> None:
        self.delivery = delivery
        self.tmp_dir = tmp_dir
        self.requeue = requeue

    def _write(self, data: bytes) -> Path:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="local.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return Path(name)

    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> Reply:
        from carteiro.mail.deliver import DeliveryError

        try:
            res = await asyncio.to_thread(self.delivery.resolve, recipient)
            targets = await self.delivery.targets(res.local_accounts)
        except DeliveryError as e:
            return Reply(451 if e.temporary else 550, e.status, e.reason)
        raw = data
        requeue = self.requeue

        async def forward() -> None:
            assert requeue is not None
            await requeue(Envelope(mail_from, tuple(QueuedRecipient(a) for a in res.remote)), raw)

        if res.remote and requeue is None:
            return Reply(451, "4.3.0", "cannot forward alias targets")
        then = forward if res.remote else None
        if not targets:
            if then is not None:
                await then()
            return Reply(250, "2.0.0", "forwarded")
        # RFC 5321 4.4: the delivering MTA records the reverse-path in Return-Path.
        path = await asyncio.to_thread(
            self._write, f"Return-Path: <{mail_from}>\r\n".encode() + raw
        )
        try:
            await self.delivery.deliver(targets, path, mail_from, then)
        except DeliveryError as e:
            return Reply(451 if e.temporary else 550, e.status, e.reason)
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return Reply(250, "2.0.0", "delivered locally")


def _tls_policy(value: str) -> TLSPolicy:
    if value in ("opportunistic", "starttls", "implicit", "none"):
        return value  # type: ignore[return-value]
    raise ConfigError(f"relay.tls: {value!r} is not one of opportunistic, starttls, implicit, none")


def make_queue_service(
    cfg: Config,
    store: MailStore,
    directory: Directory,
    transport: Transport | None = None,
    resolver: Resolver | None = None,
    *,
    local: LocalDelivery | None = None,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> QueueService:
    """The outbound queue for `cfg`. transport/resolver default to aiosmtplib and dnspython
    configured from [queue] and [dns]; `local` to delivery into the store."""
    from carteiro.mail.deliver import LocalDelivery as MailDelivery
    from carteiro.mailauth.dkim import DKIMSigner
    from carteiro.net.dns import DNSResolver
    from carteiro.net.smtp_client import SMTPClientTransport
    from carteiro.queue.retry import policy_from
    from carteiro.queue.routing import Router, RoutingConfig
    from carteiro.queue.spool import FileSpool
    from carteiro.queue.worker import QueueWorker, WorkerConfig

    rng = rng or random.Random()
    if transport is None:
        transport = SMTPClientTransport(cfg.hostname, connect_timeout=cfg.queue.connect_timeout)
    if resolver is None:
        resolver = DNSResolver(cfg.dns.nameservers, cfg.dns.timeout)
    static = {d.lower() for d in cfg.domains}

    def is_local(domain: str) -> bool:
        return domain in static or directory.is_local_domain(domain)

    signer = DKIMSigner(cfg.data_dir, is_local, cfg.dkim.selector) if cfg.dkim.enabled else None
    spool = FileSpool(cfg.data_dir / QUEUE_DIR, signer=signer, clock=clock)
    q = cfg.queue
    inet = cfg.dns.inet_protocols
    if inet not in ("any", "ipv4", "ipv6"):
        raise ConfigError(f"dns.inet_protocols: {inet!r} is not one of any, ipv4, ipv6")
    routing = RoutingConfig(
        hostname=cfg.hostname,
        remote_port=q.remote_port,
        smarthost=cfg.relay.smarthost,
        relay_tls=_tls_policy(cfg.relay.tls),
        relay_username=cfg.relay.username,
        relay_password=cfg.relay.password,
        transport=dict(cfg.transport),
        tls_verify=q.tls_verify,
        cafile=str(cfg.path(q.tls_cafile)) if q.tls_cafile else "",
        inet_protocols=inet,
    )
    router = Router(resolver, routing, is_local, rng, prefer=transport.has_idle)
    if local is None:
        mail_delivery = MailDelivery(
            store,
            directory,
            cfg.path(cfg.smtp.mbox_dir),
            plus_folders=cfg.smtp.plus_folder_delivery,
        )
        local = MailLocalDelivery(mail_delivery, spool.root / "tmp", spool.enqueue)
    worker = QueueWorker(
        spool,
        router,
        transport,
        local,
        WorkerConfig(
            hostname=cfg.hostname,
            policy=policy_from(q.retry_schedule, q.max_age, q.delay_warning),
            max_concurrency=q.max_concurrency,
            max_per_destination=q.max_per_destination,
        ),
        clock=clock,
        rng=rng,
    )
    return ControlledQueueService(
        spool, worker, transport, control_path=cfg.data_dir / QUEUE_DIR / CONTROL_SOCKET
    )


# ---- talking to a running server -------------------------------------------------------------


def _request(root: Path, request: dict[str, Any]) -> dict[str, Any]:
    lock = qservice.QueueLock(root)
    if not lock.held_elsewhere():
        return qservice.offline(root, request)
    path = root / CONTROL_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        try:
            s.connect(str(path))
        except OSError as e:
            return {"ok": False, "error": f"the server holds the queue but {path}: {e}"}
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
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
        print(f"-- {len(msgs)} message(s), {size} bytes, {pending} recipient(s) pending")
        return 0
    if action == "show":
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
        answer = _request(root, request)
    except qservice.QueueBusy as e:
        print(f"carteiro: {e}", file=sys.stderr)
        return 75
    if not answer.get("ok"):
        print(f"carteiro: {answer.get('error', 'failed')}", file=sys.stderr)
        return 1
    if action in ("flush", "retry"):
        print(f"{action}: {answer.get('count', 0)} message(s) scheduled now")
    else:
        print(f"{args.id}: {action}d" if action != "hold" else f"{args.id}: held")
    if answer.get("note"):
        print(answer["note"])
    return 0


def cmd_dns_records(args: argparse.Namespace) -> int:
    from carteiro.directory.accounts import Directory
    from carteiro.mailauth.dkim import ensure_dkim_key
    from carteiro.mailauth.dns_records import format_zone, records_for

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
        want = args.domain.lower().rstrip(".")
        if want not in domains:
            print(f"carteiro: {want} is not one of our domains", file=sys.stderr)
            return 1
        domains = [want]
    if not domains:
        print("carteiro: no domains configured", file=sys.stderr)
        return 1
    out = []
    for dom in domains:
        if cfg.dkim.enabled:
            ensure_dkim_key(cfg.data_dir, dom, cfg.dkim.selector)
        out.append(
            format_zone(
                records_for(dom, cfg.hostname, cfg.data_dir, cfg.dkim.selector, cfg.dkim.enabled),
                cfg.hostname,
            )
        )
    print("\n".join(out), end="")
    return 0


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
        "dns-records", parents=[common], help="print the MX, SPF, DKIM and DMARC records to publish"
    )
    s.add_argument("domain", nargs="?")
    s.set_defaults(func=cmd_dns_records)

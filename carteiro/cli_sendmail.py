"""`carteiro-sendmail`: the /usr/sbin/sendmail interface (as Postfix's sendmail + postdrop).

Reads a message on standard input and leaves it in DATA/queue/maildrop (works with no server
running); a running server is woken through its pickup socket and queues it at once. Also -bs (an
SMTP dialogue on stdin/stdout), -bp (mailq), -bv (verify recipients), -q (queue run). Exit status
per sysexits(3). The data dir is -C DIR, else $CARTEIRO_DATA, else /var/lib/carteiro.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import json
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

from carteiro.core.address import AddressError, parse_address
from carteiro.queue.maildrop import (
    MAILDROP,
    PICKUP_SOCKET,
    DropEnvelope,
    ensure_maildrop,
    write_drop,
)

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

DEFAULT_DATA = "/var/lib/carteiro"
MAX_INPUT = 256 * 1024 * 1024  # the server's [smtp] max_message_size decides; this bounds memory
PICKUP_TIMEOUT = 60.0
QUEUE_SUBDIR = "queue"

# Options that take a value, as sendmail's getopt string; their value is accepted and ignored
# unless handled below (-B body type, -h hop count, -L label, -O option, -X log file).
_WITH_VALUE = set("fFrCNRVBhLOX")
_IGNORED_FLAGS = set("inUGm")  # -n no aliasing, -U initial submission, -G gateway, -m me too


class UsageError(Exception):
    pass


@dataclass
class Options:
    mode: str = "m"  # -bm deliver (default), s, p, v
    extract: bool = False  # -t
    dot_ends: bool = True  # no -i / -oi: a line with a single "." ends the message
    sender: str | None = None  # -f / -r
    fullname: str | None = None  # -F
    verbose: bool = False
    defer: bool = False  # -odq
    queue_run: bool = False  # -q
    data: str | None = None  # -C
    notify: list[str] = field(default_factory=list)
    ret: str | None = None
    envid: str | None = None
    recipients: list[str] = field(default_factory=list)


def parse_args(argv: Sequence[str]) -> Options:
    """sendmail's command line: clustered flags (-ti), values attached or separate (-fme,
    -f me), recipients anywhere, `--` ends the options."""
    o = Options()
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            o.recipients += args[i:]
            break
        if not a.startswith("-") or a == "-":
            o.recipients.append(a)
            continue
        if a.startswith("-o"):  # -oi, -odq, -oem, -oXvalue: sendmail.cf options
            opt = a[2:]
            if opt == "i":
                o.dot_ends = False
            elif opt.startswith("d"):
                o.defer = opt[1:] == "q"  # -odb / -odi: deliver now (what happens anyway)
            continue  # -oe* (error mode), -om, -oA... accepted and ignored, as Postfix does
        if a.startswith("-b"):
            mode = a[2:]
            if mode in ("m", "s", "p", "v"):
                o.mode = mode
                continue
            raise UsageError(f"-b{mode} is not supported (run `carteiro serve` as the daemon)")
        if a.startswith("-q"):
            o.queue_run = True  # -q, -q30m: one queue run now (the server keeps its schedule)
            continue
        if a.startswith("-A"):
            continue  # -Am / -Ac: which sendmail.cf; there is only one configuration
        j = 1
        while j < len(a):
            c = a[j]
            j += 1
            if c in _WITH_VALUE:
                value = a[j:]
                if not value:
                    if i >= len(args):
                        raise UsageError(f"option -{c} requires a value")
                    value = args[i]
                    i += 1
                j = len(a)
                if c in "fr":
                    o.sender = value
                elif c == "F":
                    o.fullname = value
                elif c == "C":
                    o.data = value
                elif c == "N":
                    notify = [n.strip().upper() for n in value.split(",") if n.strip()]
                    if not notify or any(
                        n not in ("NEVER", "SUCCESS", "FAILURE", "DELAY") for n in notify
                    ):
                        raise UsageError(f"-N {value}: use never or success,failure,delay")
                    o.notify = notify
                elif c == "R":
                    if value.upper() not in ("FULL", "HDRS"):
                        raise UsageError(f"-R {value}: use full or hdrs")
                    o.ret = value.upper()
                elif c == "V":
                    o.envid = value
            elif c == "t":
                o.extract = True
            elif c == "i":
                o.dot_ends = False
            elif c == "v":
                o.verbose = True
            elif c in _IGNORED_FLAGS:
                pass
            else:
                raise UsageError(f"unknown option -{c}")
    return o


def data_dir(o: Options) -> Path:
    return Path(o.data or os.environ.get("CARTEIRO_DATA") or DEFAULT_DATA)


# ---- the message ---------------------------------------------------------------------------


def read_message(stream: BinaryIO, dot_ends: bool, limit: int = MAX_INPUT) -> bytes:
    """Standard input as a message with CRLF line endings. Without -i a line holding only "."
    ends it (the traditional mode); a leading mbox "From " line is dropped."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"message larger than {limit} octets")
    data = data.replace(b"\r\n", b"\n")
    if data.startswith(b"From "):
        data = data.partition(b"\n")[2]
    if dot_ends:
        if data.startswith(b".\n") or data == b".":
            data = b""
        else:
            k = data.find(b"\n.\n")
            if k >= 0:
                data = data[: k + 1]
            elif data.endswith(b"\n."):
                data = data[:-1]
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return data.replace(b"\n", b"\r\n")


def split_header(message: bytes) -> tuple[bytes, bytes]:
    """(header section with its CRLF-ending lines, the rest from the blank line on)."""
    if message.startswith(b"\r\n"):
        return b"", message
    i = message.find(b"\r\n\r\n")
    if i < 0:
        return message, b""
    return message[: i + 2], message[i + 2 :]


def _fields(head: bytes) -> list[bytes]:
    """The header section as whole fields (each with its continuation lines)."""
    out: list[bytes] = []
    for line in head.split(b"\r\n")[:-1] if head.endswith(b"\r\n") else head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += b"\r\n" + line
        else:
            out.append(line)
    return out


def extract_recipients(head: bytes) -> list[str]:
    """-t: To, Cc and Bcc (the Resent- ones instead when there are any: RFC 5322 3.6.6, a
    resent message goes to its new recipients only)."""
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head + b"\r\n")
    names = ("Resent-To", "Resent-Cc", "Resent-Bcc")
    if not any(msg.get_all(n) for n in names):
        names = ("To", "Cc", "Bcc")
    values: list[str] = []
    for n in names:
        values += [str(v) for v in msg.get_all(n) or []]
    out: list[str] = []
    for _, addr in email.utils.getaddresses(values):
        if addr and addr not in out:
            out.append(addr)
    return out


def remove_bcc(head: bytes) -> bytes:
    """Bcc: (and Resent-Bcc:) never reach the recipients (RFC 5322 3.6.3)."""
    kept = [
        f
        for f in _fields(head)
        if f.split(b":", 1)[0].strip().lower() not in (b"bcc", b"resent-bcc")
    ]
    return b"".join(f + b"\r\n" for f in kept)


def check_address(address: str, what: str) -> None:
    if not address or not address.isprintable() or any(c in address for c in "\r\n\0"):
        raise AddressError(f"{what} {address!r} is not an address")
    bare = address[1:-1] if address.startswith("<") and address.endswith(">") else address
    if "@" not in bare:
        if not bare or any(c in bare for c in ' <>()[]\\,;:"'):
            raise AddressError(f"{what} {address!r} is not an address")
        return
    parse_address(bare)


# ---- the maildrop --------------------------------------------------------------------------


def drop(root: Path, env: DropEnvelope, message: bytes) -> str:
    """Write into DATA/queue/maildrop (created when we own the data dir)."""
    d = root / MAILDROP
    if not d.is_dir():
        d = ensure_maildrop(root)
    return write_drop(d, env, message)


def wake(root: Path, timeout: float = PICKUP_TIMEOUT) -> list[list[str]] | None:
    """Ask a running server to pick the maildrop up now. None: no server listens."""
    path = root / PICKUP_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        s.sendall(b"pickup\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    try:
        answer = json.loads(buf)
    except ValueError:
        return None
    queued = answer.get("queued") if isinstance(answer, dict) else None
    return queued if isinstance(queued, list) else []


def submit(o: Options, stdin: BinaryIO, err: TextIO) -> int:
    try:
        message = read_message(stdin, o.dot_ends)
    except (OSError, ValueError) as e:
        print(f"sendmail: cannot read the message: {e}", file=err)
        return EX_NOINPUT if isinstance(e, OSError) else EX_DATAERR
    head, body = split_header(message)
    recipients = list(o.recipients)
    if o.extract:
        # Postfix: with -t, command-line addresses are added to those in the headers
        recipients += [r for r in extract_recipients(head) if r not in recipients]
    message = remove_bcc(head) + body
    if not recipients:
        print("sendmail: no recipients specified", file=err)
        return EX_USAGE
    try:
        for r in recipients:
            check_address(r, "recipient")
        if o.sender not in (None, "", "<>"):
            assert o.sender is not None
            check_address(o.sender, "sender")
    except AddressError as e:
        print(f"sendmail: {e}", file=err)
        return EX_DATAERR
    env = DropEnvelope(
        recipients=recipients,
        sender=o.sender,
        fullname=o.fullname,
        notify=o.notify,
        ret=o.ret,
        envid=o.envid,
        defer=o.defer,
    )
    root = data_dir(o) / QUEUE_SUBDIR
    try:
        name = drop(root, env, message)
    except PermissionError as e:
        print(f"sendmail: cannot write to the maildrop: {e}", file=err)
        return EX_NOPERM
    except FileNotFoundError as e:
        print(f"sendmail: no maildrop ({e}); is {data_dir(o)} a carteiro data dir?", file=err)
        return EX_CANTCREAT
    except OSError as e:
        print(f"sendmail: cannot write to the maildrop: {e}", file=err)
        return EX_TEMPFAIL
    if o.verbose:
        print(f"sendmail: {name}: in the maildrop for {', '.join(recipients)}", file=err)
    if o.defer:
        if o.verbose:
            print(f"sendmail: {name}: delivered at the next queue run (-odq)", file=err)
        return EX_OK
    try:
        queued = wake(root)
    except OSError as e:  # the message is safe in the maildrop; the server polls it too
        queued = None
        if o.verbose:
            print(f"sendmail: could not wake the server: {e}", file=err)
    if o.verbose:
        if queued is None:
            print("sendmail: no server running: `carteiro serve` will send it", file=err)
        else:
            ids = [q[1] for q in queued if len(q) == 2 and q[0] == name]
            what = f"queued as {ids[0]}" if ids else "taken by the server"
            print(f"sendmail: {name}: {what}", file=err)
    return EX_OK


# ---- -bv, -bp, -q ----------------------------------------------------------------------------


def verify(o: Options, out: TextIO, err: TextIO) -> int:
    """-bv: say for each recipient whether and how it would be delivered (sendmail's form)."""
    from carteiro.config import ConfigError, load
    from carteiro.directory.accounts import Directory, DirectoryError

    if not o.recipients:
        print("sendmail: no recipients specified", file=err)
        return EX_USAGE
    try:
        cfg = load(data_dir(o))
    except ConfigError as e:
        print(f"sendmail: {e}", file=err)
        return EX_CONFIG
    directory = Directory(cfg.data_dir / "directory.sqlite", static_domains=cfg.domains)
    try:
        domains = list(cfg.domains) or directory.domains()
        origin = domains[0] if domains else cfg.hostname
        status = EX_OK
        for r in o.recipients:
            addr = r if "@" in r else f"{r}@{origin}"
            try:
                check_address(addr, "recipient")
            except AddressError as e:
                print(f"{r}... {e}", file=out)
                status = EX_DATAERR
                continue
            domain = addr.rpartition("@")[2].lower()
            if not directory.is_local_domain(domain) and domain not in cfg.domains:
                route = cfg.transport.get(domain) or cfg.relay.smarthost or f"MX of {domain}"
                print(f"{addr}... deliverable: mailer smtp, via {route}", file=out)
                continue
            try:
                res = directory.resolve(addr)
            except (DirectoryError, ValueError) as e:
                print(f"{addr}... undeliverable: {e}", file=out)
                status = EX_NOUSER
                continue
            if res is None or not (res.local_accounts or res.remote):
                print(f"{addr}... User unknown", file=out)
                status = EX_NOUSER
                continue
            targets = [a for a, _ in res.local_accounts] + list(res.remote)
            print(f"{addr}... deliverable: to {', '.join(targets)}", file=out)
        return status
    finally:
        directory.close()


def queue_run(o: Options, out: TextIO, err: TextIO) -> int:
    from carteiro.cli_queue import request_queue
    from carteiro.queue.service import QueueBusy

    try:
        answer = request_queue(data_dir(o) / QUEUE_SUBDIR, {"op": "flush"})
    except QueueBusy as e:
        print(f"sendmail: {e}", file=err)
        return EX_TEMPFAIL
    except PermissionError as e:
        print(f"sendmail: {e}", file=err)
        return EX_NOPERM
    if not answer.get("ok"):
        print(f"sendmail: {answer.get('error', 'queue run failed')}", file=err)
        return EX_TEMPFAIL
    if o.verbose:
        print(f"sendmail: {answer.get('count', 0)} message(s) scheduled now", file=out)
    return EX_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        o = parse_args(argv)
    except UsageError as e:
        print(f"sendmail: {e}", file=sys.stderr)
        return EX_USAGE
    try:
        if o.queue_run:
            return queue_run(o, sys.stdout, sys.stderr)
        if o.mode == "p":
            from carteiro.cli_queue import mailq

            return mailq(data_dir(o) / QUEUE_SUBDIR, sys.stdout, sys.stderr)
        if o.mode == "v":
            return verify(o, sys.stdout, sys.stderr)
        if o.mode == "s":
            from carteiro.cli_sendmail_smtp import serve_stdio

            return serve_stdio(o, sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
        return submit(o, sys.stdin.buffer, sys.stderr)
    except KeyboardInterrupt:
        return EX_TEMPFAIL
    except Exception as e:  # never a traceback for the caller's log; nothing was accepted
        print(f"sendmail: internal error: {e!r}", file=sys.stderr)
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())

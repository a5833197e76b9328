"""`carteiro-sendmail -bs`: an SMTP dialogue on standard input/output (RFC 5321), for programs that
speak SMTP to a local sendmail (some MUAs, `mutt -bs` style set-ups).

Runs the same sans-IO machine as the server; each accepted message goes to the maildrop (as
`carteiro-sendmail` without -bs) and the server is woken. No AUTH, no STARTTLS: the caller is a
local user of this host, and is answered as the owner of the process.
"""

from __future__ import annotations

import socket
from typing import BinaryIO, TextIO

from carteiro.cli_sendmail import (
    EX_OK,
    EX_TEMPFAIL,
    QUEUE_SUBDIR,
    Options,
    data_dir,
    drop,
    wake,
)
from carteiro.proto.smtp import commands as C
from carteiro.proto.smtp import replies as R
from carteiro.proto.smtp.replies import Reply, multiline
from carteiro.proto.smtp.server import (
    AuthLine,
    BodyData,
    ChunkEnd,
    ConnectionClosed,
    DataEnd,
    Invalid,
    Limits,
    NeedData,
    ServerMachine,
)
from carteiro.queue.maildrop import DropEnvelope

MAX_SIZE = 256 * 1024 * 1024


def serve_stdio(o: Options, stdin: BinaryIO, stdout: BinaryIO, err: TextIO) -> int:
    host = socket.getfqdn()
    root = data_dir(o) / QUEUE_SUBDIR
    m = ServerMachine(
        Limits(
            max_message_size=MAX_SIZE,
            max_recipients=1000,
            bare_newline="normalise",  # local programs often write bare LF (Postfix accepts it)
        )
    )
    sender: str | None = None
    rcpts: list[str] = []
    body = bytearray()
    status = EX_OK

    def send(reply: Reply) -> None:
        stdout.write(m.send(reply))

    stdout.write(Reply(220, "", f"{host} ESMTP carteiro-sendmail").wire)
    while True:
        ev = m.next_event()
        if isinstance(ev, NeedData):
            stdout.flush()
            data = stdin.read1(65536) if hasattr(stdin, "read1") else stdin.read(65536)
            m.receive_data(data)
            continue
        if isinstance(ev, ConnectionClosed):
            break
        if isinstance(ev, Invalid):
            send(ev.reply)
        elif isinstance(ev, C.Helo):
            sender, rcpts = None, []
            if ev.extended:
                send(
                    multiline(
                        250,
                        host,
                        ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"),
                    )
                )
            else:
                send(Reply(250, "", host))
        elif isinstance(ev, C.Mail):
            sender, rcpts = ev.reverse_path, []
            body.clear()
            send(R.R_250_SENDER_OK)
        elif isinstance(ev, C.Rcpt):
            rcpts.append(ev.forward_path)
            send(R.R_250_RCPT_OK)
        elif isinstance(ev, C.Data):
            send(R.R_354_DATA)
        elif isinstance(ev, BodyData):
            body += ev.data
        elif isinstance(ev, (DataEnd, ChunkEnd)):
            if isinstance(ev, ChunkEnd) and not ev.last:
                send(ev.problem or R.R_250_CHUNK_OK)
                continue
            if ev.problem is not None:
                send(ev.problem)
                continue
            env = DropEnvelope(recipients=rcpts, sender=sender or "")
            try:
                name = drop(root, env, bytes(body))
            except OSError as e:
                print(f"sendmail: cannot write to the maildrop: {e}", file=err)
                send(R.R_451_LOCAL_ERROR)
                status = EX_TEMPFAIL
                continue
            finally:
                body.clear()
            try:
                wake(root)
            except OSError:
                pass  # it waits in the maildrop; the server polls it
            send(R.R_250_QUEUED.with_text(f"Ok: queued as {name}"))
        elif isinstance(ev, C.Rset):
            sender, rcpts = None, []
            body.clear()
            send(R.R_250_RESET)
        elif isinstance(ev, C.Noop):
            send(R.R_250_OK)
        elif isinstance(ev, C.Quit):
            send(R.R_221_BYE)
            break
        elif isinstance(ev, C.Vrfy):
            send(R.R_252_VRFY)
        elif isinstance(ev, C.Help):
            send(R.R_214_HELP)
        elif isinstance(ev, (C.Auth, AuthLine, C.StartTLS, C.Expn)):
            send(R.R_502_NOT_IMPLEMENTED.with_text("Not available on a local sendmail -bs"))
        else:
            send(R.R_502_NOT_IMPLEMENTED)
        if m.closed:
            break
    stdout.flush()
    return status

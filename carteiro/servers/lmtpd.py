"""The LMTP server (RFC 2033): another MTA on this host (Postfix's `lmtp:` transport, a list
manager) hands mail for our local recipients into the store, and hears one reply per recipient.

The SMTP session with LMTP's differences: LHLO instead of EHLO, no relaying (a recipient outside
our domains is refused at RCPT), no AUTH or STARTTLS (listen on loopback or a Unix socket), and
after the message each accepted recipient is delivered on its own (aliases, filters, quota) and
answered on its own: one recipient over quota does not make the others' MTA retry them.
"""

from __future__ import annotations

import asyncio
import logging

from carteiro.net.listener import Connection, Listener
from carteiro.proto.smtp import commands as C
from carteiro.proto.smtp import replies as R
from carteiro.proto.smtp.replies import Reply, multiline
from carteiro.proto.smtp.server import ChunkEnd, ServerMachine
from carteiro.servers.context import ServerContext
from carteiro.servers.smtpd import Session, SMTPServer, Transaction, _refuse

log = logging.getLogger("carteiro.lmtp")

SERVICE = "lmtp"


class LMTPServer(SMTPServer):
    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self.trace = ctx.tracing("lmtp")
        # RFC 2033 4: the greeting names the protocol
        self.greeting = Reply(220, "", f"{self.hostname} LMTP carteiro")
        self.lhlo_keywords = (
            "PIPELINING",  # RFC 2033 5: required
            f"SIZE {self.cfg.max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",  # RFC 2033 5: required
        )

    async def handle(self, conn: Connection) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._close_idle_at_shutdown())
        await LMTPSession(self, conn).run()


def listeners(ctx: ServerContext) -> list[Listener]:
    address = ctx.config.listen.lmtp
    if not address:
        return []
    server = LMTPServer(ctx)
    cfg = ctx.config.smtp
    return [
        Listener(
            SERVICE,
            address,
            server.handle,
            max_connections=cfg.max_connections,
            # one local MTA opens many connections from one address (or none: a Unix socket)
            max_per_ip=cfg.max_connections,
            refuse=_refuse,
        )
    ]


class LMTPSession(Session):
    PROTOCOL = "lmtp"
    server: LMTPServer

    def __init__(self, server: LMTPServer, conn: Connection) -> None:
        super().__init__(server, conn)
        self.machine = ServerMachine(server.limits, tls=conn.tls is not None, lmtp=True)

    def _starttls_offered(self) -> bool:
        return False

    def _junk(self) -> None:
        """No junk command limit: the client is the local MTA, which may keep one connection
        for thousands of messages with an RSET between them (Dovecot's LMTP has none either)."""

    def _auth_offered(self) -> bool:
        return False

    async def _auth(self, cmd: C.Auth) -> None:
        self.reply(R.R_502_NOT_IMPLEMENTED.with_text("AUTH not available over LMTP"))

    async def _starttls(self) -> None:
        self.reply(R.R_502_NOT_IMPLEMENTED.with_text("STARTTLS not available over LMTP"))

    def _helo(self, cmd: C.Helo) -> None:
        self._abort_transaction()
        greet = f"{self.server.hostname} Hello {cmd.name}"
        self.reply(multiline(250, greet, self.server.lhlo_keywords))

    def _protocol(self, txn: Transaction) -> str:
        return "UTF8LMTP" if txn.mail.smtputf8 else "LMTP"  # RFC 3848, RFC 6531 4.3

    def _rcpt(self, cmd: C.Rcpt) -> None:
        domain = cmd.forward_path.rpartition("@")[2]
        if cmd.forward_path != "postmaster" and not self.ctx.directory.is_local_domain(domain):
            # LMTP delivers; it never relays (RFC 2033 1: "not for use over the wide area")
            self.reply(
                Reply(550, "5.1.2", f"<{cmd.forward_path}>: not a local domain; no relaying")
            )
            return
        super()._rcpt(cmd)

    def _reply_each(self, replies: list[Reply]) -> None:
        data = self.machine.send_per_recipient(replies)
        if self.tracer.enabled:
            self.tracer.server(data)
        self.out.append(data)
        self.out_size += len(data)

    async def _chunk_end(self, ev: ChunkEnd) -> None:
        # CHUNKING is not offered over LMTP; a client that sends BDAT anyway gets the
        # per-recipient answers at LAST all the same
        if ev.last and ev.problem is not None:
            n = self.machine.rcpt_count
            self._abort_transaction()
            self._reply_each([ev.problem] * n)
            return
        await super()._chunk_end(ev)

    async def _end_of_data(self, problem: Reply | None) -> None:
        """RFC 2033 4.2: one reply per accepted recipient, in RCPT order; each delivered as a
        transaction of its own."""
        txn, self.txn = self.txn, None
        self.data_deadline = None
        n = self.machine.rcpt_count
        if txn is None or n == 0:  # pragma: no cover - the machine ends data in a transaction
            self.reply(problem or R.R_503_NEED_MAIL)
            return
        if problem is not None or txn.failed is not None:
            self._drop_writer(txn)
            self._reply_each([problem or txn.failed or R.R_451_LOCAL_ERROR] * n)
            return
        try:
            writer = txn.writer or self._open_writer(txn)
            source = writer.finish()
        except OSError as e:
            self._drop_writer(txn)
            self._reply_each([self._write_error(e, txn, "message data")] * n)
            return
        replies: list[Reply] = []
        try:
            for r in txn.recipients:
                one = Transaction(
                    txn.mail,
                    id=txn.id,
                    recipients=[r],
                    return_path_len=txn.return_path_len,
                    started=txn.started,
                    digest=txn.digest.copy(),
                    has_message_id=txn.has_message_id,
                    # a list address keeps its loop check (our own List-Id coming back)
                    list_recipients=[a for a in txn.list_recipients if a == r.address],
                    header=txn.header,
                )
                reply = await self._deliver(one, source)
                if reply.code == 250:
                    reply = Reply(250, "2.1.5", f"<{r.address}> delivered ({txn.id})")
                else:
                    reply = reply.with_text(f"<{r.address}>: {reply.text}")
                replies.append(reply)
        finally:
            self._drop_writer(txn)
        self._reply_each(replies)

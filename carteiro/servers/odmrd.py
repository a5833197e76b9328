"""The ODMR server (RFC 2645, On-Demand Mail Relay) on `[listen] odmr`: a site that is not always
connected authenticates, asks with ATRN for the mail held for its domains, and the connection
turns around: this server becomes the SMTP client and delivers that mail to the site.

The safe TURN: only the account named for a held domain (`carteiro domain add D --hold
--atrn-user U`) may take its mail, and only after AUTH (after TLS unless [smtp]
require_tls_for_auth is off). No MAIL here: this port does not accept mail.
"""

from __future__ import annotations

import asyncio
import logging

from carteiro.net.listener import Connection, Listener
from carteiro.net.smtp_stream import SessionFailed, StreamSession
from carteiro.proto.smtp import commands as C
from carteiro.proto.smtp import replies as R
from carteiro.proto.smtp.replies import Reply, multiline
from carteiro.servers.context import ServerContext
from carteiro.servers.smtp.auth import mechanisms
from carteiro.servers.smtpd import Session, SMTPServer, _refuse

log = logging.getLogger("carteiro.odmr")

SERVICE = "odmr"
TURNAROUND_TIMEOUT = 300.0  # RFC 5321 4.5.3.2: replies may take 5 minutes


class ODMRServer(SMTPServer):
    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self.trace = ctx.tracing("smtp")
        self.greeting = Reply(220, "", f"{self.hostname} ESMTP carteiro on-demand mail relay")

    async def handle(self, conn: Connection) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._close_idle_at_shutdown())
        await ODMRSession(self, conn).run()


def listeners(ctx: ServerContext) -> list[Listener]:
    address = ctx.config.listen.odmr
    if not address or ctx.held is None:
        return []
    server = ODMRServer(ctx)
    cfg = ctx.config.smtp
    return [
        Listener(
            SERVICE,
            address,
            server.handle,
            max_connections=cfg.max_connections,
            max_per_ip=cfg.max_connections_per_ip,
            refuse=_refuse,
        )
    ]


class ODMRSession(Session):
    PROTOCOL = "odmr"
    server: ODMRServer

    def _auth_offered(self) -> bool:
        return self.conn.tls is not None or not self.cfg.require_tls_for_auth

    def _helo(self, cmd: C.Helo) -> None:
        self._abort_transaction()
        greet = f"{self.server.hostname} Hello {cmd.name} [{self.conn.peer_ip}]"
        if not cmd.extended:
            self.reply(Reply(250, "", greet))
            return
        # RFC 2645 4: an ODMR server offers AUTH and ATRN (and STARTTLS to protect AUTH)
        ext = ["ENHANCEDSTATUSCODES", "ATRN"]
        if self._starttls_offered():
            ext.append("STARTTLS")
        if self._auth_offered() and self.auth_user is None:
            ext.append("AUTH " + " ".join(mechanisms()))
        self.reply(multiline(250, greet, tuple(ext)))

    def _mail(self, cmd: C.Mail) -> None:
        self.reply(R.R_502_NOT_IMPLEMENTED.with_text("No mail is accepted on the ODMR port"))

    async def _command(self, cmd: C.Command) -> None:
        if isinstance(cmd, C.Atrn):
            await self._atrn(cmd)
        elif isinstance(cmd, C.Etrn):
            self.reply(R.R_502_NOT_IMPLEMENTED.with_text("Use ATRN on this port"))
        else:
            await super()._command(cmd)

    async def _atrn(self, cmd: C.Atrn) -> None:
        held = self.ctx.held
        assert held is not None  # no listener without a queue
        if self.auth_user is None:
            self.reply(R.R_530_AUTH_REQUIRED)  # RFC 2645 4.1: ATRN needs AUTH first
            return
        user = self.auth_user.lower()
        mine = {d for d, u in self.ctx.directory.held_domains().items() if u == user}
        wanted = set(cmd.domains) or mine
        if not wanted or not wanted <= mine:
            # RFC 2645 4.1: 450 when the client may not have (some of) these domains
            self.reply(Reply(450, "4.7.0", "ATRN request refused"))
            return
        if held.waiting(wanted) == 0:
            self.reply(Reply(453, "4.7.0", "You have no mail"))  # RFC 2645 4.1
            return
        self.reply(Reply(250, "2.0.0", "OK now reversing the connection"))
        await self.flush()
        self.tracer.note(f"ATRN by {user} for {','.join(sorted(wanted))}: turning around")
        # RFC 2645 5: we are the SMTP client now; the site speaks first (its 220)
        session = StreamSession(
            self.conn.reader,
            self.conn.writer,
            self.server.hostname,
            lmtp=False,
            timeout=TURNAROUND_TIMEOUT,
        )
        peer = f"{user} [{self.conn.peer_ip}] (ATRN)"
        try:
            await session.open()
            n = await held.atrn(wanted, session.transaction, peer)
            await session.quit()
            log.info("odmr: %s took %d message(s) for %s", user, n, ",".join(sorted(wanted)))
        except SessionFailed as e:
            log.warning("odmr: %s: the turned-around session failed: %s", user, e)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
            log.warning("odmr: %s: connection lost after ATRN: %r", user, e)
        self.done = True

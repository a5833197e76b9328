"""The IMAP4rev1/IMAP4rev2 server: listeners `imap` (STARTTLS) and `imaps` (implicit TLS, RFC 8314),
and the state every session shares (capabilities, the parsed-message cache).

Sessions are in servers/imap/session.py, the command handlers in servers/imap/<family>.py.
This module never touches storage or sockets directly: the store comes from the ServerContext
and the sockets from net.listener.
"""

from __future__ import annotations

import asyncio

from carteiro import __version__
from carteiro.config import IMAPConfig
from carteiro.mail.imap_view import AppendLog, RecentClaims
from carteiro.mail.message_cache import MessageCache
from carteiro.mail.metadata_db import METADATA_FILE, MetadataLimits, MetadataStore
from carteiro.net.listener import Connection, Listener, UserIPCounter
from carteiro.proto.imap.receiver import Receiver
from carteiro.servers.context import ServerContext
from carteiro.servers.imap import (  # noqa: F401  (registers the handlers)
    auth,
    compress,
    contexts,
    fetch,
    idle,
    mailbox,
    metadata,
    notify,
    quota,
    search,
    select,
    sort,
    store,
)
from carteiro.servers.imap.session import Session, State

# Everything advertised is complete (RFC 9051 7.2.2: a capability is a promise).
_EXTENSIONS = (
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "ESEARCH",
    "SEARCHRES",
    "SORT",
    "SORT=DISPLAY",
    "ESORT",
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "I18NLEVEL=1",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "WITHIN",
    "STATUS=SIZE",
    "OBJECTID",
    "SAVEDATE",
    "MULTIAPPEND",
    "REPLACE",
    "BINARY",
    "UTF8=ACCEPT",
    "CONDSTORE",
    "QRESYNC",
    "COMPRESS=DEFLATE",
    "CATENATE",
    "PREVIEW",
    "NOTIFY",
    "METADATA",
    "METADATA-SERVER",
)


class IMAPServer:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.config: IMAPConfig = ctx.config.imap
        self.tracing = ctx.tracing("imap")
        # shared with the servers a reload (SIGHUP) builds, so a reload neither empties nor
        # doubles them, and METADATA changes reach the NOTIFY listeners of every session
        size = self.config.message_cache_mb * 1024 * 1024
        self.cache = ctx.keep("imap.cache", lambda: MessageCache(size))
        self.sorts = ctx.keep("imap.sorts", sort.ResultCache)  # whole-mailbox SORT/THREAD answers
        self.appended = ctx.keep("imap.appended", AppendLog)  # what APPEND told the views
        self.claims = ctx.keep("imap.claims", RecentClaims)  # \Recent claimed in this process
        self.userip = ctx.keep("imap.userip", UserIPCounter)  # logged-in sessions per account
        cfg = self.config
        self.metadata = ctx.keep(  # RFC 5464 entries, DATA/metadata.sqlite
            "imap.metadata", lambda: MetadataStore(ctx.config.data_dir / METADATA_FILE)
        )
        self.metadata.limits = MetadataLimits(  # a reload changes the limits only
            cfg.metadata_max_value,
            cfg.metadata_max_entries_per_mailbox,
            cfg.metadata_max_entries,
            cfg.metadata_max_size,
        )
        self.greeting = "carteiro ready."
        literal = "LITERAL+" if self.config.literal_plus else "LITERAL-"
        self._pre = f"IMAP4rev1 IMAP4rev2 {literal} SASL-IR ID ENABLE IDLE"
        self._post = (
            f"IMAP4rev1 IMAP4rev2 {literal} "
            + " ".join(_EXTENSIONS)
            + f" APPENDLIMIT={self.config.max_literal_size}"
        )
        self.version = __version__

    @property
    def appendlimit(self) -> int:
        return self.config.max_literal_size

    def plaintext_ok(self, session: Session) -> bool:
        return session.tls or self.config.allow_plaintext_auth

    def capabilities(self, session: Session) -> str:
        if session.state is not State.NOT_AUTHENTICATED:
            return self._post
        caps = self._pre
        if not session.tls:
            caps += " STARTTLS"
        # RFC 9051 6.2.3 / RFC 8314: no plaintext passwords before TLS unless configured.
        caps += " AUTH=PLAIN" if self.plaintext_ok(session) else " LOGINDISABLED"
        return caps

    def new_receiver(self) -> Receiver:
        return Receiver(
            max_line=self.config.max_line_length,
            max_literal=self.config.max_literal_size,
            literal_plus=self.config.literal_plus,
        )

    async def handle(self, conn: Connection, implicit_tls: bool = False) -> None:
        await Session(self, conn, implicit_tls).run()

    async def refuse(self, writer: asyncio.StreamWriter, ip: str) -> None:
        writer.write(b"* BYE Too many connections, try again later\r\n")
        await writer.drain()


def listeners(ctx: ServerContext) -> list[Listener]:
    """`imap` (STARTTLS) and `imaps` (implicit TLS); an empty address disables either."""
    server = IMAPServer(ctx)
    cfg = ctx.config.imap
    out: list[Listener] = []

    async def plain(conn: Connection) -> None:
        await server.handle(conn, implicit_tls=False)

    async def tls(conn: Connection) -> None:
        await server.handle(conn, implicit_tls=True)

    if ctx.config.listen.imap:
        out.append(
            Listener(
                "imap",
                ctx.config.listen.imap,
                plain,
                None,
                max_connections=cfg.max_connections,
                max_per_ip=cfg.max_connections_per_ip,
                refuse=server.refuse,
                trusted=ctx.trusted.trusts,
            )
        )
    if ctx.config.listen.imaps:
        out.append(
            Listener(
                "imaps",
                ctx.config.listen.imaps,
                tls,
                ctx.tls,
                max_connections=cfg.max_connections,
                max_per_ip=cfg.max_connections_per_ip,
                refuse=server.refuse,
                trusted=ctx.trusted.trusts,
            )
        )
    return out

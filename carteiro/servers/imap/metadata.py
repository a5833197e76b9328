"""GETMETADATA and SETMETADATA (RFC 5464): server entries (mailbox "") and mailbox entries, under
/private and /shared, kept by mail.metadata_db keyed by the mailbox's stable id.

One user per account and no ACLs: /shared entries are the account's like /private ones (so
NOPRIVATE never applies). /shared/admin is the server's (RFC 5464 6.2.1): the configured URI or
mailto:postmaster@<first domain>, read-only. A change is announced to this process's NOTIFY
sessions (MailboxMetadataChange, ServerMetadataChange).
"""

from __future__ import annotations

import asyncio

from carteiro.mail.metadata_db import SERVER, TooLarge, TooMany
from carteiro.proto.imap import metadata as pm
from carteiro.servers.imap import render
from carteiro.servers.imap.session import Result, Session, command, no, ok, undecodable

ADMIN = "/shared/admin"


def admin_uri(s: Session) -> str:
    cfg = s.server.ctx.config
    if cfg.imap.metadata_admin:
        return cfg.imap.metadata_admin
    domains = cfg.domains or s.server.ctx.directory.domains()
    return f"mailto:postmaster@{domains[0] if domains else cfg.hostname}"


async def _mailbox_id(s: Session, name: str) -> int | Result:
    """SERVER for "", else the mailbox's id (NO [NONEXISTENT] for a missing or \\Noselect one:
    a placeholder left by DELETE is no mailbox, and its entries went with the DELETE)."""
    if name == "":
        return SERVER
    if refused := undecodable(name):
        return refused
    assert s.store is not None
    info = await s.store.get_mailbox(name)  # MailboxNotFound: NO [NONEXISTENT]
    if not info.selectable:
        return no("Mailbox doesn't exist", "NONEXISTENT")
    return info.id


def value(data: bytes, utf8: bool) -> bytes:
    """RFC 5464 5: value = nstring / literal8 (binary values, with NUL, need a literal8)."""
    if b"\0" in data:
        return render.literal(data, binary=True)
    return render.string(data, utf8)


@command(pm.GetMetadata)
async def getmetadata(s: Session, tag: str, req: pm.GetMetadata) -> Result:
    mid = await _mailbox_id(s, req.mailbox)
    if isinstance(mid, Result):
        return mid
    md = s.server.metadata
    found = await asyncio.to_thread(md.get, s.account, mid, req.entries, req.depth)
    if mid == SERVER:
        # /shared/admin is never stored (SETMETADATA refuses it): the configured value, in the
        # place it was asked for, or among /shared's descendants
        admin = admin_uri(s).encode()
        found = [(n, admin if n == ADMIN else v) for n, v in found]
        if req.depth != 0 and "/shared" in req.entries and all(n != ADMIN for n, _ in found):
            found.append((ADMIN, admin))
    parts: list[bytes] = []
    longest = -1
    for name, data in found:
        if data is not None and req.maxsize is not None and len(data) > req.maxsize:
            longest = max(longest, len(data))  # RFC 5464 4.2.1: left out, and said so
            continue
        parts.append(
            render.astring(name) + b" " + (b"NIL" if data is None else value(data, s.utf8))
        )
    if parts:
        box = b'""' if mid == SERVER else s.mbox(req.mailbox)
        s.write(b"* METADATA " + box + b" (" + b" ".join(parts) + b")\r\n")
    if longest >= 0:
        return ok("Getmetadata completed.", f"METADATA LONGENTRIES {longest}")
    return ok("Getmetadata completed.")


@command(pm.SetMetadata)
async def setmetadata(s: Session, tag: str, req: pm.SetMetadata) -> Result:
    mid = await _mailbox_id(s, req.mailbox)
    if isinstance(mid, Result):
        return mid
    if mid == SERVER and any(name == ADMIN for name, _ in req.values):
        return no("/shared/admin is set by the administrator", "NOPERM")
    md = s.server.metadata
    assert s.store is not None
    live = [b.id for b in await s.store.list_mailboxes() if b.selectable]
    try:
        await asyncio.to_thread(md.forget_missing, s.account, live)
        changed = await asyncio.to_thread(md.set, s.account, mid, req.values)
    except TooLarge as e:
        return no("Value too large", f"METADATA MAXSIZE {e.limit}")
    except TooMany:
        return no("Too many entries", "METADATA TOOMANY")
    if changed:
        md.announce(s.account, mid, changed)
    return ok("Setmetadata completed.")


async def mailbox_deleted(s: Session, mailbox_id: int) -> None:
    """DELETE's hook: the mailbox's entries go with it (a mailbox created later under the same
    name, even one reusing a \\Noselect placeholder's id, starts empty)."""
    md = s.server.metadata
    await asyncio.to_thread(md.drop_mailbox, s.account, mailbox_id)

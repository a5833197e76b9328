"""GETQUOTA and GETQUOTAROOT (RFC 9208): one quota root per account, named "", holding every
mailbox of the account, with the STORAGE (in units of 1024 octets, RFC 9208 5.1) and MESSAGE
resources that have a limit. SETQUOTA is not offered (QUOTASET is not advertised): limits are set
with `carteiro user quota` or the [quota] defaults. Refusals (NO [OVERQUOTA]) come from the store.
"""

from __future__ import annotations

from carteiro.proto.imap import commands as c
from carteiro.servers.imap.session import Result, Session, State, command, no, ok, undecodable
from carteiro.store.api import Quota

ROOT = '""'


def quota_line(q: Quota) -> bytes | None:
    """`* QUOTA "" (...)`, or None when the account has no limit (no quota root then)."""
    parts = []
    if q.storage_limit is not None:
        # RFC 9208 5.1: usage and limit in KiB, usage rounded up
        parts.append(b"STORAGE %d %d" % (-(-q.storage // 1024), q.storage_limit // 1024))
    if q.message_limit is not None:
        parts.append(b"MESSAGE %d %d" % (q.messages, q.message_limit))
    if not parts:
        return None
    return b"* QUOTA " + ROOT.encode() + b" (" + b" ".join(parts) + b")\r\n"


@command(c.GetQuotaRoot, min_state=State.AUTHENTICATED)
async def getquotaroot(s: Session, tag: str, req: c.GetQuotaRoot) -> Result:
    if refused := undecodable(req.mailbox):
        return refused
    assert s.store is not None
    info = await s.store.get_mailbox(req.mailbox)  # NO [NONEXISTENT] when missing
    line = quota_line(await s.store.quota())
    # RFC 9208 4.3: the roots of the mailbox (none when the account has no limit), then each
    s.write(b"* QUOTAROOT " + s.mbox(info.name) + (b" " + ROOT.encode() if line else b"") + b"\r\n")
    if line:
        s.write(line)
    return ok("Getquotaroot completed.")


@command(c.GetQuota, min_state=State.AUTHENTICATED)
async def getquota(s: Session, tag: str, req: c.GetQuota) -> Result:
    assert s.store is not None
    line = quota_line(await s.store.quota()) if req.root == "" else None
    if line is None:
        return no("No such quota root", "NONEXISTENT")
    s.write(line)
    return ok("Getquota completed.")

"""QUOTA (RFC 9208): GETQUOTAROOT and GETQUOTA with the account's one root "", STORAGE in KiB
and MESSAGE, APPEND and COPY refused with [OVERQUOTA] (RFC 5530), MOVE within the root
allowed, STATUS DELETED-STORAGE; an account without limits has no quota root. Both stores."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    play,
    server,
    start_server,
    tls_files,
)

LOGIN = f'LOGIN {USER} "{PASSWORD}"'
MSG = b"Subject: q\r\n\r\n" + b"x" * 2034 + b"\r\n"  # 2,050 octets


async def test_quota_transcript(server):
    acct = await server.account()
    for _ in range(2):
        await acct.append("INBOX", MSG)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 GETQUOTAROOT INBOX
S: * QUOTAROOT INBOX
S: a2 OK Getquotaroot completed.
C: a3 GETQUOTA ""
S: a3 NO [NONEXISTENT] No such quota root
""",
    )
    await acct.set_quota(4 * 1024, 10)  # already over: 4,100 octets used
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 GETQUOTAROOT INBOX
S: * QUOTAROOT INBOX ""
S: * QUOTA "" (STORAGE 5 4 MESSAGE 2 10)
S: a2 OK Getquotaroot completed.
C: a3 GETQUOTA ""
S: * QUOTA "" (STORAGE 5 4 MESSAGE 2 10)
S: a3 OK Getquota completed.
C: a4 GETQUOTA "other"
S: a4 NO [NONEXISTENT] No such quota root
C: a5 GETQUOTAROOT Nonesuch
S: a5 NO [NONEXISTENT] <...>
C: a6 APPEND INBOX {{10+}}
C: Subject: x
S: a6 NO [OVERQUOTA] Quota exceeded
C: a7 SELECT INBOX
S: <...>
S: <...>
S: * 2 EXISTS
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a7 OK [READ-WRITE] Select completed.
C: a8 COPY 1 Archive
S: a8 NO [OVERQUOTA] Quota exceeded
C: a9 MOVE 1 Archive
S: * OK [COPYUID <...>
S: * 1 EXPUNGE
S: a9 OK <...>
C: b1 STORE 1 +FLAGS.SILENT (\\Deleted)
S: b1 OK <...>
C: b2 STATUS Archive (MESSAGES DELETED DELETED-STORAGE)
S: * STATUS Archive (MESSAGES 1 DELETED 0 DELETED-STORAGE 0)
S: b2 OK Status completed.
C: b3 STATUS INBOX (DELETED DELETED-STORAGE)
S: * STATUS INBOX (DELETED 1 DELETED-STORAGE 2050)
S: b3 OK Status completed.
""",
    )

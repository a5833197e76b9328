"""Greeting, capabilities, authentication and the any-state commands (RFC 9051 6.1, 6.2)."""

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


async def test_capability_and_login(server):
    await play(
        server,
        f"""
S: * OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS AUTH=PLAIN] carteiro ready.
C: a1 CAPABILITY
S: * CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS AUTH=PLAIN
S: a1 OK Capability completed.
C: a2 NOOP
S: a2 OK NOOP completed.
C: a3 LOGIN {USER} "{PASSWORD}"
S: a3 OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES STATUS=SIZE BINARY UTF8=ACCEPT APPENDLIMIT=67108864] Logged in
C: a4 LOGOUT
S: * BYE Logging out
S: a4 OK Logout completed.
""".replace("S: * OK [CAPABILITY", "S: * OK [CAPABILITY"),
    )

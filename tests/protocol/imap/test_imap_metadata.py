"""METADATA (RFC 5464): GETMETADATA with MAXSIZE and DEPTH, SETMETADATA all-or-none, server
entries (METADATA-SERVER) and mailbox entries under /private and /shared, the response codes
(LONGENTRIES, MAXSIZE, TOOMANY), /shared/admin, and entries that follow a mailbox's id: kept
across RENAME and a restart, gone with DELETE. Both stores."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    make_config,
    play,
    server,
    start_server,
    tls_files,
)

LOGIN = f'LOGIN {USER} "{PASSWORD}"'


async def test_capabilities_advertised(server):
    c = await server.connect(login=True)
    caps = (await c.cmd("CAPABILITY"))[0].split()
    assert {"METADATA", "METADATA-SERVER", "NOTIFY"} <= set(caps)


async def test_rfc5464_examples(server):
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
# RFC 5464 4.2: an entry without a value (Dovecot answers NIL for it)
C: a2 GETMETADATA "" /shared/comment
S: * METADATA "" (/shared/comment NIL)
S: a2 OK Getmetadata completed.
C: a3 SETMETADATA INBOX (/private/comment "My comment" /shared/comment "Its sunny outside!")
S: a3 OK Setmetadata completed.
# RFC 5464 4.4.1 (erratum 3868): several entries, one response
C: a4 GETMETADATA "INBOX" (/private/comment /shared/comment)
S: * METADATA INBOX (/private/comment "My comment" /shared/comment "Its sunny outside!")
S: a4 OK Getmetadata completed.
# entry names are case-insensitive
C: a5 GETMETADATA INBOX /Private/Comment
S: * METADATA INBOX (/private/comment "My comment")
S: a5 OK Getmetadata completed.
# RFC 5464 4.2.1 MAXSIZE: the longer value is left out and its size said
C: a6 GETMETADATA (MAXSIZE 10) INBOX (/private/comment /shared/comment)
S: * METADATA INBOX (/private/comment "My comment")
S: a6 OK [METADATA LONGENTRIES 18] Getmetadata completed.
C: a7 SETMETADATA INBOX (/private/vendor/carteiro/a "1" /private/vendor/carteiro/a/b "2")
S: a7 OK Setmetadata completed.
# RFC 5464 4.2.2 DEPTH: 1 is the children, infinity every descendant
C: a8 GETMETADATA (DEPTH 1) INBOX /private/vendor/carteiro
S: * METADATA INBOX (/private/vendor/carteiro NIL /private/vendor/carteiro/a "1")
S: a8 OK Getmetadata completed.
C: a9 GETMETADATA (DEPTH infinity) INBOX /private
S: * METADATA INBOX (/private/comment "My comment" /private/vendor/carteiro/a "1" /private/vendor/carteiro/a/b "2")
S: a9 OK Getmetadata completed.
# NIL removes (RFC 5464 4.3)
C: a10 SETMETADATA INBOX (/private/comment NIL)
S: a10 OK Setmetadata completed.
C: a11 GETMETADATA INBOX /private/comment
S: * METADATA INBOX (/private/comment NIL)
S: a11 OK Getmetadata completed.
# server entries (METADATA-SERVER); /shared/admin is the postmaster, read-only
C: a12 SETMETADATA "" (/shared/comment "hello")
S: a12 OK Setmetadata completed.
C: a13 GETMETADATA "" (/shared/comment /shared/admin)
S: * METADATA "" (/shared/comment "hello" /shared/admin "mailto:postmaster@example.test")
S: a13 OK Getmetadata completed.
C: a14 SETMETADATA "" (/shared/admin "mailto:me@example.test")
S: a14 NO [NOPERM] /shared/admin is set by the administrator
C: a15 GETMETADATA Nonesuch /private/comment
S: a15 NO [NONEXISTENT] <...>
C: a16 SETMETADATA INBOX (/comment "x")
S: a16 BAD <...>
C: a17 SETMETADATA INBOX (/private/a%b "x")
S: a17 BAD <...>
C: a18 SETMETADATA INBOX (/private/ "x")
S: a18 BAD <...>
C: a19 GETMETADATA (DEPTH 2) INBOX /private
S: a19 BAD <...>
# a binary value goes out as a literal8
C: a20 SETMETADATA INBOX (/private/bin ~{{3+}}
C: a\x00b)
S: a20 OK Setmetadata completed.
""",
    )


async def test_binary_value_round_trip(server):
    c = await server.connect(login=True)
    await c.send(b"b1 SETMETADATA INBOX (/shared/bin ~{3+}\r\na\x00b)\r\n")
    assert (await c.raw_response("b1")).startswith(b"b1 OK")
    raw = await c.raw_response_of("b2 GETMETADATA INBOX /shared/bin")
    assert raw.startswith(b"* METADATA INBOX (/shared/bin ~{3}\r\na\x00b)\r\n"), raw


async def test_limits(start_server):
    srv = await start_server(
        make_config(
            metadata_max_value=8, metadata_max_entries_per_mailbox=2, metadata_max_entries=3
        )
    )
    await play(
        srv,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SETMETADATA INBOX (/private/a "123456789")
S: a2 NO [METADATA MAXSIZE 8] Value too large
C: a3 SETMETADATA INBOX (/private/a "1" /private/b "2" /private/c "3")
S: a3 NO [METADATA TOOMANY] Too many entries
# all or none: nothing of a3 was kept
C: a4 GETMETADATA (DEPTH infinity) INBOX /private
S: a4 OK Getmetadata completed.
C: a5 SETMETADATA INBOX (/private/a "1" /private/b "2")
S: a5 OK Setmetadata completed.
C: a6 SETMETADATA Sent (/private/a "1" /private/b "2")
S: a6 NO [METADATA TOOMANY] Too many entries
C: a7 SETMETADATA Sent (/private/a "1")
S: a7 OK Setmetadata completed.
# replacing a value or removing one is always possible
C: a8 SETMETADATA INBOX (/private/a "x" /private/b NIL)
S: a8 OK Setmetadata completed.
""",
    )


async def test_entries_follow_the_mailbox(start_server):
    srv = await start_server()
    await play(
        srv,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 CREATE Work/Sub
S: a2 OK <...>
C: a3 SETMETADATA Work (/private/comment "w")
S: a3 OK <...>
C: a4 SETMETADATA Work/Sub (/private/comment "s")
S: a4 OK <...>
C: a5 RENAME Work Play
S: a5 OK <...>
C: a6 GETMETADATA Play/Sub /private/comment
S: * METADATA Play/Sub (/private/comment "s")
S: a6 OK <...>
# deleted with an inferior: Play stays as \\Noselect, its entries are gone
C: a7 DELETE Play
S: a7 OK <...>
C: a8 CREATE Play
S: a8 OK <...>
C: a9 GETMETADATA Play /private/comment
S: * METADATA Play (/private/comment NIL)
S: a9 OK <...>
C: a10 DELETE Play/Sub
S: a10 OK <...>
C: a11 CREATE Play/Sub
S: a11 OK <...>
C: a12 GETMETADATA Play/Sub /private/comment
S: * METADATA Play/Sub (/private/comment NIL)
S: a12 OK <...>
C: a13 SETMETADATA Play (/shared/comment "kept")
S: a13 OK <...>
""",
    )
    # durable: a restarted server (another process, as far as the file is concerned) has it
    srv2 = await start_server(restart=srv)
    await play(
        srv2,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 GETMETADATA Play /shared/comment
S: * METADATA Play (/shared/comment "kept")
S: a2 OK <...>
""",
    )

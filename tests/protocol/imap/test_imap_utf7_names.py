"""A mailbox name that is good syntax (an atom, a quoted string, a literal) but not valid modified
UTF-7 names no mailbox: commands on it get NO, never BAD, and LIST/LSUB patterns like it match
nothing (RFC 3501 5.1.3, 7.1.3; RFC 9051 5.1, 7.1). Session 1 logs in first."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import pytest
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
# unterminated; encodes ASCII; two runs that must be one; padding bits set; lone "&"
INVALID = ["&Jjo", "&AGE-", "&-x&", "&Jjo-&Jjo-", "&Jj-", '"Tom&Jerry"']
MSG = b"Subject: x\r\n\r\nhi\r\n"


@pytest.mark.parametrize("name", INVALID)
async def test_commands_on_an_undecodable_name_get_no(server, name):
    before = await (await server.account()).subscriptions()
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 CREATE {name}
S: a2 NO [CANNOT] Mailbox name is not valid modified UTF-7
C: a3 EXAMINE {name}
S: a3 NO [NONEXISTENT] Mailbox name is not valid modified UTF-7
C: a4 STATUS {name} (MESSAGES)
S: a4 NO [NONEXISTENT] Mailbox name is not valid modified UTF-7
C: a5 DELETE {name}
S: a5 NO [NONEXISTENT] Mailbox name is not valid modified UTF-7
C: a6 RENAME {name} Other
S: a6 NO [NONEXISTENT] Mailbox name is not valid modified UTF-7
C: a7 RENAME Drafts {name}
S: a7 NO [CANNOT] Mailbox name is not valid modified UTF-7
C: a8 SUBSCRIBE {name}
S: a8 NO [CANNOT] Mailbox name is not valid modified UTF-7
C: a9 UNSUBSCRIBE {name}
S: a9 NO [NONEXISTENT] Mailbox name is not valid modified UTF-7
C: a10 APPEND {name} {{10+}}
C: Subject: x
S: a10 NO [NONEXISTENT] Mailbox name is not valid modified UTF-7
C: a11 LIST "" {name}
S: a11 OK List completed.
C: a12 LIST {name} *
S: a12 OK List completed.
C: a13 LSUB "" {name}
S: a13 OK Lsub completed.
""",
    )
    acct = await server.account()
    assert "Other" not in {b.name for b in await acct.list_mailboxes()}
    assert await acct.subscriptions() == before


async def test_select_of_an_undecodable_name_closes_the_selected_mailbox(server):
    """RFC 3501 6.3.1: a SELECT that fails (NO) leaves no mailbox selected; the name is no
    syntax error, so this is not the BAD case that keeps the mailbox selected."""
    await server.deliver(MSG)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 COPY 1 &Jjo
S: a3 NO [NONEXISTENT] Mailbox name is not valid modified UTF-7
C: a4 MOVE 1 &AGE-
S: a4 NO [NONEXISTENT] Mailbox name is not valid modified UTF-7
C: a5 SELECT &Jjo
S: * OK [CLOSED] Previous mailbox closed.
S: a5 NO [NONEXISTENT] Mailbox name is not valid modified UTF-7
C: a6 FETCH 1 FLAGS
S: a6 BAD No mailbox selected
""",
    )


async def test_list_with_valid_and_undecodable_patterns(server):
    """RFC 5258 3: each pattern of a LIST-EXTENDED pattern list matches on its own; one that
    is not valid modified UTF-7 matches nothing and spoils nothing."""
    acct = await server.account()
    await acct.create_mailbox("Tom&Jerry")
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 LIST "" ("Tom&Jerry" "Tom&-Jerry" "&Jjo")
S: * LIST (\\HasNoChildren) "/" Tom&-Jerry
S: a2 OK List completed.
C: a3 SELECT "Tom&Jerry"
S: a3 NO [NONEXISTENT] Mailbox name is not valid modified UTF-7
""",
    )

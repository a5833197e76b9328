"""Second compliance pass: connection and authentication, APPEND, IDLE, ENABLE/ID/NAMESPACE,
UNSELECT/CLOSE and UTF8=ACCEPT (RFC 3501, RFC 9051 and the extensions cited in each docstring).
The NUL literal test failed before its fix; the rest pin behaviour checked against the RFCs."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import base64

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
PLAIN = b"From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n"


def _b64(data: str) -> str:
    return base64.b64encode(data.encode("utf-8")).decode()


async def test_nul_in_non_binary_literal_is_refused(server):
    """RFC 9051 9 / RFC 3501 9: literal = "{" number "}" CRLF *CHAR8, CHAR8 = %x01-ff; only a
    literal8 (RFC 3516 4.4) may carry NUL. The refused APPEND stores nothing."""
    c = await server.connect(login=True)
    lines = await c.cmd("APPEND INBOX {5+}\r\nhe\x00lo")
    assert lines[-1].startswith("t2 BAD "), lines
    lines = await c.cmd("APPEND INBOX ~{5+}\r\nhe\x00lo")
    assert lines[-1].startswith("t3 OK [APPENDUID "), lines
    lines = await c.cmd("STATUS INBOX (MESSAGES)")
    assert lines[0] == "* STATUS INBOX (MESSAGES 1)", lines


async def test_authenticate_plain_authzid_and_empty_response(server):
    """RFC 4616 2: an authzid equal to the authcid (or empty) is accepted, another one is
    refused with [AUTHORIZATIONFAILED] (RFC 5530 3); RFC 4959 3: "=" is an empty initial
    response, which PLAIN cannot accept; RFC 9051 6.2.2: "*" cancels with BAD."""
    other = _b64(f"bob@example.test\0{USER}\0{PASSWORD}")
    same = _b64(f"{USER}\0{USER}\0{PASSWORD}")
    await play(
        server,
        f"""
C: a1 AUTHENTICATE PLAIN =
S: a1 NO [AUTHENTICATIONFAILED] Authentication failed.
C: a2 AUTHENTICATE PLAIN
S: +<...>
C: =
S: a2 NO [AUTHENTICATIONFAILED] Authentication failed.
C: a3 AUTHENTICATE PLAIN
S: +<...>
C: *
S: a3 BAD Authentication cancelled
C: a4 AUTHENTICATE PLAIN {other}
S: a4 NO [AUTHORIZATIONFAILED] <...>
C: a5 AUTHENTICATE PLAIN
S: +<...>
C: {same}
S: a5 OK [CAPABILITY <...>] Logged in
""",
    )


async def test_login_literal_and_8bit_credentials(server):
    """RFC 9051 6.2.3: LOGIN takes astrings, so quoted strings and (non-)synchronising
    literals; an 8-bit password is a credential mismatch (NO), never a parse error."""
    await play(
        server,
        f"""
C: a1 LOGIN {USER} "p\u00e4ss"
S: a1 NO [AUTHENTICATIONFAILED] Authentication failed.
C: a2 LOGIN "{USER}" {{{len(PASSWORD)}}}
S: + <...>
C: {PASSWORD}
S: a2 OK [CAPABILITY <...>] Logged in
""",
    )
    c = await server.connect()
    lines = await c.cmd(f"LOGIN {{{len(USER)}+}}\r\n{USER} {{{len(PASSWORD)}+}}\r\n{PASSWORD}")
    assert lines[-1].startswith("t1 OK [CAPABILITY "), lines


async def test_logout_in_every_state(server):
    """RFC 9051 6.1.3: BYE, then the tagged OK, then the server closes the connection."""
    for setup in ([], [LOGIN], [LOGIN, "SELECT INBOX"]):
        c = await server.connect()
        for cmd in setup:
            assert (await c.cmd(cmd))[-1].split()[1] == "OK"
        lines = await c.cmd("LOGOUT")
        assert lines[0] == "* BYE Logging out" and lines[-1].endswith("OK Logout completed.")
        assert await c.eof()


async def test_append_date_time_forms(server):
    """RFC 9051 9 date-time: quoted, date-day-fixed = (SP DIGIT) / 2DIGIT; anything else, an
    impossible date or an unquoted date-time is BAD. \\Recent cannot be APPENDed (RFC 3501
    6.3.11 flag-list excludes it); keywords are kept."""
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 APPEND INBOX (\\Seen $Work) " 1-Jan-2020 10:00:00 +0000" {{5+}}
C: hello
S: a2 OK [APPENDUID <...> 1] Append completed.
C: a3 APPEND INBOX "01-Jan-2020 10:00:00 -0330" {{5+}}
C: hello
S: a3 OK [APPENDUID <...> 2] Append completed.
C: a4 APPEND INBOX "31-Feb-2020 10:00:00 +0000" {{5+}}
C: hello
S: a4 BAD APPEND: Invalid date-time
C: a5 APPEND INBOX 01-Jan-2020 {{5+}}
C: hello
S: a5 BAD <...>
C: a6 APPEND INBOX (\\Recent) {{5+}}
C: hello
S: a6 BAD <...>
C: a7 EXAMINE INBOX
S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a7 OK [READ-ONLY] Examine completed.
C: a8 FETCH 1:* (FLAGS INTERNALDATE)
S: * 1 FETCH (FLAGS (\\Seen $Work \\Recent) INTERNALDATE "01-Jan-2020 10:00:00 +0000")
S: * 2 FETCH (FLAGS (\\Recent) INTERNALDATE "01-Jan-2020 10:00:00 -0330")
S: a8 OK Fetch completed.
""",
    )


async def test_append_to_selected_mailbox_announces_exists(server):
    """RFC 9051 6.3.12: appending to the selected mailbox sends EXISTS (RFC 3501: and RECENT);
    an empty message is refused with NO, a header-less one is stored."""
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 0 EXISTS
S: * 0 RECENT
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 1] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 APPEND INBOX {{0+}}
C:
S: a3 NO <...>
C: a4 APPEND INBOX {{2+}}
C: hi
S: * 1 EXISTS
S: * 1 RECENT
S: a4 OK [APPENDUID <...> 1] Append completed.
""",
    )


async def test_literal_minus_limit(start_server):
    """RFC 7888 4/5: under LITERAL- a non-synchronising literal may hold 4096 octets; a larger
    one is BAD [TOOBIG] and the connection ends (the server cannot resynchronise)."""
    srv = await start_server(make_config(literal_plus=False))
    c = await srv.connect(login=True)
    lines = await c.cmd("CAPABILITY")
    assert " LITERAL- " in lines[0] and "LITERAL+" not in lines[0]
    body = "Subject: x\r\n\r\n" + "y" * (4096 - 14)
    lines = await c.cmd(f"APPEND INBOX {{4096+}}\r\n{body}")
    assert lines[-1].startswith("t3 OK [APPENDUID "), lines
    await c.send(b"t4 APPEND INBOX {4097+}\r\n" + b"y" * 4097 + b"\r\n")
    assert (await c.line()).startswith("t4 BAD [TOOBIG]")
    assert (await c.line()).startswith("* BYE")
    assert await c.eof()


async def test_idle_done_and_other_commands(server):
    """RFC 2177 3: IDLE is valid in the authenticated state; it ends with DONE; anything else
    ends it with BAD (and is not run as a command)."""
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 IDLE
S: + idling
C: DONE
S: a2 OK Idle completed.
C: a3 IDLE
S: + idling
C: a4 NOOP
S: a3 BAD Expected DONE
C: a5 NOOP
S: a5 OK NOOP completed.
""",
    )


async def test_enable_id_namespace(server):
    """RFC 5161 3.1 ENABLED lists only what was newly enabled, unknown names ignored; RFC
    2971 3.1 ID NIL and ID with pairs; an odd field list is BAD; RFC 2342 5 NAMESPACE."""
    await play(
        server,
        f"""
C: a0 ENABLE UTF8=ACCEPT
S: a0 BAD <...>
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 ENABLE UTF8=ACCEPT X-UNKNOWN
S: * ENABLED UTF8=ACCEPT
S: a2 OK Enabled.
C: a3 ENABLE UTF8=ACCEPT IMAP4rev2
S: * ENABLED IMAP4rev2
S: a3 OK Enabled.
C: a4 ID NIL
S: * ID ("name" "carteiro" "version" <...>)
S: a4 OK ID completed.
C: a5 ID ("name" "mutt" "version" NIL)
S: * ID ("name" "carteiro" "version" <...>)
S: a5 OK ID completed.
C: a6 ID ("name")
S: a6 BAD <...>
C: a7 NAMESPACE
S: * NAMESPACE (("" "/")) NIL NIL
S: a7 OK Namespace completed.
""",
    )


async def test_unselect_and_readonly_close_do_not_expunge(server):
    """RFC 3691 2 UNSELECT and RFC 9051 6.4.1 CLOSE of an EXAMINEd mailbox leave \\Deleted
    messages in place; CLOSE of a read-write one expunges silently."""
    await server.deliver(PLAIN)
    c = await server.connect(login=True)
    for cmd in ("SELECT INBOX", "STORE 1 +FLAGS.SILENT (\\Deleted)", "UNSELECT"):
        assert (await c.cmd(cmd))[-1].split()[1] == "OK"
    for cmd in ("EXAMINE INBOX", "CLOSE", "CHECK"):
        lines = await c.cmd(cmd)
    assert lines[-1].startswith("t7 BAD"), lines  # CHECK needs a selected mailbox
    assert (await c.cmd("STATUS INBOX (MESSAGES)"))[0] == "* STATUS INBOX (MESSAGES 1)"
    lines = await c.cmd("SELECT INBOX")
    lines = await c.cmd("CHECK")
    assert lines == ["t10 OK Check completed."], lines
    lines = await c.cmd("CLOSE")
    assert lines == ["t11 OK Close completed."], lines
    assert (await c.cmd("STATUS INBOX (MESSAGES)"))[0] == "* STATUS INBOX (MESSAGES 0)"


async def test_utf8_accept(server):
    """RFC 6855 3: after ENABLE UTF8=ACCEPT mailbox names are UTF-8 quoted strings and SEARCH
    with a CHARSET is BAD; RFC 6855 4: APPEND UTF8 (literal8)."""
    sessions = await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 ENABLE UTF8=ACCEPT
S: * ENABLED UTF8=ACCEPT
S: a2 OK Enabled.
C: a3 CREATE "Caf\u00e9"
S: a3 OK [MAILBOXID (<...>)] Create completed.
""",
    )
    msg = "Subject: caf\u00e9\r\n\r\nbody".encode()
    c = sessions[1]
    await c.send(b'a4 APPEND "Caf\xc3\xa9" UTF8 (~{%d+}\r\n%s)\r\n' % (len(msg), msg))
    assert (await c.line()).startswith("a4 OK [APPENDUID ")
    lines = await c.cmd('LIST "" "Caf*"')
    assert lines == ['* LIST (\\HasNoChildren) "/" "Caf\u00e9"', "t1 OK List completed."]
    lines = await c.cmd('SELECT "Caf\u00e9"')
    assert "* 1 EXISTS" in lines and lines[-1].startswith("t2 OK [READ-WRITE]"), lines
    lines = await c.cmd('SEARCH CHARSET UTF-8 SUBJECT "caf\u00e9"')
    assert lines[-1].startswith("t3 BAD "), lines
    lines = await c.cmd('SEARCH SUBJECT "caf\u00e9"')
    assert lines == ["* SEARCH 1", "t4 OK Search completed."], lines

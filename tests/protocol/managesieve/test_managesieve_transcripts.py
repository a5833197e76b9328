"""ManageSieve (RFC 5804) transcripts, in the shape of the RFC's examples: greeting, STARTTLS,
AUTHENTICATE, every script command with its response codes, limits and hostile input."""

from __future__ import annotations

import asyncio

import pytest
from sieve_harness import Harness, play

from carteiro.sieve.compiler import EXTENSIONS

PLAIN = "AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZSBzZWNyZXQ="
SIEVE = " ".join(EXTENSIONS)
GREETING_PLAIN = f"""
S: "IMPLEMENTATION" "carteiro {{...}}"
S: "SASL" ""
S: "SIEVE" "{SIEVE}"
S: "NOTIFY" "mailto"
S: "MAXREDIRECTS" "4"
S: "STARTTLS"
S: "UNAUTHENTICATE"
S: "VERSION" "1.0"
S: OK "carteiro ManageSieve ready."
"""
LOGIN = (
    GREETING_PLAIN
    + f"""
C: STARTTLS
S: OK "Begin TLS negotiation now."
-- starttls
S: "IMPLEMENTATION" "carteiro {{...}}"
S: "SASL" "PLAIN LOGIN"
S: "SIEVE" "{SIEVE}"
S: "NOTIFY" "mailto"
S: "MAXREDIRECTS" "4"
S: "UNAUTHENTICATE"
S: "VERSION" "1.0"
S: OK "TLS negotiation successful."
C: AUTHENTICATE "PLAIN" "{PLAIN}"
S: OK "Logged in."
"""
)


async def test_greeting_starttls_and_auth(server: Harness) -> None:
    c = await server.connect()
    await play(
        c,
        GREETING_PLAIN
        + """
C: AUTHENTICATE "PLAIN" "AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZSBzZWNyZXQ="
S: NO (ENCRYPT-NEEDED) "Use STARTTLS first."
C: LISTSCRIPTS
S: NO "Authenticate first."
""",
    )
    c = await server.connect()
    await play(
        c,
        LOGIN
        + """
C: CAPABILITY
S: "IMPLEMENTATION" "carteiro {...}"
S: "SASL" "PLAIN LOGIN"
S: "SIEVE" "{...}"
S: "NOTIFY" "mailto"
S: "MAXREDIRECTS" "4"
S: "OWNER" "alice@example.test"
S: "UNAUTHENTICATE"
S: "VERSION" "1.0"
S: OK
C: STARTTLS
S: NO "STARTTLS is not possible now."
C: UNAUTHENTICATE
S: OK
C: LISTSCRIPTS
S: NO "Authenticate first."
C: LOGOUT
S: OK "Logout complete."
-- eof
""",
    )


async def test_authenticate_with_challenges_and_failures(server: Harness) -> None:
    c = await server.connect()
    await play(
        c,
        LOGIN.split("C: AUTHENTICATE")[0]
        + """
C: AUTHENTICATE "LOGIN"
S: "VXNlcm5hbWU6"
C: "YWxpY2VAZXhhbXBsZS50ZXN0"
S: "UGFzc3dvcmQ6"
C: "d3Jvbmc="
S: NO "Authentication failed."
C: AUTHENTICATE "PLAIN"
S: ""
C: "*"
S: NO "Authentication cancelled."
C: AUTHENTICATE "PLAIN" {36+}
C: AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==
S: NO "Authentication failed."
C: AUTHENTICATE "LOGIN"
S: "VXNlcm5hbWU6"
C: "YWxpY2VAZXhhbXBsZS50ZXN0"
S: "UGFzc3dvcmQ6"
C: "d3Jvbmc="
S: BYE "Too many authentication failures."
-- eof
""",
    )


async def test_script_commands(server: Harness) -> None:
    c = await server.connect()
    await play(
        c,
        LOGIN
        + """
C: LISTSCRIPTS
S: OK
C: HAVESPACE "myscript" 999
S: OK
C: HAVESPACE "myscript" 5000
S: NO (QUOTA/MAXSIZE) "script too large (5000 octets, at most 1000)"
C: PUTSCRIPT "myscript" {31+}
C: require "fileinto";
C: discard;
C:
S: OK
C: PUTSCRIPT "bad" {22+}
C: keep;
C: fileinto "x";
C:
S: NO "line 2, column 1: fileinto requires {...}"
C: CHECKSCRIPT {7+}
C: keep;
C:
S: OK
C: CHECKSCRIPT "if true {"
S: NO "line 1, column 10: missing '}' at end of block"
C: SETACTIVE "nosuch"
S: NO (NONEXISTENT) "no script named 'nosuch'"
C: SETACTIVE "myscript"
S: OK
C: LISTSCRIPTS
S: "myscript" ACTIVE
S: OK
C: GETSCRIPT "myscript"
S: {31}
S: require "fileinto";
S: discard;
S:
S: OK
C: DELETESCRIPT "myscript"
S: NO (ACTIVE) "the active script cannot be deleted"
C: PUTSCRIPT "other" "keep;"
S: OK
C: RENAMESCRIPT "other" "myscript"
S: NO (ALREADYEXISTS) "a script named 'myscript' exists"
C: RENAMESCRIPT "myscript" "renamed"
S: OK
C: LISTSCRIPTS
S: "other"
S: "renamed" ACTIVE
S: OK
C: RENAMESCRIPT "nosuch" "x"
S: NO (NONEXISTENT) "no script named 'nosuch'"
C: PUTSCRIPT "third" "keep;"
S: OK
C: PUTSCRIPT "fourth" "keep;"
S: NO (QUOTA/MAXSCRIPTS) "too many scripts (at most 3)"
C: SETACTIVE ""
S: OK
C: DELETESCRIPT "renamed"
S: OK
C: GETSCRIPT "renamed"
S: NO (NONEXISTENT) "There is no script by that name."
C: NOOP "STARTTLS-SYNC-42"
S: OK (TAG "STARTTLS-SYNC-42") "Done."
C: LOGOUT
S: OK "Logout complete."
""",
    )


async def test_one_account_never_sees_another(server: Harness) -> None:
    c = await server.connect()
    await play(c, LOGIN + 'C: PUTSCRIPT "mine" "keep;"\nS: OK\n')
    bob = await server.connect()
    bob_plain = "AGJvYkBleGFtcGxlLnRlc3QAYm9iLXB3"
    await play(
        bob,
        LOGIN.replace(PLAIN, bob_plain)
        + """
C: LISTSCRIPTS
S: OK
C: GETSCRIPT "mine"
S: NO (NONEXISTENT) "There is no script by that name."
C: GETSCRIPT "../alice@example.test/mine"
S: NO "Invalid script name."
""",
    )


async def test_hostile_input_is_bounded(server: Harness) -> None:
    c = await server.connect()
    await play(
        c,
        LOGIN
        + """
C: PUTSCRIPT "big" {5000+}
"""
        + "C: "
        + "x" * 4998
        + """
C:
S: NO (QUOTA/MAXSIZE) "string too large (at most 2024 octets)"
C: NOOP
S: OK "Done."
C: FROB
S: NO "Unknown command FROB."
C: "unterminated
S: NO "line break in quoted string"
C: NOOP
S: OK "Done."
""",
    )
    # a huge line without a line break is skipped, not buffered
    await c.send(b"NOOP " + b"a" * 100_000 + b"\r\nNOOP\r\n")
    assert await c.line() == 'NO "line too long"'
    assert await c.line() == 'OK "Done."'
    # a client's control octets are never echoed back (NUL in a literal, once)
    await c.send(b"NOOP\x00\x00\r\nNOOP\r\n")
    assert await c.line() == 'NO "Unknown command."'
    assert await c.line() == 'OK "Done."'


@pytest.mark.parametrize("limit", [3])
async def test_too_many_errors_end_the_session(server: Harness, limit: int) -> None:
    server.ctx.config.sieve.max_errors = limit
    c = await server.connect()
    await play(
        c,
        GREETING_PLAIN
        + """
C: X1
S: NO "Unknown command X1."
C: X2
S: NO "Unknown command X2."
C: X3
S: NO "Unknown command X3."
C: X4
S: BYE "Too many errors."
-- eof
""",
    )


async def test_sessions_per_account_and_address(server: Harness) -> None:
    """Logged-in sessions count per account and client address (as IMAP's, and Dovecot's
    mail_max_userip_connections), not in the address's connection cap: over the limit, NO
    (TRYLATER) after the password. A connection keeps its place after UNAUTHENTICATE (it left
    the address's cap: logins and UNAUTHENTICATEs in a loop must not make connections that
    count nowhere) until it logs in as another account or closes."""
    server.ctx.config.sieve.max_userip_connections = 1
    first = await server.connect()
    await play(first, LOGIN)
    refused = LOGIN.replace(
        'S: OK "Logged in."',
        'S: NO (TRYLATER) "Maximum number of connections from user+IP exceeded."',
    )
    second = await server.connect()
    await play(second, refused)
    await play(first, "C: UNAUTHENTICATE\nS: OK\n")
    again = f'C: AUTHENTICATE "PLAIN" "{PLAIN}"\n'
    await play(
        second, again + 'S: NO (TRYLATER) "Maximum number of connections from user+IP exceeded."\n'
    )
    await play(first, again + 'S: OK "Logged in."\n')  # its own place
    await play(
        first,
        'C: UNAUTHENTICATE\nS: OK\nC: AUTHENTICATE "PLAIN" "AGJvYkBleGFtcGxlLnRlc3QAYm9iLXB3"\nS: OK "Logged in."\n',
    )
    await play(second, again + 'S: OK "Logged in."\n')  # the first gave alice's place up
    third = await server.connect()
    await play(third, refused)
    await play(second, 'C: LOGOUT\nS: OK "Logout complete."\n-- eof\n')
    for _ in range(100):  # the server sees the end of that session a moment later
        await third.send(f'AUTHENTICATE "PLAIN" "{PLAIN}"\r\n'.encode())
        answer = await third.line()
        if answer == 'OK "Logged in."':
            break
        assert answer.startswith("NO (TRYLATER)"), answer
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the place of the session that ended was not freed")


async def test_a_tag_beyond_ascii_is_echoed(server: Harness) -> None:
    # RFC 5804 2.11: the tag is a string (UTF-8); a non-ASCII one once closed the connection
    # (the response code was encoded as ASCII). Found by tests/e2e/test_managesieve_dovecot_diff.
    c = await server.connect()
    await play(
        c,
        GREETING_PLAIN
        + """
C: NOOP "caf\u00e9"
S: OK (TAG "caf\u00e9") "Done."
C: NOOP {4+}
C: a\\"b
S: OK (TAG "a\\\\\\"b") "Done."
""",
    )
    await c.send(b"NOOP {2+}\r\n\xff\xfe\r\nNOOP\r\n")
    assert await c.line() == 'NO "The tag is not UTF-8."'
    assert await c.line() == 'OK "Done."'


async def test_script_names_as_rfc_5804_1_6_defines_them(server: Harness) -> None:
    # U+2028 and U+2029 are prohibited in names (RFC 5804 1.6), as Pigeonhole refuses them. An
    # invalid name is a refused operation, not a malformed command: it answers NO without
    # counting towards max_errors (Pigeonhole does the same).
    server.ctx.config.sieve.max_errors = 3
    c = await server.connect()
    await play(
        c,
        LOGIN
        + """
C: PUTSCRIPT "a/b" "keep;"
S: NO "Invalid script name."
C: HAVESPACE "" 10
S: NO "Invalid script name."
C: GETSCRIPT "x/y"
S: NO "Invalid script name."
C: DELETESCRIPT "x/y"
S: NO "Invalid script name."
C: SETACTIVE "x/y"
S: NO "Invalid script name."
C: RENAMESCRIPT "x/y" "b"
S: NO "Invalid script name."
""",
    )
    # (sent as octets: the transcript player would split its lines at these separators)
    for sep in ("\u2028", "\u2029"):
        await c.send(f'PUTSCRIPT "a{sep}b" "keep;"\r\n'.encode())
        assert await c.line() == 'NO "Invalid script name."'
    await c.send(b"LISTSCRIPTS\r\n")
    assert await c.line() == "OK"


async def test_long_names_never_end_the_session(server: Harness) -> None:
    # A name whose percent-encoded file name would pass the file system's limit (each octet
    # outside the safe set is written %XX: 128 "é" are 768 octets) once ended the connection with
    # an OSError; RFC 5804 1.6 allows 128 characters, so such names are stored under a hashed
    # file name with the name beside it, and list, get, rename and delete as any other. (The
    # harness allows 3 scripts.)
    fits, bangs, accents = "x" * 128, "!" * 100, "\u00e9" * 128
    c = await server.connect()
    await play(
        c,
        LOGIN
        + f"""
C: PUTSCRIPT "{bangs}" "keep;"
S: OK
C: PUTSCRIPT "{accents}" "discard;"
S: OK
C: PUTSCRIPT "{fits}" "keep;"
S: OK
C: PUTSCRIPT "{"x" * 129}" "keep;"
S: NO "Invalid script name."
C: SETACTIVE "{accents}"
S: OK
C: LISTSCRIPTS
S: "{bangs}"
S: "{fits}"
S: "{accents}" ACTIVE
S: OK
C: GETSCRIPT "{accents}"
S: {{8}}
S: discard;
S: OK
C: RENAMESCRIPT "{accents}" "short"
S: OK
C: RENAMESCRIPT "{bangs}" "{"!" * 99}?"
S: OK
C: DELETESCRIPT "{"!" * 99}?"
S: OK
C: PUTSCRIPT "{"." + "!" * 65}" "keep;"
S: OK
C: LISTSCRIPTS
S: "{"." + "!" * 65}"
S: "short" ACTIVE
S: "{fits}"
S: OK
""",
    )
    root = server.ctx.config.data_dir / "sieve"
    left = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert not [n for n in left if n.endswith(".name")], left  # no name outlives its script
    assert len([n for n in left if n.endswith(".sieve")]) == 3, left


async def test_a_store_failure_is_no_trylater(
    server: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RFC 5804 1.3: TRYLATER for a temporary failure (disk full, I/O error); the session goes on.
    # An OSError from the script store used to end the connection without an answer.
    from carteiro.mail.sieve_scripts import ScriptStore

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ScriptStore, "put", full)
    c = await server.connect()
    await play(
        c,
        LOGIN
        + """
C: PUTSCRIPT "s" "keep;"
S: NO (TRYLATER) "Internal error; try again later."
C: NOOP
S: OK "Done."
""",
    )


async def test_uploads_pigeonhole_accepts(server: Harness) -> None:
    # Scripts that were refused at upload, found by tests/e2e/test_managesieve_dovecot_diff:
    # - "vacation-seconds" implies "vacation" (RFC 6131 3);
    # - `duplicate :last` is RFC 7352 3's own tag, not index's :last;
    # - an address may carry a display name: phrase "<" addr-spec ">" (RFC 5228 2.4.2.3).
    c = await server.connect()
    await play(
        c,
        LOGIN
        + """
C: CHECKSCRIPT "require \\"vacation-seconds\\"; vacation :seconds 60 \\"away\\";"
S: OK
C: CHECKSCRIPT "require \\"vacation-seconds\\"; vacation :days 3 \\"away\\";"
S: OK
C: CHECKSCRIPT "require \\"duplicate\\"; if duplicate :handle \\"h\\" :last { discard; }"
S: OK
C: CHECKSCRIPT "redirect \\"Joe Bloggs <joe@example.org>\\";"
S: OK
C: CHECKSCRIPT "require \\"vacation\\"; vacation :from \\"Me <me@example.org>\\" \\"away\\";"
S: OK
""",
    )


async def test_uploads_pigeonhole_refuses(server: Harness) -> None:
    # RFC 5230 4.3: a syntactically invalid vacation :from is an error at upload (it was
    # accepted, then written as the reply's From: field); the same for a mailto notification's
    # :from, as Pigeonhole does. (Found by tests/e2e/test_managesieve_dovecot_diff.)
    c = await server.connect()
    await play(
        c,
        LOGIN
        + """
C: CHECKSCRIPT "require \\"vacation\\"; vacation :from \\"not an address\\" \\"away\\";"
S: NO "line 1, column 21: invalid :from address \\"not an address\\""
C: CHECKSCRIPT "require \\"enotify\\"; notify :from \\"x\\" \\"mailto:a@example.org\\";"
S: NO "line 1, column 20: invalid :from address \\"x\\""
C: CHECKSCRIPT "redirect \\"Joe <joe@\\";"
S: NO "line 1, column 1: invalid redirect address \\"Joe <joe@\\""
C: CHECKSCRIPT "require [\\"vacation\\", \\"variables\\"]; vacation :from \\"${x}\\" \\"away\\";"
S: OK
""",
    )


async def test_global_after_a_local_set_is_refused(server: Harness) -> None:
    # RFC 6609 3.5: `global` naming a variable the script `set` before is an error (at upload
    # or at run time), and `global` needs both "include" and "variables" required; carteiro
    # accepted both. Found against Pigeonhole.
    c = await server.connect()
    await play(
        c,
        LOGIN
        + """
C: CHECKSCRIPT "require [\\"include\\", \\"variables\\"]; set \\"x\\" \\"a\\"; global \\"x\\";"
S: NO "line 1, column 48: variable \\"x\\" was set before it was declared global"
C: CHECKSCRIPT "require [\\"include\\", \\"variables\\"]; global \\"x\\"; set \\"x\\" \\"a\\"; global \\"X\\";"
S: OK
C: CHECKSCRIPT "require [\\"include\\", \\"variables\\"]; set \\"y\\" \\"a\\"; global \\"x\\";"
S: OK
C: CHECKSCRIPT "require \\"include\\"; global \\"x\\";"
S: NO "line 1, column 20: global requires \\"variables\\" (add require \\"variables\\";)"
""",
    )


async def test_nul_and_unusable_mailto_are_refused_at_upload(server: Harness) -> None:
    # RFC 5228 8.1: no production admits NUL (quoted strings, comments, text:); carteiro took
    # one inside a quoted string. A constant mailto: URI with no valid recipient fails every
    # delivery (RFC 5436 2.2), so it is refused at upload, as Pigeonhole does.
    c = await server.connect()
    await play(c, LOGIN)
    for script, error in (
        (b'if header :is "a" "b\x00c" { keep; }', b'NO "line 1, column 21: NUL character"'),
        (b"keep; # \x00\r\n", b'NO "line 1, column 9: NUL character"'),
        (b'require "enotify";\r\nnotify "mailto:not-an-address";', b'NO "line 2, column 1: '
         b'invalid notification method \\"mailto:not-an-address\\""'),
        (b'require ["enotify", "variables"]; notify "mailto:${a}";', b"OK"),
    ):  # fmt: skip
        await c.send(b"CHECKSCRIPT {%d+}\r\n" % len(script) + script + b"\r\n")
        assert (await c.line()).encode() == error, script


async def test_commands_without_arguments_refuse_them(server: Harness) -> None:
    # RFC 5804 4: command-logout = "LOGOUT" CRLF, command-capability = "CAPABILITY" CRLF; carteiro
    # ignored extra arguments (and logged out). Pigeonhole answers NO; found by the differential.
    c = await server.connect()
    await play(
        c,
        GREETING_PLAIN
        + """
C: LOGOUT extra
S: NO "LOGOUT takes no arguments."
C: CAPABILITY "x"
S: NO "CAPABILITY takes no arguments."
C: LOGOUT
S: OK "Logout complete."
-- eof
""",
    )

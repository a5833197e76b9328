"""Session behaviour over real sockets: STLS, locking (IN-USE), UPDATE only on QUIT, dropped
connections, IMAP activity alongside, limits (timeouts, throttling, bad commands, line length),
pipelining and shutdown."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest
from pop3_harness import BOB, BOB_PASSWORD, PASSWORD, USER, Client, Harness, play

from carteiro.config import Config
from carteiro.directory.throttle import AuthThrottle
from carteiro.store.api import DELETED, SEEN, FlagOp, MessagesExpunged

MSG = b"From: bob@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


async def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# ---- STLS (RFC 2595) ----------------------------------------------------------------------------


async def test_stls_required_before_login(server: Harness) -> None:
    c = await server.connect("pop3", greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: CAPA
        S: +OK Capability list follows
        S: CAPA
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: STLS
        S: IMPLEMENTATION carteiro
        S: .
        C: USER {USER}
        S: -ERR [AUTH] Plaintext authentication disallowed on non-secure connections.
        C: AUTH PLAIN AGFsaWNlAHB3
        S: -ERR [AUTH] Plaintext authentication disallowed on non-secure connections.
        C: STLS
        S: +OK Begin TLS negotiation
        -- starttls
        C: CAPA
        S: +OK Capability list follows
        S: CAPA
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: USER
        S: SASL PLAIN LOGIN
        S: IMPLEMENTATION carteiro
        S: .
        C: STLS
        S: -ERR Command not permitted when TLS active
        C: USER {USER}
        S: +OK Send your password
        C: PASS {PASSWORD}
        S: +OK Logged in; maildrop has 0 messages (0 octets)
        C: QUIT
        S: +OK mail.example.test POP3 server signing off (maildrop empty)
        -- eof
        """,
    )


async def test_commands_pipelined_after_stls_are_discarded(server: Harness) -> None:
    """RFC 2595 / CVE-2011-0411: plaintext sent after STLS is never executed inside TLS."""
    c = await server.connect("pop3", greeting=False)
    await play(
        c,
        """
        S: +OK mail.example.test POP3 server ready
        C: STLS
        C: NOOP
        C: QUIT
        S: +OK Begin TLS negotiation
        -- starttls
        C: CAPA
        S: +OK Capability list follows
        """,
    )


async def test_plaintext_allowed_by_config(server: Harness, config: Config) -> None:
    config.pop3.allow_plaintext_auth = True
    c = await server.connect("pop3")
    assert await c.cmd(f"USER {USER}") == "+OK Send your password"
    assert (await c.cmd(f"PASS {PASSWORD}")).startswith("+OK Logged in")


# ---- maildrop lock (RFC 1939 8, RFC 2449 IN-USE) -------------------------------------------------


async def test_second_session_gets_in_use(server: Harness) -> None:
    await server.add(MSG)
    first = await server.login()
    second = await server.connect()
    assert await second.cmd(f"USER {USER}") == "+OK Send your password"
    assert await second.cmd(f"PASS {PASSWORD}") == (
        "-ERR [IN-USE] Maildrop is locked by another POP3 session; try again later."
    )
    # Another account is not affected.
    await server.login(who=BOB, pw=BOB_PASSWORD)
    assert await first.cmd("QUIT") == (
        "+OK mail.example.test POP3 server signing off (1 messages left)"
    )
    # After QUIT the lock is free again; the refused session may retry.
    assert await second.cmd(f"USER {USER}") == "+OK Send your password"
    assert (await second.cmd(f"PASS {PASSWORD}")).startswith("+OK Logged in")


async def test_logged_in_sessions_leave_the_address_cap(server: Harness) -> None:
    """max_connections_per_ip caps connections not logged in: two accounts behind one address
    hold their maildrops while two more connections are still let in, and a third is refused
    (the maildrop lock is the per-account limit)."""
    for listener in server.listeners:
        listener.max_per_ip = 2
    await server.login()
    await server.login(who=BOB, pw=BOB_PASSWORD)
    waiting = [await server.connect() for _ in range(2)]
    with pytest.raises((ConnectionError, OSError)):  # pop3s: closed before the handshake
        await server.connect()
    assert (await waiting[0].cmd("CAPA")).startswith("+OK")


async def test_dropped_connection_deletes_nothing_and_frees_the_lock(server: Harness) -> None:
    uids = [await server.add(MSG), await server.add(MSG)]
    c = await server.login()
    assert await c.cmd("DELE 1") == "+OK message 1 deleted"
    assert await c.cmd("DELE 2") == "+OK message 2 deleted"
    assert await c.cmd("RETR 1") == "-ERR message 1 already deleted"
    c.abort()  # no QUIT: RFC 1939 6, the session never enters UPDATE
    c2 = await server.connect()
    await c2.cmd(f"USER {USER}")

    async def relogged() -> bool:
        reply = await c2.cmd(f"PASS {PASSWORD}")
        if reply.startswith("-ERR [IN-USE]"):
            await c2.cmd(f"USER {USER}")
            return False
        assert reply == "+OK Logged in; maildrop has 2 messages (92 octets)"
        return True

    await wait_for(relogged)
    assert await server.uids() == uids


async def test_rset_after_dele_then_quit_deletes_nothing(server: Harness) -> None:
    uids = [await server.add(MSG), await server.add(MSG)]
    c = await server.login()
    await play(
        c,
        """
        C: DELE 1
        C: DELE 2
        C: RSET
        C: QUIT
        S: +OK message 1 deleted
        S: +OK message 2 deleted
        S: +OK maildrop has 2 messages (92 octets)
        S: +OK mail.example.test POP3 server signing off (2 messages left)
        -- eof
        """,
    )
    assert await server.uids() == uids


async def test_quit_deletes_in_one_store_call_and_imap_sees_expunges(server: Harness) -> None:
    uids = [await server.add(MSG) for _ in range(4)]
    acct = await server.account()
    feed = acct.subscribe()
    try:
        c = await server.login()
        await play(
            c,
            """
            C: DELE 1
            C: DELE 3
            C: DELE 4
            C: QUIT
            S: +OK message 1 deleted
            S: +OK message 3 deleted
            S: +OK message 4 deleted
            S: +OK mail.example.test POP3 server signing off (1 messages left)
            -- eof
            """,
        )
        assert await server.uids() == [uids[1]]
        events = [e for e in feed.pending() if isinstance(e, MessagesExpunged)]
        assert len(events) == 1 and events[0].uids == (uids[0], uids[2], uids[3])
    finally:
        feed.close()


async def test_retr_marks_seen_at_quit_top_does_not(server: Harness) -> None:
    uids = [await server.add(MSG), await server.add(MSG)]
    c = await server.login()
    await c.cmd("RETR 1")
    await c.multiline()
    await c.cmd("TOP 2 0")
    await c.multiline()
    assert (await c.cmd("QUIT")).startswith("+OK")
    acct = await server.account()
    flags = {m.uid: m.flags for m in await acct.list_messages(await server.inbox_id())}
    assert SEEN in flags[uids[0]] and SEEN not in flags[uids[1]]


# ---- IMAP activity during the session ---------------------------------------------------------


async def test_message_expunged_by_imap_during_the_session(server: Harness) -> None:
    uids = [await server.add(MSG), await server.add(MSG), await server.add(MSG)]
    c = await server.login()
    acct = await server.account()
    inbox = await server.inbox_id()
    await acct.set_flags(inbox, [uids[1]], FlagOp.ADD, [DELETED])
    await acct.expunge(inbox)  # an IMAP client expunges message 2
    await server.add(MSG)  # and new mail arrives: not part of this session
    await play(
        c,
        """
        C: STAT
        C: RETR 2
        C: LIST 2
        C: DELE 2
        C: DELE 3
        C: QUIT
        S: +OK 3 138
        S: -ERR Message 2 was removed by another session
        S: +OK 2 46
        S: +OK message 2 deleted
        S: +OK message 3 deleted
        S: +OK mail.example.test POP3 server signing off (1 messages left)
        """,
    )
    remaining = await server.uids()
    assert remaining[0] == uids[0] and len(remaining) == 2  # message 1 and the new one


async def test_uidl_is_stable_across_sessions_and_imap_changes(server: Harness) -> None:
    uids = [await server.add(MSG) for _ in range(3)]
    c = await server.login()
    await c.cmd("UIDL")
    first = await c.multiline()
    await c.cmd("QUIT")
    acct = await server.account()
    inbox = await server.inbox_id()
    await acct.delete_messages(inbox, [uids[0]])
    await acct.set_flags(inbox, [uids[2]], FlagOp.ADD, [SEEN])
    c = await server.login()
    await c.cmd("UIDL")
    second = await c.multiline()
    by_id = {line.split()[1] for line in first}
    assert {line.split()[1] for line in second} == by_id - {first[0].split()[1]}
    uv = (await acct.get_mailbox("INBOX")).uidvalidity
    assert first == [f"{i} {uv}.{u}" for i, u in enumerate(uids, 1)]


# ---- limits and errors ---------------------------------------------------------------------------


async def test_idle_timeout_closes_without_update(server: Harness, config: Config) -> None:
    config.pop3.idle_timeout = 0.3  # RFC 1939 3 wants 10 minutes; validation enforces it
    await server.add(MSG)
    c = await server.login()
    assert await c.cmd("DELE 1") == "+OK message 1 deleted"
    assert await c.line() == "-ERR Disconnected for inactivity."
    assert await c.eof()
    assert len(await server.uids()) == 1


async def test_idle_timeout_counts_from_the_last_command(server: Harness, config: Config) -> None:
    """One idle timer per session, pushed forward by each command: a client that talks more
    often than the timeout stays however long it talks, and is cut off once it stops."""
    config.pop3.idle_timeout = 0.4
    await server.add(MSG)
    c = await server.login()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.2:  # three timeouts' worth of a busy client
        await asyncio.sleep(0.15)
        assert await c.cmd("NOOP") == "+OK"
    t1 = time.monotonic()
    assert await c.line() == "-ERR Disconnected for inactivity."
    assert time.monotonic() - t1 >= 0.35
    assert await c.eof()


async def test_failed_logins_are_delayed_then_the_ip_is_refused(server: Harness) -> None:
    server.ctx.throttle = AuthThrottle(failure_delay=0.2, max_failures=2, block_time=60)
    c = await server.connect()
    await c.cmd(f"USER {USER}")
    t0 = time.monotonic()
    assert await c.cmd("PASS bad") == "-ERR [AUTH] Authentication failed."
    assert time.monotonic() - t0 >= 0.2
    await c.cmd(f"USER {USER}")
    assert await c.cmd("PASS bad") == "-ERR [AUTH] Authentication failed."
    c2 = await server.connect()
    await c2.cmd(f"USER {USER}")
    # Even the right password is refused while the address is blocked.
    assert await c2.cmd(f"PASS {PASSWORD}") == (
        "-ERR [SYS/TEMP] Too many failed logins from your address; try again later."
    )


async def test_three_failures_close_the_connection(server: Harness) -> None:
    c = await server.connect()
    for _ in range(2):
        await c.cmd(f"USER {USER}")
        assert await c.cmd("PASS bad") == "-ERR [AUTH] Authentication failed."
    await c.cmd(f"USER {USER}")
    assert await c.cmd("PASS bad") == (
        "-ERR [AUTH] Authentication failed. Too many failures; closing the connection."
    )
    assert await c.eof()


async def test_bad_commands_are_counted_then_disconnect(server: Harness) -> None:
    c = await server.connect()
    for i in range(9):
        assert await c.cmd(f"BAD{i}") == f"-ERR Unknown command: BAD{i}"
    assert await c.cmd("BAD9") == "-ERR Too many bad commands; closing the connection."
    assert await c.eof()


async def test_overlong_line(server: Harness) -> None:
    c = await server.login()
    await c.send(b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n")
    assert await c.line() == "-ERR Command line too long"
    assert await c.line() == "+OK"


async def test_endless_line_closes(server: Harness) -> None:
    """A line that goes on past max_discard_line (1 MiB) without LF: -ERR, then close."""
    c = await server.login()
    await c.send(b"NOOP " + b"x" * (1024 * 1024 - 4))  # one octet over the bound, no LF
    assert await c.line() == "-ERR Command line too long"
    assert await c.line() == "-ERR Line too long"
    assert await c.eof()


async def test_binary_garbage_gets_reasons_not_a_crash(server: Harness) -> None:
    c = await server.connect()
    await c.send(b"\x00\xff\xfe\r\n\x16\x03\x01\x02\x00\r\n")
    assert (await c.line()).startswith("-ERR ")
    assert (await c.line()).startswith("-ERR ")
    assert await c.cmd("NOOP") == "-ERR NOOP is not valid before login (AUTHORIZATION state)"


async def test_pipelining_many_commands_in_one_write(server: Harness) -> None:
    for _ in range(50):
        await server.add(MSG)
    c = await server.connect()
    cmds = [f"USER {USER}", f"PASS {PASSWORD}"] + [f"RETR {i}" for i in range(1, 51)] + ["QUIT"]
    await c.send("".join(f"{x}\r\n" for x in cmds).encode())
    assert await c.line() == "+OK Send your password"
    assert (await c.line()).startswith("+OK Logged in")
    for _ in range(50):
        assert await c.line() == f"+OK {len(MSG)} octets"
        assert len(await c.multiline()) == 4
    assert (await c.line()).startswith("+OK mail.example.test POP3 server signing off")


async def test_shutdown_says_goodbye_to_idle_sessions(server: Harness) -> None:
    c = await server.login()
    server.ctx.shutdown.set()
    assert await c.line() == "-ERR [SYS/TEMP] Server shutting down; try again later."
    assert await c.eof()


async def test_connection_limit_per_ip(server: Harness) -> None:
    for lst in server.listeners:
        lst.max_per_ip = 1
    await server.connect("pop3")
    c2 = await server.connect("pop3", greeting=False)
    assert await c2.line() == "-ERR [SYS/TEMP] Too many connections; try again later."


async def test_implicit_tls_counts_clients_before_their_handshake(server: Harness) -> None:
    """On pop3s a client is counted when accepted, so half-open TLS handshakes cannot escape the
    per-IP cap; one over the cap is closed at once, without a handshake (no reply is possible
    before TLS, and a handshake is the very cost the cap limits)."""
    for lst in server.listeners:
        lst.max_per_ip = 2
    port = server.port("pop3s")
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]  # no ClientHello
    await asyncio.sleep(0.1)
    with pytest.raises((ConnectionError, ssl.SSLError, asyncio.IncompleteReadError)):
        await server.connect(greeting=False)
    for _r, w in idle:
        w.close()
    await asyncio.sleep(0.1)  # the server sees them go and releases their places
    await server.connect()  # with the half-open ones gone, a real client gets in


async def test_many_sessions_on_different_accounts_and_concurrent_lock(server: Harness) -> None:
    """Two logins racing for one maildrop: exactly one wins."""
    await server.add(MSG)

    async def attempt() -> str:
        c: Client = await server.connect()
        await c.cmd(f"USER {USER}")
        return await c.cmd(f"PASS {PASSWORD}")

    replies = await asyncio.gather(*(attempt() for _ in range(4)))
    assert sum(r.startswith("+OK") for r in replies) == 1
    assert sum(r.startswith("-ERR [IN-USE]") for r in replies) == 3


async def test_auth_plain_malformed_and_proxy_refused(server: Harness) -> None:
    import base64

    proxy = base64.b64encode(f"{BOB}\0{USER}\0{PASSWORD}".encode()).decode()
    same = base64.b64encode(f"{USER}\0{USER}\0{PASSWORD}".encode()).decode()
    c = await server.connect(greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: AUTH PLAIN =
        S: -ERR Authentication failed: PLAIN message must have exactly two NULs.
        C: AUTH PLAIN {proxy}
        S: -ERR [AUTH] Acting as another user is not allowed.
        C: AUTH plain
        S: +{{...}}
        C: {same}
        S: +OK Logged in; maildrop has 0 messages (0 octets)
        """,
    )


async def test_trace_never_shows_passwords(server: Harness, caplog) -> None:  # type: ignore[no-untyped-def]
    import base64
    import logging

    server.ctx.trace = frozenset({"pop3"})
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    with caplog.at_level(logging.INFO, logger="carteiro.trace"):
        c = await server.login()
        assert await c.cmd("QUIT")
        c = await server.connect()
        assert await c.cmd("AUTH PLAIN") == "+ "
        assert (await c.cmd(token)).startswith("+OK Logged in")
        assert await c.cmd("QUIT")
    text = caplog.text
    assert "C: PASS <secret masked>" in text and "C: <secret masked>" in text
    assert PASSWORD not in text and token not in text
    assert f"C: USER {USER}" in text and "S: +OK Logged in" in text


async def test_a_client_that_stops_reading_is_dropped(server: Harness, config: Config) -> None:
    config.pop3.idle_timeout = 0.5
    big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 4000  # 4 MB
    for _ in range(10):
        await server.add(big)  # 40 MB: more than the socket buffers hold
    c = await server.login()
    await c.send(b"".join(b"RETR %d\r\n" % i for i in range(1, 11)) + b"DELE 1\r\nQUIT\r\n")
    # Never read: the server gives up writing after the idle timeout, without an UPDATE, and
    # frees the maildrop while this client is still connected.

    async def unlocked() -> bool:
        acct = await server.account()
        lock = acct.try_lock_maildrop()
        if lock is None:
            return False
        lock.release()
        return True

    await wait_for(unlocked)
    assert len(await server.uids()) == 10
    c.abort()


# ---- store failures become -ERR [SYS/TEMP], never a dropped connection -----------------------------


async def test_update_failure_is_sys_temp_and_deletes_nothing(server: Harness, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from carteiro.store.memory import MemoryAccountStore

    async def broken(self, mailbox_id, uids):  # type: ignore[no-untyped-def]
        raise OSError("disk on fire")

    uids = [await server.add(MSG), await server.add(MSG)]
    c = await server.login()
    monkeypatch.setattr(MemoryAccountStore, "delete_messages", broken)
    await play(
        c,
        """
        C: DELE 1
        C: QUIT
        S: +OK message 1 deleted
        S: -ERR [SYS/TEMP] Some deleted messages were not removed; try again later.
        -- eof
        """,
    )
    monkeypatch.undo()
    assert await server.uids() == uids
    await server.login()  # the lock was released


async def test_login_store_failure_and_read_failure(server: Harness, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from carteiro.store.memory import MemoryAccountStore

    async def broken(self, *args):  # type: ignore[no-untyped-def]
        raise OSError("I/O error")

    await server.add(MSG)
    original_list = MemoryAccountStore.list_messages
    monkeypatch.setattr(MemoryAccountStore, "list_messages", broken)
    c = await server.connect()
    await c.cmd(f"USER {USER}")
    assert await c.cmd(f"PASS {PASSWORD}") == (
        "-ERR [SYS/TEMP] Temporary failure opening the maildrop; try again later."
    )
    monkeypatch.setattr(MemoryAccountStore, "list_messages", original_list)
    monkeypatch.setattr(MemoryAccountStore, "read_message", broken)
    await c.cmd(f"USER {USER}")
    assert (await c.cmd(f"PASS {PASSWORD}")).startswith("+OK Logged in")  # lock was released
    assert await c.cmd("RETR 1") == "-ERR [SYS/TEMP] Cannot read message 1 now; try again later"
    assert await c.cmd("NOOP") == "+OK"


async def test_retrieval_in_any_order_returns_the_right_messages(server: Harness) -> None:
    """The session reads ahead for in-order downloads; out of order, after DELE, after RSET and
    after an IMAP expunge it must still answer with exactly the asked-for message."""
    msgs = [f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode() for i in range(1, 41)]
    uids = [await server.add(m) for m in msgs]
    c = await server.login()

    async def retr(n: int) -> str:
        first = await c.cmd(f"RETR {n}")
        if first.startswith("-ERR"):
            return first
        return (await c.multiline())[0]

    order = [*range(1, 11), 30, 5, 6, 7, 40, 39, 38, 11, 12]
    for n in order:
        assert await retr(n) == f"Subject: m{n}"
    assert await c.cmd("DELE 14") == "+OK message 14 deleted"
    acct = await server.account()
    await acct.delete_messages(await server.inbox_id(), [uids[15]])  # IMAP expunges message 16
    assert await retr(13) == "Subject: m13"
    assert await retr(14) == "-ERR message 14 already deleted"
    assert await retr(15) == "Subject: m15"
    assert await retr(16) == "-ERR Message 16 was removed by another session"
    assert await retr(17) == "Subject: m17"
    total = sum(len(m) for m in msgs)
    assert await c.cmd("RSET") == f"+OK maildrop has 40 messages ({total} octets)"
    assert await retr(14) == "Subject: m14"


# ---- input while the session waits on the store ----------------------------------------------------
# Commands are answered in the transport's data callback; only store reads (and logins, STLS,
# QUIT) go to the session's task. Input that arrives meanwhile must wait its turn, bounded.


def slow_reads(monkeypatch: pytest.MonkeyPatch, delay: float) -> None:
    from carteiro.store.memory import MemoryAccountStore

    original = MemoryAccountStore.read_messages

    async def slow(self, mailbox_id, uids):  # type: ignore[no-untyped-def]
        await asyncio.sleep(delay)
        return await original(self, mailbox_id, uids)

    monkeypatch.setattr(MemoryAccountStore, "read_messages", slow)


@pytest.mark.memory_only(reason="patches MemoryAccountStore")
async def test_a_flood_while_the_store_is_read_is_answered_in_order(
    server: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """180 KB of commands behind a RETR whose read takes a while: more than the session keeps
    before it stops reading; every command is answered, in order, after the message."""
    for i in range(3):
        await server.add(b"Subject: m%d\r\n\r\nbody\r\n" % i)
    c = await server.login()
    slow_reads(monkeypatch, 0.3)
    await c.send(b"RETR 1\r\n" + b"NOOP\r\n" * 30000 + b"RETR 2\r\n")
    assert await c.line() == "+OK 21 octets"
    assert await c.multiline() == ["Subject: m0", "", "body"]
    for _ in range(30000):
        assert await c.line() == "+OK"
    assert await c.line() == "+OK 21 octets"
    assert await c.multiline() == ["Subject: m1", "", "body"]
    assert await c.cmd("NOOP") == "+OK"


@pytest.mark.memory_only(reason="patches MemoryAccountStore")
async def test_the_client_closing_while_the_store_is_read_gets_its_answer(
    server: Harness, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that sends RETR and shuts its side (EOF) before the message is read still gets
    the message, then the connection closes, without an UPDATE."""
    config.pop3.allow_plaintext_auth = True  # (no half-close over TLS)
    for i in range(2):
        await server.add(b"Subject: m%d\r\n\r\nbody\r\n" % i)
    c = await server.login("pop3")
    slow_reads(monkeypatch, 0.3)
    await c.send(b"RETR 1\r\nDELE 2\r\n")
    c.writer.write_eof()
    assert await c.line() == "+OK 21 octets"
    assert await c.multiline() == ["Subject: m0", "", "body"]
    assert await c.line() == "+OK message 2 deleted"
    assert await c.eof()
    assert len(await server.uids()) == 2


async def test_commands_sent_with_the_connection_are_answered(server: Harness) -> None:
    """Commands a client sends before it has read the greeting (they may reach the server before
    the session takes the connection over from the stream) are answered after the greeting."""
    c = await server.connect("pop3", greeting=False)
    await c.send(b"CAPA\r\nNOOP\r\nQUIT\r\n")
    assert await c.line() == "+OK mail.example.test POP3 server ready"
    assert await c.line() == "+OK Capability list follows"
    assert "STLS" in await c.multiline()
    assert (await c.line()).startswith("-ERR NOOP is not valid before login")
    assert await c.line() == "+OK mail.example.test POP3 server signing off"
    assert await c.eof()


# ---- TOP of large messages reads their start (store.read_head) ---------------------------------


async def test_top_of_a_large_message_reads_only_its_start(
    server: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carteiro.proto.pop3 import responses as r

    body = b"".join(
        b"line %06d of the body ..........................\r\n" % i for i in range(20000)
    )
    big = b"From: bob@example.test\r\nSubject: big\r\n\r\n" + body  # ~1 MB
    # a header of 100 KB: the first read (64 KB) is not enough, the next one is
    long_head = b"".join(b"X-Pad-%05d: %s\r\n" % (i, b"p" * 60) for i in range(1500))
    bigger = b"Subject: long header\r\n" + long_head + b"\r\n" + body
    await server.add(big)
    await server.add(bigger)
    acct = await server.account()
    whole_reads: list[int] = []
    real = type(acct).read_message

    async def counting(self, mailbox_id: int, uid: int) -> bytes:  # type: ignore[no-untyped-def]
        whole_reads.append(uid)
        return await real(self, mailbox_id, uid)

    monkeypatch.setattr(type(acct), "read_message", counting)
    c = await server.login()
    for n, data in ((1, big), (2, bigger)):
        for lines in (0, 3, 500):
            await c.send(b"TOP %d %d\r\n" % (n, lines))
            got = await c.raw_until_terminator()
            want = r.stuffed(r.header_and_lines(data, lines), r.TOP_FOLLOWS)
            assert got == want, (n, lines, got[:200])
    assert whole_reads == [], "TOP of a large message read all of it"
    # more lines than the start holds in a few reads, and RETR: the whole message
    await c.send(b"TOP 1 19999\r\n")
    got = await c.raw_until_terminator()
    assert got == r.stuffed(r.header_and_lines(big, 19999), r.TOP_FOLLOWS)
    await c.send(b"RETR 1\r\n")
    got = await c.raw_until_terminator()
    assert got == r.stuffed(big, r.octets(len(big)))
    assert whole_reads == [1, 1]

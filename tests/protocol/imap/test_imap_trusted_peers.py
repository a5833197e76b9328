"""Trusted peers (`[auth] trusted_networks`, Dovecot's login_trusted_networks): a proxy or webmail
passes its client's address with ID x-originating-ip (RFC 2971); from a trusted peer the login
throttle and the logs use it, and the per-IP connection cap does not apply; from any other peer
it is ignored. Loopback has the whole 127/8, so 127.0.0.2 plays the trusted webmail."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

import pytest
from imap_harness import (  # noqa: F401  (fixtures)
    BOB,
    BOB_PASSWORD,
    PASSWORD,
    USER,
    Client,
    IMAPTestServer,
    directory,
    make_config,
    start_server,
    tls_files,
)

from carteiro.net.tls import client_context

pytestmark = pytest.mark.memory_only(reason="about connections and logins, not the store")

TRUSTED, UNTRUSTED = "127.0.0.2", "127.0.0.1"


async def open_from(
    srv: IMAPTestServer, source: str, tls: bool = False, greeting: bool = True
) -> Client:
    port = srv.tls_port if tls else srv.port
    reader, writer = await asyncio.open_connection(
        "127.0.0.1",
        port,
        local_addr=(source, 0),
        ssl=client_context(verify=False) if tls else None,
    )
    client = Client(reader, writer)
    srv.clients.append(client)
    if greeting:
        assert (await client.line()).startswith("* OK")
    return client


async def start(start_server, **imap: object) -> IMAPTestServer:  # type: ignore[no-untyped-def]
    srv: IMAPTestServer = await start_server(make_config(**imap))
    srv.ctx.trusted.networks = (ipaddress.ip_network(f"{TRUSTED}/32"),)
    srv.ctx.throttle.max_failures = 3
    return srv


def identify(ip: str, port: str = "") -> str:
    extra = f' "x-originating-port" "{port}"' if port else ""
    return f'ID ("name" "carteiro-web" "x-originating-ip" "{ip}"{extra})'


async def fail_three_times(c: Client) -> None:
    for i in range(3):
        lines = await c.cmd(f'LOGIN {USER} "wrong{i}"')
        assert "NO [AUTHENTICATIONFAILED]" in lines[-1], lines


async def test_trusted_peer_sets_the_throttle_key(start_server, caplog) -> None:  # type: ignore[no-untyped-def]
    """The failures of the client a trusted peer speaks for block that client, not the peer nor
    the other clients behind it; the log names both addresses."""
    srv = await start(start_server)
    with caplog.at_level(logging.INFO, logger="carteiro.imap"):
        attacker = await open_from(srv, TRUSTED)
        lines = await attacker.cmd(identify("192.0.2.7", "51000"))
        assert lines[0].startswith('* ID ("name" "carteiro"') and lines[-1].startswith("t1 OK")
        await fail_three_times(attacker)
        # the same browser again, through a new connection: blocked, even with the password
        again = await open_from(srv, TRUSTED)
        await again.cmd(identify("192.0.2.7"))
        assert (await again.cmd(f'LOGIN {USER} "{PASSWORD}"'))[-1].startswith("t2 NO [UNAVAILABLE]")
        # another user behind the same webmail logs in
        user = await open_from(srv, TRUSTED)
        await user.cmd(identify("2001:db8::5"))
        assert (await user.cmd(f'LOGIN {USER} "{PASSWORD}"'))[-1].startswith("t2 OK")
    assert srv.ctx.throttle.blocked("192.0.2.7")
    assert not srv.ctx.throttle.blocked(TRUSTED)
    assert "192.0.2.7 via 127.0.0.2" in caplog.text
    assert f"2001:db8::5 via 127.0.0.2: login {USER}" in caplog.text


async def test_untrusted_peer_cannot_pick_its_throttle_key(start_server, caplog) -> None:  # type: ignore[no-untyped-def]
    """From an untrusted address ID's x-originating-ip changes nothing: failures count against
    the peer itself, and a fresh made-up address does not unblock it."""
    srv = await start(start_server)
    with caplog.at_level(logging.INFO, logger="carteiro.imap"):
        c = await open_from(srv, UNTRUSTED)
        assert (await c.cmd(identify("192.0.2.8")))[-1].startswith("t1 OK")
        await fail_three_times(c)
        c2 = await open_from(srv, UNTRUSTED)
        await c2.cmd(identify("192.0.2.99"))
        assert (await c2.cmd(f'LOGIN {USER} "{PASSWORD}"'))[-1].startswith("t2 NO [UNAVAILABLE]")
    assert srv.ctx.throttle.blocked(UNTRUSTED)
    assert not srv.ctx.throttle.blocked("192.0.2.8")
    assert "ignoring ID x-originating-ip from an untrusted peer" in caplog.text
    assert "192.0.2.8 via" not in caplog.text


async def test_id_after_login_and_junk_values_change_nothing(start_server) -> None:  # type: ignore[no-untyped-def]
    """Only an address, and only before authentication: a value that is not one, or one sent
    once logged in, leaves the key where it was (x-originating-ip is free text to RFC 2971)."""
    srv = await start(start_server)
    c = await open_from(srv, TRUSTED)
    await c.cmd(identify("not-an-address"))
    await c.cmd(identify("192.0.2.10", "99999"))
    assert (await c.cmd(f'LOGIN {USER} "{PASSWORD}"'))[-1].startswith("t3 OK")
    await c.cmd(identify("192.0.2.11"))
    assert (await c.cmd("LOGOUT"))[-1].startswith("t5 OK")
    # the junk value was ignored, the address taken: three failures through it block 192.0.2.10
    bad = await open_from(srv, TRUSTED)
    await bad.cmd(identify("bogus"))
    await bad.cmd(identify("192.0.2.10"))
    await fail_three_times(bad)
    assert srv.ctx.throttle.blocked("192.0.2.10")
    assert not srv.ctx.throttle.blocked("192.0.2.11")


@pytest.mark.parametrize("tls", [False, True], ids=["imap", "imaps"])
async def test_per_ip_cap_does_not_apply_to_trusted_peers(start_server, tls: bool) -> None:  # type: ignore[no-untyped-def]
    """max_connections_per_ip 2: a third connection from an untrusted address is refused, five
    from the trusted one are not; the total (max_connections) still caps the trusted peer."""
    srv = await start(start_server, max_connections_per_ip=2, max_connections=7)
    for _ in range(2):
        await open_from(srv, UNTRUSTED, tls)
    await expect_refused(srv, UNTRUSTED, tls)
    trusted = [await open_from(srv, TRUSTED, tls) for _ in range(5)]
    for c in trusted:
        assert (await c.cmd("NOOP"))[-1].endswith("OK NOOP completed.")
    await expect_refused(srv, TRUSTED, tls)


async def expect_refused(srv: IMAPTestServer, source: str, tls: bool) -> None:
    """The plain listener says BYE; the TLS one closes before the handshake (it costs nothing)."""
    if tls:
        with pytest.raises((ConnectionError, OSError)):
            await open_from(srv, source, tls, greeting=False)
        return
    c = await open_from(srv, source, tls, greeting=False)
    line = await c.line()
    assert line.startswith("* BYE Too many connections"), line


async def test_trusted_socket_leaves_the_address_cap_to_others(start_server) -> None:  # type: ignore[no-untyped-def]
    """One trusted socket (the in-process webmail's, TrustedPeers.register) at an address other
    clients share: it is neither capped nor counted against them, and the trust is that socket's
    alone: the next connection from the same address is an ordinary client again."""
    srv = await start(start_server, max_connections_per_ip=2)
    sock = socket.socket()
    sock.bind((UNTRUSTED, 0))
    sock.setblocking(False)
    name = sock.getsockname()
    withdraw = srv.ctx.trusted.register(sock)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", srv.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    webmail = Client(reader, writer)
    srv.clients.append(webmail)
    assert (await webmail.line()).startswith("* OK")
    await webmail.cmd(identify("192.0.2.20"))
    await fail_three_times(webmail)
    assert srv.ctx.throttle.blocked("192.0.2.20") and not srv.ctx.throttle.blocked(UNTRUSTED)
    for _ in range(2):  # the address's own two connections are still free
        await open_from(srv, UNTRUSTED)
    await expect_refused(srv, UNTRUSTED, False)
    other = await open_from(srv, TRUSTED)  # (127.0.0.2 is a trusted network in these tests)
    assert (await other.cmd("NOOP"))[-1].startswith("t1 OK")
    assert srv.ctx.trusted.trusts(*name)
    withdraw()
    assert not srv.ctx.trusted.trusts(*name)


async def login(c: Client, user: str = USER, password: str = PASSWORD) -> str:
    return (await c.cmd(f'LOGIN {user} "{password}"'))[-1]


@pytest.mark.parametrize("tls", [False, True], ids=["imap", "imaps"])
async def test_logged_in_sessions_leave_the_address_cap(start_server, tls: bool) -> None:  # type: ignore[no-untyped-def]
    """An office behind one NAT address: max_connections_per_ip caps the connections not logged
    in; logged-in ones count per account and address (max_userip_connections, Dovecot's
    mail_max_userip_connections and its NO [LIMIT] answer), so two users with two sessions
    each fit under a cap of 2, and a third session of one account is refused while the other
    account still logs in. A session that ends gives its place back."""
    srv = await start(start_server, max_connections_per_ip=2, max_userip_connections=2)
    alice = []
    for _ in range(2):
        c = await open_from(srv, UNTRUSTED, tls)
        assert " OK " in await login(c)
        alice.append(c)
    bob = []
    for _ in range(2):
        c = await open_from(srv, UNTRUSTED, tls)
        assert " OK " in await login(c, BOB, BOB_PASSWORD)
        bob.append(c)
    third = await open_from(srv, UNTRUSTED, tls)
    refused = await login(third)
    assert "NO [LIMIT] Maximum number of connections from user+IP exceeded" in refused, refused
    assert (await third.cmd("NOOP"))[-1].endswith("OK NOOP completed.")  # still connected
    # the connections not logged in are still capped at 2: `third` and one more
    waiting = await open_from(srv, UNTRUSTED, tls)
    await expect_refused(srv, UNTRUSTED, tls)
    # an account's session ends: its place is free again (the server notices the close)
    await alice[0].cmd("LOGOUT")
    counts = srv.ctx.lasting["imap.userip"].counts
    for _ in range(100):
        if counts.get((USER, UNTRUSTED), 0) < 2:
            break
        await asyncio.sleep(0.02)
    assert " OK " in await login(third)
    assert "NO [LIMIT]" in await login(waiting, BOB, BOB_PASSWORD)
    for c in (*alice[1:], *bob):
        assert (await c.cmd("NOOP"))[-1].endswith("OK NOOP completed.")

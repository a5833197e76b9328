"""The webmail inside `carteiro serve` is a trusted peer of the IMAP server (its own sockets only,
docs/auth-trust.md): the server throttles each browser's address, not the webmail's, and its
per-IP connection cap does not limit how many people use the webmail at once."""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Iterator

import httpx
import pytest

from carteiro.testing.server import ALL_SERVICES, ServerProcess
from carteiro.testing.webmail import imap_connect, login

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-trusted")]

USERS = {f"user{i}@example.test": f"pw-{i}" for i in range(4)}
ALICE, BOB = "user0@example.test", "user1@example.test"
# The server blocks an address after 3 failures, before the webmail's own throttle (5) would,
# and lets 2 IMAP connections per address: below what 4 webmail users need.
CONFIG = "[auth]\nmax_failures = 3\n\n[imap]\nmax_connections_per_ip = 2\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(
        tmp_path_factory.mktemp("webtrust"), users=USERS, services=ALL_SERVICES, extra_config=CONFIG
    ) as s:
        yield s


def browser(srv: ServerProcess, source: str) -> httpx.Client:
    """A browser at `source` (loopback has all of 127/8)."""
    return httpx.Client(
        base_url=f"https://127.0.0.1:{srv.ports['web']}",
        timeout=30,
        verify=False,
        transport=httpx.HTTPTransport(local_address=source, verify=False),
    )


def test_failures_from_one_browser_do_not_block_others(srv: ServerProcess) -> None:
    with browser(srv, "127.0.0.2") as guesser:
        for i in range(3):
            assert login(guesser, BOB, f"guess{i}").status_code == 401
        # the server now refuses this browser's address, even with the right password (the
        # webmail's own throttle, at 5, has not stepped in: this is the IMAP server's block)
        blocked = login(guesser, BOB, USERS[BOB])
        assert blocked.status_code == 503, blocked.text
    # ... and only that one: another browser, and the same user elsewhere, log in
    with browser(srv, "127.0.0.3") as other:
        assert login(other, ALICE, USERS[ALICE]).status_code == 303
    with browser(srv, "127.0.0.4") as bob:
        assert login(bob, BOB, USERS[BOB]).status_code == 303
    log = srv.log()
    assert "127.0.0.2 via 127.0.0.1" in log and "authentication failed" in log
    assert f"127.0.0.3 via 127.0.0.1: login {ALICE}" in log


def test_per_ip_cap_does_not_limit_webmail_users(srv: ServerProcess) -> None:
    """Four sessions (two IMAP connections each at most) through one webmail, with a cap of 2
    per address; a client at the webmail's own address still gets its 2 connections not logged
    in, not a third (its logged-in sessions leave that cap for the per account one)."""
    browsers = [browser(srv, f"127.0.1.{i}") for i in range(len(USERS))]
    try:
        for b, (user, pw) in zip(browsers, USERS.items(), strict=True):
            assert login(b, user, pw).status_code == 303
            page = b.get("/box")
            assert page.status_code == 200 and user in page.text
        for b in browsers:  # every session still works with all of them logged in
            assert b.get("/box").status_code == 200
        direct = [imap_connect("127.0.0.1", srv.ports["imaps"], ALICE, USERS[ALICE])]
        direct.append(imap_connect("127.0.0.1", srv.ports["imaps"], ALICE, USERS[ALICE]))
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        waiting = [imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=ctx)]
        waiting.append(imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=ctx))
        with pytest.raises((imaplib.IMAP4.abort, OSError, EOFError)):
            waiting.append(imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=ctx))
        for m in (*direct, *waiting):
            m.logout()
    finally:
        for b in browsers:
            b.close()

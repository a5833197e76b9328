"""Any-state and not-authenticated commands: CAPABILITY, NOOP, LOGOUT, ID, ENABLE, NAMESPACE,
STARTTLS, LOGIN, AUTHENTICATE PLAIN (RFC 9051 6.1-6.2, RFC 2971, RFC 5161, RFC 2342, RFC 4959).

Failed logins cost a delay and count per client IP (the throttle shared with SMTP and POP3);
passwords never reach a log (the tracer masks LOGIN arguments and SASL responses). A trusted
peer (net/trust.py) names that client with ID x-originating-ip before logging in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging

from carteiro.directory.throttle import Refused
from carteiro.net.trust import originating_address, originating_port
from carteiro.proto.imap import commands as c
from carteiro.proto.imap.receiver import AuthResponse
from carteiro.servers.imap.session import (
    ANSWERED,
    Result,
    Session,
    State,
    bad,
    command,
    no,
    ok,
)
from carteiro.store.api import AccountNotFound

log = logging.getLogger("carteiro.imap")

MAX_AUTH_FAILURES = 5  # per connection, then BYE
_ENABLE = {
    "IMAP4REV2": "IMAP4rev2",
    "UTF8=ACCEPT": "UTF8=ACCEPT",
    "CONDSTORE": "CONDSTORE",
    "QRESYNC": "QRESYNC",
}


@command(c.Capability, min_state=State.NOT_AUTHENTICATED)
async def capability(s: Session, tag: str, req: c.Capability) -> Result:
    s.untagged(f"CAPABILITY {s.capabilities()}")
    return ok("Capability completed.")


@command(c.Noop, min_state=State.NOT_AUTHENTICATED)
async def noop(s: Session, tag: str, req: c.Noop) -> Result:
    # RFC 3501 6.1.2: NOOP is how a client polls; what other programs did to the mailbox's files
    # (a Maildir client, another delivery agent) is adopted now and announced with the rest
    await s.refresh_selected()
    return ok("NOOP completed.")


@command(c.Logout, min_state=State.NOT_AUTHENTICATED)
async def logout(s: Session, tag: str, req: c.Logout) -> Result:
    s.untagged("BYE Logging out")
    s.deselect()
    s.state = State.LOGOUT
    return ok("Logout completed.")


@command(c.Id, min_state=State.NOT_AUTHENTICATED)
async def id_(s: Session, tag: str, req: c.Id) -> Result:
    if s.state is State.NOT_AUTHENTICATED and req.params:
        _originating(s, dict((k.lower(), v) for k, v in req.params))
    # RFC 2971 3.3: the server's own identification, whatever the client sent.
    s.untagged(f'ID ("name" "carteiro" "version" "{s.server.version}")')
    return ok("ID completed.")


def _originating(s: Session, params: dict[str, str | None]) -> None:
    """Dovecot's x-originating-ip/-port: the client a trusted proxy or webmail speaks for, used
    from now on by the login throttle and the logs. From any other peer it is ignored: a client
    never picks its own throttle key. Only before login (the throttle is what it is for)."""
    ip = originating_address(params.get("x-originating-ip"))
    if ip is None:
        return
    conn = s.conn
    if not conn.trusted:
        log.info("imap %s: ignoring ID x-originating-ip from an untrusted peer", conn.peer_ip)
        return
    conn.client_ip = ip
    conn.client_port = originating_port(params.get("x-originating-port")) or 0
    s.tracer.note(f"client {ip}:{conn.client_port} (x-originating-ip from a trusted peer)")
    log.debug("imap %s:%d: speaking for %s", conn.peer_ip, conn.peer_port, ip)


@command(c.Enable)
async def enable(s: Session, tag: str, req: c.Enable) -> Result:
    # RFC 5161 3.1: list only what this command newly enabled; unknown names are ignored.
    new = [name for name in req.capabilities if name in _ENABLE and name not in s.enabled]
    # RFC 7162 3.2.3: ENABLE QRESYNC enables CONDSTORE too (listed only if asked for); with a
    # mailbox selected the client is told its HIGHESTMODSEQ (RFC 7162 3.1)
    s.untagged("ENABLED" + "".join(" " + _ENABLE[n] for n in dict.fromkeys(new)))
    if "CONDSTORE" in new or "QRESYNC" in new:
        s.enable_condstore()
    s.enabled = s.enabled | frozenset(new)
    return ok("Enabled.")


@command(c.Namespace)
async def namespace(s: Session, tag: str, req: c.Namespace) -> Result:
    s.untagged('NAMESPACE (("" "/")) NIL NIL')  # RFC 2342 5: personal only
    return ok("Namespace completed.")


@command(c.StartTLS, min_state=State.NOT_AUTHENTICATED, max_state=State.NOT_AUTHENTICATED)
async def starttls(s: Session, tag: str, req: c.StartTLS) -> Result:
    if s.tls or s.implicit_tls:
        return bad("TLS is already active")
    s.tagged(tag, ok("Begin TLS negotiation now."))
    await s.start_tls()
    return ANSWERED


@command(c.Login, min_state=State.NOT_AUTHENTICATED, max_state=State.NOT_AUTHENTICATED)
async def login(s: Session, tag: str, req: c.Login) -> Result:
    if not s.server.plaintext_ok(s):
        # RFC 9051 6.2.3: LOGINDISABLED; RFC 5530 PRIVACYREQUIRED
        return no(
            "Plaintext authentication disallowed on non-secure connections", "PRIVACYREQUIRED"
        )
    return await authenticate_user(s, req.user, req.password)


@command(c.Authenticate, min_state=State.NOT_AUTHENTICATED, max_state=State.NOT_AUTHENTICATED)
async def authenticate(s: Session, tag: str, req: c.Authenticate) -> Result:
    if req.mechanism != "PLAIN":
        return no("Unsupported authentication mechanism")
    if not s.server.plaintext_ok(s):
        return no(
            "Plaintext authentication disallowed on non-secure connections", "PRIVACYREQUIRED"
        )
    response = req.initial_response
    if response is None:
        # RFC 4422 5: PLAIN starts with an empty challenge.
        s.write(b"+ \r\n")
        s.rx.expect_auth_response()
        s.tracer.mask_next_client_line()
        ev = await s.next_event()
        if not isinstance(ev, AuthResponse):
            return bad("Expected an authentication response")
        s.tracer.client(ev.data)
        line = ev.data.strip()
        if line == b"*":
            return bad("Authentication cancelled")  # RFC 9051 6.2.2
        try:
            response = base64.b64decode(line, validate=True) if line != b"=" else b""
        except (binascii.Error, ValueError):
            return bad("Invalid base64 in authentication response")
    parts = response.split(b"\0")
    if len(parts) != 3:
        return await _failed(s)
    try:
        authzid, user, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        return await _failed(s)
    if authzid and authzid.lower() != user.lower():
        return no("Authorization as another user is not allowed", "AUTHORIZATIONFAILED")
    return await authenticate_user(s, user, password)


async def authenticate_user(s: Session, user: str, password: str) -> Result:
    ctx = s.server.ctx
    # Reserved before the check, counted as a failure until it succeeds: parallel guesses
    # cannot outrun the throttle (directory/throttle.py).
    slot = await ctx.throttle.reserve(s.conn.client_ip, user)
    if isinstance(slot, Refused):
        ctx.metrics.auth_failures.labels("imap").inc()
        return no(slot.text, "UNAVAILABLE")  # RFC 5530 3: temporary, try again later
    try:
        account = await ctx.directory.verify(user, password) if user and password else None
        if account is None:
            log.info("imap %s: authentication failed for %r", _who(s), user[:100])
            return await _failed(s, slot.failure())
        slot.success(account)
    finally:
        slot.release()
    if ctx.directory.delivery_of(account) == "mbox":
        # Its mail goes to the classic spool file, which this server does not serve: an empty
        # INBOX would look like lost mail. RFC 5530 3: CONTACTADMIN, after the password only.
        return no(
            "This account's mail is delivered to an mbox spool file on the server, not to "
            "IMAP; ask the administrator to switch it (carteiro user set --delivery store)",
            "CONTACTADMIN",
        )
    leave = s.server.userip.take(account, s.conn.client_ip, s.server.config.max_userip_connections)
    if leave is None:
        # Dovecot's answer and words (mail_max_userip_connections), after the password only
        log.warning(
            "imap %s: %s has %d sessions from this address; refused",
            _who(s),
            account,
            s.server.config.max_userip_connections,
        )
        return no("Maximum number of connections from user+IP exceeded", "LIMIT")
    try:
        store = await ctx.store.account(account)
    except AccountNotFound:
        await ctx.store.create_account(account)
        store = await ctx.store.account(account)
    except BaseException:
        leave()
        raise
    s.leave_userip = leave
    s.conn.leave_ip_cap()  # counted per account and address from now on
    s.user = user
    s.account = account
    s.store = store
    s.state = State.AUTHENTICATED
    s.tracer.note(f"authenticated as {account}")
    log.info("imap %s: login %s", _who(s), account)
    return ok("Logged in", f"CAPABILITY {s.capabilities()}")


async def _failed(s: Session, delay: float | None = None) -> Result:
    if delay is None:  # refused before any password check (a malformed exchange)
        delay = s.server.ctx.throttle.record_failure(s.conn.client_ip)
    s.auth_failures += 1
    s.server.ctx.metrics.auth_failures.labels("imap").inc()
    if delay > 0:
        await s.flush()
        await asyncio.sleep(delay)
    res = no("Authentication failed.", "AUTHENTICATIONFAILED")
    if s.auth_failures >= MAX_AUTH_FAILURES:
        s.out += b"* BYE Too many authentication failures\r\n"
        s.state = State.LOGOUT
    return res


def _who(s: Session) -> str:
    conn = s.conn
    if conn.client_ip == conn.peer_ip:
        return conn.peer_ip
    return f"{conn.client_ip} via {conn.peer_ip}"

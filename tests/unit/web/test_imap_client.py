"""The webmail's IMAP client against a scripted server: synchronizing literals when the server has
no LITERAL+ (RFC 9051 4.3: wait for "+" before sending the octets), the password kept out of the
transcript, and NO [UNAVAILABLE] at login told apart from a wrong password (RFC 5530)."""

from __future__ import annotations

import asyncio

import pytest

from carteiro.web.imap import AuthFailed, Endpoint, IMAPConnection, IMAPUnavailable


async def scripted(login_answer: bytes) -> tuple[asyncio.Server, list[bytes]]:
    seen: list[bytes] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"* OK ready\r\n")
        while line := await r.readline():
            seen.append(line)
            tag, first = line.split(b" ", 1)[0], line
            while line.rstrip().endswith(b"}"):  # a synchronizing literal: say go, read it
                n = int(line.rstrip()[line.rindex(b"{") + 1 : -1])
                w.write(b"+ go on\r\n")
                await w.drain()
                seen.append(await r.readexactly(n))
                line = await r.readline()
                seen.append(line)
            if b"CAPABILITY" in first:
                w.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            elif b"LOGIN" in first:
                w.write(tag + b" " + login_answer + b"\r\n")
            else:
                w.write(tag + b" OK done\r\n")
            await w.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


async def connect(server: asyncio.Server) -> IMAPConnection:
    port = server.sockets[0].getsockname()[1]
    conn = IMAPConnection(Endpoint("127.0.0.1", port, "none"))
    await conn.connect()
    return conn


def test_synchronizing_literal_and_masked_password() -> None:
    async def go() -> None:
        server, seen = await scripted(b"OK [CAPABILITY IMAP4rev1 IDLE] logged in")
        async with server:
            conn = await connect(server)
            await conn.login("zoë@example.test", "pässwörd")
            assert "IDLE" in conn.capabilities
            await conn.close()
        assert "zoë@example.test".encode() in seen and "pässwörd".encode() in seen
        assert not any("pässwörd" in line for line in conn.transcript)
        assert any("LOGIN" in line and "****" in line for line in conn.transcript)

    asyncio.run(go())


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"NO [AUTHENTICATIONFAILED] Authentication failed.", AuthFailed),
        (b"NO [UNAVAILABLE] Too many failed logins from your address", IMAPUnavailable),
    ],
)
def test_login_failures_told_apart(answer: bytes, error: type[Exception]) -> None:
    async def go() -> None:
        server, _ = await scripted(answer)
        async with server:
            conn = await connect(server)
            with pytest.raises(error):
                await conn.login("a@example.test", "pw")
            await conn.close()

    asyncio.run(go())

"""A client that pipelines commands with large answers and never reads them: the session waits
for it (the server stops reading it), within the idle timeout, and then lets go of it."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import asyncio
import socket

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    make_config,
    start_server,
    tls_files,
)

BODY = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 500  # 500 KB


async def _deaf_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection with a tiny receive buffer, whose reader we stop using after login."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=s, limit=4096)
    await reader.readline()
    writer.write(f'a LOGIN {USER} "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
    while not (await reader.readline()).startswith(b"b "):
        pass
    return reader, writer


async def test_a_client_that_never_reads_is_disconnected_after_the_idle_timeout(start_server):
    """It used to hold its session for ever, waiting in drain(): the read timeout only covered
    reads. Its connection slot, mailbox and buffered output stayed with it."""
    srv = await start_server(make_config(idle_timeout=0.5))
    for _ in range(20):
        await srv.deliver(BODY)
    listener = next(x for x in srv.listeners if x.service == "imap")
    _, writer = await _deaf_client(srv.port)
    writer.write(b"f FETCH 1:* BODY.PEEK[]\r\n" * 5)  # 50 MB of answers: more than loopback buffers
    await writer.drain()
    for _ in range(100):  # the session waits for the client to read, then gives up on it
        await asyncio.sleep(0.1)
        if not listener.active:
            break
    assert not listener.active
    writer.close()

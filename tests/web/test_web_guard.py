"""The webmail's HTTP limits (carteiro/web/guard.py): deadlines for a request's header section and
between the reads of its body, connection caps per address and in all; a slow response is not
cut. The real uvicorn server on a loopback port, driven with raw sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import AsyncIterator

import pytest

from carteiro.web.guard import WebLimits, leave_ip_cap
from carteiro.web.server import WebServer

LIMITS = WebLimits(
    header_timeout=0.6,
    body_timeout=0.6,
    send_timeout=0.6,
    max_connections_per_ip=3,
    max_connections=100,
)
BIG = 16 * 1024 * 1024


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/big":  # more than loopback's socket buffers hold
        headers = [(b"content-length", str(BIG).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for _ in range(BIG // 65536):
            await send({"type": "http.response.body", "body": b"b" * 65536, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/listening":
        # As Starlette's FileResponse (the static files) and streaming responses do: the
        # response goes out while another task waits in receive() for a disconnect.
        listener = asyncio.create_task(receive())
        await asyncio.sleep(0.001)  # (FileResponse opens and reads the file in a thread)
        out = b"x" * 4000
        headers = [(b"content-length", b"4000")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})
        listener.cancel()
        return
    if scope["path"].startswith("/session/"):  # as the webmail does for a valid session cookie
        leave_ip_cap(scope, scope["path"].split("/")[2])
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)  # longer than both deadlines
    out = b"got %d" % len(body)
    headers = [(b"content-length", str(len(out)).encode()), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = WebServer(app, "127.0.0.1:0", limits=LIMITS)
    await server.start()
    assert server.bound is not None
    try:
        yield server.bound[1]
    finally:
        await server.stop()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def response(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """One response (headers and a Content-Length body), or what came before the close."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await asyncio.wait_for(reader.readexactly(length), timeout)


async def closed_after(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[bytes, float]:
    """Everything until the server closes, and how long that took."""
    t = time.monotonic()
    data = await asyncio.wait_for(reader.read(), timeout)
    return data, time.monotonic() - t


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_a_normal_request_is_answered(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(GET)
    assert (await response(reader)).endswith(b"got 0")
    writer.close()


async def test_an_unfinished_header_section_gets_408_and_the_connection_closes(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # no blank line, ever
    data, took = await closed_after(reader)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert 0.4 < took < 3.0
    writer.close()


async def test_a_header_sent_a_byte_at_a_time_cannot_outlive_the_deadline(port: int) -> None:
    reader, writer = await connect(port)
    t = time.monotonic()
    cut = None
    for octet in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 100:  # ~5 s at one octet per 50 ms
        try:
            writer.write(bytes([octet]))
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.05)
        if reader.at_eof() or reader._buffer:  # the server answered
            break
    cut = time.monotonic() - t
    data, _ = await closed_after(reader)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert cut < 3.0  # not the ~5 s the octets would have taken
    writer.close()


async def test_the_next_request_on_a_kept_alive_connection_has_its_own_deadline(
    port: int,
) -> None:
    reader, writer = await connect(port)
    await asyncio.sleep(0.4)
    writer.write(GET)
    assert (await response(reader)).endswith(b"got 0")
    await asyncio.sleep(0.4)  # 0.8 s since the connection: a deadline from then would be past
    writer.write(GET)
    assert (await response(reader)).endswith(b"got 0")
    writer.write(b"GET / HTTP/1.1\r\n")
    data, took = await closed_after(reader)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert took > 0.4
    writer.close()


async def test_a_slow_body_is_read_but_a_stalled_one_is_cut(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")
    for _ in range(4):  # 1.2 s in all, each pause under the 0.6 s deadline
        await asyncio.sleep(0.3)
        writer.write(b"x" * 10)
    assert (await response(reader)).endswith(b"got 40")

    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\nxxxx")
    data, took = await closed_after(reader)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert 0.4 < took < 3.0
    writer.close()


async def test_a_slow_response_is_not_cut(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await response(reader)).endswith(b"got 0")
    writer.close()


async def test_connections_past_the_per_address_cap_get_503(port: int) -> None:
    held = [await connect(port) for _ in range(3)]
    await asyncio.sleep(0.05)
    reader, writer = await connect(port)
    data, _ = await closed_after(reader)
    assert data.startswith(b"HTTP/1.1 503 ")
    writer.close()
    # one of the three leaves: room again
    held[0][1].close()
    await held[0][1].wait_closed()
    await asyncio.sleep(0.1)
    reader, writer = await connect(port)
    writer.write(GET)
    assert (await response(reader)).endswith(b"got 0")
    writer.close()
    for _, w in held[1:]:
        w.close()


async def test_connections_with_a_session_leave_the_address_cap() -> None:
    """A connection whose request shows a valid session counts per account and address from
    then on (max_userip_connections), no longer in the address's cap: an office behind one NAT
    address, each person's browser with a few connections, is not refused. Past the
    per-account limit a connection stays in the address's cap."""
    limits = dataclasses.replace(LIMITS, max_userip_connections=2)
    server = WebServer(app, "127.0.0.1:0", limits=limits)
    await server.start()
    assert server.bound is not None
    port = server.bound[1]
    held = []

    async def get(path: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await connect(port)
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await response(reader)).endswith(b"got 0")
        held.append((reader, writer))
        return reader, writer

    async def refused() -> bool:
        reader, writer = await connect(port)
        try:
            data, _ = await closed_after(reader)
            return data.startswith(b"HTTP/1.1 503 ")
        finally:
            writer.close()

    try:
        alice = [await get(b"/session/alice") for _ in range(2)]  # these leave the cap
        await get(b"/session/bob")  # and this one
        await get(b"/session/alice")  # alice's third stays in it: one of the three places
        await get(b"/")
        await get(b"/")
        assert await refused()
        # a connection that left frees a place of its account's, not of the address's
        alice[0][1].close()
        await alice[0][1].wait_closed()
        await asyncio.sleep(0.1)
        assert await refused()
        # (a new connection, session or not, must first get into the address's cap: it is full)
        # the address's cap is freed by a connection that never showed a session
        held[4][1].close()
        await held[4][1].wait_closed()
        await asyncio.sleep(0.1)
        await get(b"/session/alice")  # in, then out of the cap to alice's freed place
        await get(b"/")  # so there is room for one more
        assert await refused()
    finally:
        for _, w in held:
            w.close()
        await server.stop()


async def test_no_per_address_cap_when_it_is_zero() -> None:
    limits = WebLimits(header_timeout=5, body_timeout=5, max_connections_per_ip=0)
    server = WebServer(app, "127.0.0.1:0", limits=limits)
    await server.start()
    assert server.bound is not None
    try:
        held = [await connect(server.bound[1]) for _ in range(60)]
        reader, writer = await connect(server.bound[1])
        writer.write(GET)
        assert (await response(reader)).endswith(b"got 0")
        for _, w in [*held, (reader, writer)]:
            w.close()
    finally:
        await server.stop()


async def test_pipelined_requests_are_not_read_without_bound() -> None:
    """uvicorn resumes reading whenever a response task waits in receive() for a disconnect
    (Starlette's FileResponse does, for every static file), and keeps what it reads behind a
    pipelined request: a client that pipelined GETs and read nothing got 100 MB+ buffered in
    two seconds. The guard keeps reading paused while a request is waiting in the buffer."""
    sent = [0]

    def flood() -> None:  # a thread: it sends as fast as the server takes
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.settimeout(0.1)
            blob = b"GET /listening HTTP/1.1\r\nHost: x\r\n\r\n" * 500
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.0:
                try:
                    sent[0] += s.send(blob)
                except TimeoutError:
                    pass  # the server stopped reading us

    # (a send_timeout longer than the flood: the client is not cut for not reading)
    server = WebServer(app, "127.0.0.1:0", limits=dataclasses.replace(LIMITS, send_timeout=30))
    await server.start()
    assert server.bound is not None
    port = server.bound[1]
    try:
        thread = threading.Thread(target=flood)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.05)
    finally:
        await server.stop()
    assert sent[0] < 32 * 1024 * 1024, f"{sent[0] >> 20} MiB taken in"


async def test_pipelined_requests_past_the_read_ahead_are_all_answered(port: int) -> None:
    """Paused reading comes back as the buffered requests are answered: none is left waiting."""
    reader, writer = await connect(port)
    n = 2000  # 80 KB of requests: more than MAX_READ_AHEAD
    writer.write(b"GET /listening HTTP/1.1\r\nHost: x\r\n\r\n" * n)
    for _ in range(n):
        assert (await response(reader, timeout=10)).startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_a_client_that_stops_reading_its_response_is_cut(port: int) -> None:
    """uvicorn waits for a client to read its response for ever: one that stops reading held
    its connection (and the response's buffers) until it went away. Past send_timeout
    without the transport taking more, the connection is dropped (nginx: send_timeout)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(s, ("127.0.0.1", port))
    await loop.sock_sendall(s, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(2.5)  # reading nothing, well past the 0.6 s
    got = 0
    ended = False
    try:
        while got < BIG:
            data = await asyncio.wait_for(loop.sock_recv(s, 1 << 20), 5)
            if not data:
                ended = True
                break
            got += len(data)
    except ConnectionResetError:
        ended = True
    finally:
        s.close()
    assert ended and got < BIG, f"{got} of {BIG} octets, then {'the end' if ended else 'more'}"


async def test_a_reader_that_pauses_is_not_cut(port: int) -> None:
    """A client that reads in bursts, pausing less than send_timeout each time (2 s in all, more
    than the timeout), gets all of its response: the deadline counts from the last time the
    transport could take more, not from the request. (A client reading slowly but steadily is
    the same case on a real network; on loopback the kernel's buffers of several MB make a
    paced reader look stalled: a socket becomes writable again only once a third of its
    buffer has gone. nginx's send_timeout has the same measure.)"""
    reader, writer = await connect(port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    got = 0
    burst = BIG // 8
    while got < BIG:
        data = await asyncio.wait_for(reader.read(1 << 20), 5)
        assert data, f"cut after {got} octets"
        got += len(data)
        if got // burst != (got - len(data)) // burst:
            await asyncio.sleep(0.25)
    writer.close()

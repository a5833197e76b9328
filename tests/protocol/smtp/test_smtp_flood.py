"""A client that pipelines thousands of commands in one write: its session answers them from
the buffer without a read between them, and must let the other sessions run meanwhile."""

from __future__ import annotations

import asyncio
import gc
import itertools
import socket
import time

import pytest
from smtp_harness import Env, MakeEnv

from carteiro.net import listener

NOOPS = 60_000  # 360 KB in one write: more than one read (256 KB)


async def _longest_stretch(env: Env, batch: bytes, replies: int) -> float:
    """The most CPU time the loop spent between two turns of a ticker task while one session
    answered `batch` (CPU time, not wall time: a loaded machine does not move it)."""
    c = await env.play("S: 220 *\nC: HELO c.example.org\nS: 250 *")
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(time.thread_time())
            await asyncio.sleep(0)

    async def read_all() -> None:
        for _ in range(replies):
            await c.line()  # (the replies are read as they come, so the session never waits)

    gc.disable()  # a collection in the test process is no session's doing
    try:
        tick = asyncio.create_task(ticker())
        reading = asyncio.create_task(read_all())
        c.writer.write(batch)
        await asyncio.wait_for(reading, 60)
        done.set()
        await tick
    finally:
        gc.enable()
    return max(b - a for a, b in itertools.pairwise(ticks))


async def test_a_pipelined_flood_lets_other_sessions_run(make_env: MakeEnv) -> None:
    """It used to answer a whole read of NOOPs (43 000) in one go: 0.1 to 0.6 s of a busy
    loop measured, no greeting for anyone meanwhile. Now it yields every few milliseconds.
    (The junk command limit, which would close the session after a hundred, is off here.)"""
    env = await make_env("[smtp]\nmax_junk_commands = 0\n")
    longest = await _longest_stretch(env, b"NOOP\r\n" * NOOPS, NOOPS)
    assert longest < 0.05, f"the loop was held for {longest * 1000:.0f} ms of CPU"


async def test_a_client_that_reads_nothing_is_dropped_not_kept(
    make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its session gives up after idle_timeout waiting for it to read; the connection then
    closed with its replies unsent, and a closing transport waits for its buffer to drain: for
    as long as the client acknowledges zero-window probes (for ever), holding the socket and
    the buffer after the session and its connection slot were gone. It is aborted after
    CLOSE_GRACE: the client gets a reset, not the rest of the replies."""
    monkeypatch.setattr(listener, "CLOSE_GRACE", 0.3)
    env = await make_env("[smtp]\nidle_timeout = 0.5\nmax_junk_commands = 0\n")
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    try:
        await loop.sock_connect(s, ("127.0.0.1", env.ports["smtp"]))
        blob = b"NOOP\r\n" * 10_000
        while True:  # until the server stops reading us
            try:
                await asyncio.wait_for(loop.sock_sendall(s, blob), 0.5)
            except (TimeoutError, ConnectionResetError):
                break
        await asyncio.sleep(1.5)  # idle_timeout, then CLOSE_GRACE, with room to spare
        got = 0
        try:
            while data := await asyncio.wait_for(loop.sock_recv(s, 65536), 5):
                got += len(data)
        except ConnectionResetError:
            pass
    finally:
        s.close()
    # what the client's own small buffer held, not the 64 KiB and more the server had queued
    assert got < 48 * 1024, f"{got} octets of replies after the session ended"

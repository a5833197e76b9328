"""One hostile message must not stall the server (issue 10 point 5).

A message anyone can send (within the SMTP size limit) with a To: of 10 MB of commas, 200,000
addresses, 100,000 encoded words, 10,000 parts, 1,000 levels of nesting or 1,000,000 header
lines: FETCH ENVELOPE / BODYSTRUCTURE / HEADER.FIELDS and SEARCH on it finish in time
proportionate to its size, and meanwhile another session's NOOP is answered at once (the work
runs off the event loop: mail.message_cache, mime.cost).
"""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    Client,
    IMAPTestServer,
    directory,
    server,
    start_server,
    tls_files,
)

from carteiro.testing.hostile_mail import (
    addresses,
    commas,
    deep,
    encoded_words,
    header_lines,
    wide,
)

HOSTILE: dict[str, Callable[[], bytes]] = {
    "10 MB To: of commas": lambda: commas(10 << 20),
    "200,000 addresses": lambda: addresses(200_000),
    "100,000 encoded words": lambda: encoded_words(100_000),
    "10,000 parts wide": lambda: wide(10_000),
    "1,000 levels deep": lambda: deep(1_000),
    "1,000,000 header lines": lambda: header_lines(1_000_000),
}

COMMANDS = (
    "FETCH 1 (ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (TO)])",
    "SEARCH TO nobody@example.org",
    'SEARCH SUBJECT "no such subject"',
    "SEARCH HEADER X no-such-value",
    "SEARCH TEXT no-such-text",
)
NOOP_BOUND = 0.5  # seconds another session may wait for NOOP


async def connect(srv: IMAPTestServer) -> Client:
    """A logged-in session whose reader takes lines longer than asyncio's 64 KiB default (an
    ENVELOPE with 10,000 addresses is one line)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, limit=1 << 26)
    client = Client(reader, writer)
    srv.clients.append(client)
    assert (await client.line()).startswith("* OK")
    assert (await client.cmd(f'LOGIN {USER} "{PASSWORD}"'))[-1].split()[1] == "OK"
    assert (await client.cmd("SELECT INBOX"))[-1].split()[1] == "OK"
    return client


@pytest.mark.memory_only(reason="times the MIME work, not the storage")
@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_message_answered_in_time_and_others_not_stalled(server, name):
    raw = HOSTILE[name]()
    await server.deliver(raw)
    a, b = await connect(server), await connect(server)

    # Linear baseline: the whole message sent as it is (no MIME work), best of three.
    baseline = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        lines = await a.cmd("FETCH 1 BODY.PEEK[]")
        baseline = min(baseline, time.perf_counter() - t0)
        assert lines[-1].split()[1] == "OK"

    done = asyncio.Event()
    waits: list[float] = []
    lags: list[float] = []

    async def noops() -> None:
        # Back to back, so one NOOP is always waiting whenever the server stalls.
        while not done.is_set():
            t0 = time.perf_counter()
            reply = await b.cmd("NOOP")
            waits.append(time.perf_counter() - t0)
            assert reply[-1].split()[1] == "OK"

    async def ticks() -> None:
        # The clients share the server's event loop here: its stalls are measured directly.
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t0 - 0.005)

    tasks = [asyncio.create_task(noops()), asyncio.create_task(ticks())]
    try:
        t0 = time.perf_counter()
        for command in COMMANDS:
            reply = await a.cmd(command)
            assert reply[-1].split()[1] == "OK", (command, reply[-1])
        elapsed = time.perf_counter() - t0
    finally:
        done.set()
        await asyncio.gather(*tasks)
    # Before the fix: ENVELOPE of the 10 MB of commas took 240 s on the event loop, and no
    # NOOP was answered meanwhile; 1,000,000 header lines made a million objects.
    assert elapsed < 100 * baseline + 10.0, f"{elapsed:.2f} s, baseline {baseline:.3f} s"
    assert waits and max(waits) < NOOP_BOUND, f"NOOP waited {max(waits):.3f} s"
    assert max(lags) < NOOP_BOUND, f"the event loop stalled {max(lags):.3f} s"

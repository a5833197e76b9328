"""A client that pipelines thousands of commands in one write: its session answers them from
the buffer without a read between them, and must let the other sessions run meanwhile."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time

from smtp_harness import Env, MakeEnv

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
    loop measured, no greeting for anyone meanwhile. Now it yields every few milliseconds."""
    env = await make_env()
    longest = await _longest_stretch(env, b"NOOP\r\n" * NOOPS, NOOPS)
    assert longest < 0.05, f"the loop was held for {longest * 1000:.0f} ms of CPU"

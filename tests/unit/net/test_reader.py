"""net.listener.Reader: asyncio's StreamReader with a one-copy read(); it must read exactly as
asyncio's does (up to n octets of what is buffered, waiting when nothing is, b"" at EOF, the
stored exception, flow control)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.net.listener import Reader


async def _reads(
    reader: asyncio.StreamReader, pieces: list[bytes], sizes: list[int]
) -> list[bytes]:
    out = []
    for piece in pieces:
        reader.feed_data(piece)
    reader.feed_eof()
    for n in sizes:
        out.append(await reader.read(n))
    out.append(await reader.read(-1))
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=40), max_size=6),
    st.lists(st.integers(min_value=0, max_value=50), max_size=8),
)
def test_reads_as_asyncio_does(pieces: list[bytes], sizes: list[int]) -> None:
    async def both() -> tuple[list[bytes], list[bytes]]:
        return await _reads(Reader(), pieces, sizes), await _reads(
            asyncio.StreamReader(), pieces, sizes
        )

    ours, theirs = asyncio.run(both())
    assert ours == theirs


async def test_read_waits_for_data_and_for_eof() -> None:
    reader = Reader()
    task = asyncio.create_task(reader.read(100))
    await asyncio.sleep(0)
    assert not task.done()
    reader.feed_data(b"abc")
    assert await task == b"abc"
    task = asyncio.create_task(reader.read(100))
    await asyncio.sleep(0)
    reader.feed_eof()
    assert await task == b""


async def test_read_raises_the_stored_exception() -> None:
    reader = Reader()
    reader.feed_data(b"abc")
    reader.set_exception(ConnectionResetError())
    with pytest.raises(ConnectionResetError):
        await reader.read(10)


async def test_read_resumes_a_paused_transport() -> None:
    class Transport:
        paused = False

        def pause_reading(self) -> None:
            self.paused = True

        def resume_reading(self) -> None:
            self.paused = False

    reader = Reader(limit=4)
    transport = Transport()
    reader.set_transport(transport)  # type: ignore[arg-type]
    reader.feed_data(b"0123456789")  # over 2 * limit: asyncio pauses the transport
    assert transport.paused
    assert await reader.read(8) == b"01234567"
    assert not transport.paused  # back under the limit: resumed

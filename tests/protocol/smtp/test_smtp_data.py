"""Message data: PIPELINING (RFC 2920), CHUNKING/BDAT (RFC 3030), dot transparency, the SMTP
smuggling class (bare CR/LF never end or smuggle a message), and all-or-nothing delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from smtp_harness import ALICE, BOB, CAROL, TIMEOUT, Client, Env, MakeEnv

from carteiro.config import ConfigError, loads
from carteiro.store.api import AppendResult, Delivery, MessageSource, StoreError
from carteiro.store.memory import MemoryMailStore

HELO = """
S: 220 *
C: HELO client.example.org
S: 250 *
"""


async def test_pipelined_transactions_in_one_write(env: Env) -> None:
    c = await env.connect()
    await c.reply()
    await c.send(
        b"EHLO client.example.org\r\n"
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    )
    assert (await c.reply())[-1] == "250 HELP"
    assert (await c.reply())[0].startswith("250 2.1.0")
    assert (await c.reply())[0].startswith("250 2.1.5")
    assert (await c.reply())[0].startswith("550 5.1.1")
    assert (await c.reply())[0].startswith("250 2.1.5")
    assert (await c.reply())[0].startswith("354")
    # the end of data and a whole second transaction, in one write
    await c.send(
        b"Subject: one\r\n\r\nfirst\r\n.\r\n"
        b"MAIL FROM:<b@example.org>\r\nRCPT TO:<bob@example.test>\r\n"
        b"BDAT 22 LAST\r\nSubject: two\r\n\r\nsecond"
        b"NOOP\r\nQUIT\r\n"
    )
    assert (await c.reply())[0].startswith("250 2.0.0 OK id=")
    assert (await c.reply())[0].startswith("250 2.1.0")
    assert (await c.reply())[0].startswith("250 2.1.5")
    assert (await c.reply())[0].startswith("250 2.0.0 OK id=")
    assert await c.reply() == ["250 2.0.0 OK"]
    assert await c.reply() == ["221 2.0.0 Bye"]
    assert await c.closed()
    assert len(await env.inbox(ALICE)) == 1
    one, two = await env.inbox(BOB)
    assert one.endswith(b"Subject: one\r\n\r\nfirst\r\n")
    assert two.endswith(b"Subject: two\r\n\r\nsecond")


async def test_dot_stuffing(env: Env) -> None:
    await env.play(
        HELO
        + """
        C: MAIL FROM:<a@example.org>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        C: ..
        C: ...x
        C: .y
        C: a.b
        C: ..
        C: .
        S: 250 *
        """
    )
    [msg] = await env.inbox(ALICE)
    assert msg.endswith(b"\r\n.\r\n..x\r\ny\r\na.b\r\n.\r\n")


@pytest.mark.parametrize("lines", [1500, 4500])  # ~100 KB held in memory, ~300 KB through a file
async def test_large_message_in_few_reads_is_unstuffed_exactly(env: Env, lines: int) -> None:
    """A message whose first line starts with a dot, with dot lines here and there, written at
    once: it arrives in a few large reads (the one-pass scan meets its terminator, its dot lines
    and the sentinel at read boundaries) and is stored exactly as the client meant it."""
    text = [b".first line", b"Subject: big", b""]
    for i in range(lines):
        text.append(b"." * (i % 3) + b"line %d of a long message, with a sentence." % i)
    text += [b".", b"..", b"end"]
    content = b"\r\n".join(text) + b"\r\n"
    stuffed = b"\r\n".join(b"." + t if t.startswith(b".") else t for t in text) + b"\r\n"
    c = await env.connect()
    await c.play(HELO + "C: MAIL FROM:<a@example.org>\nS: 250 *\nC: RCPT TO:<bob@example.test>")
    await c.reply()
    await c.send(b"DATA\r\n")
    assert (await c.reply())[0].startswith("354")
    await c.send(stuffed + b".\r\nQUIT\r\n")
    assert (await c.reply())[0].startswith("250 2.0.0")
    assert await c.reply() == ["221 2.0.0 Bye"]
    [msg] = await env.inbox(BOB)
    assert msg.endswith(b"\r\n" + content)
    assert msg[: len(msg) - len(content)].count(b"\r\n\r\n") == 0  # only trace fields before it


async def test_empty_message_and_byte_at_a_time(env: Env) -> None:
    c = await env.connect()
    await c.play(HELO + "C: MAIL FROM:<a@example.org>\nS: 250 *\nC: RCPT TO:<bob@example.test>")
    await c.reply()
    for b in b"DATA\r\n":
        await c.send(bytes([b]))
    assert (await c.reply())[0].startswith("354")
    for b in b"X: y\r\n\r\n.body\r\n.\r\n":
        await c.send(bytes([b]))
    assert (await c.reply())[0].startswith("250 2.0.0")
    [msg] = await env.inbox(BOB)
    assert msg.endswith(b"X: y\r\n\r\nbody\r\n")


# ---- BDAT (RFC 3030) ----------------------------------------------------------------------------


def esc(data: bytes) -> str:
    return data.decode().replace("\r", "\\r").replace("\n", "\\n")


async def test_bdat_chunks_are_binary_and_unstuffed(env: Env) -> None:
    body = b"Subject: b\r\n\r\n.\r\n..\r\nMAIL FROM:<x@y>\r\n"
    await env.play(
        HELO
        + f"""
        C: MAIL FROM:<a@example.org>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: BDAT 10
        B: {esc(body[:10])}
        S: 250 2.0.0 10 octets received
        C: BDAT {len(body) - 10} LAST
        B: {esc(body[10:])}
        S: 250 2.0.0 OK id=*
        C: BDAT 3 LAST
        B: abc
        S: 503 5.5.1 Send MAIL first
        C: NOOP
        S: 250 2.0.0 OK
        """
    )
    [msg] = await env.inbox(ALICE)
    assert msg.endswith(body)


async def test_bdat_refused_chunk_is_read_not_executed(env: Env) -> None:
    await env.play(
        HELO
        + """
        C: BDAT 12
        B: RSET\\r\\nQUIT\\r\\n
        S: 503 5.5.1 Send MAIL first
        C: MAIL FROM:<a@example.org>
        S: 250 *
        C: BDAT 6
        B: QUIT\\r\\n
        S: 554 5.5.1 No valid recipients
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: BDAT 0
        S: 250 2.0.0 0 octets received
        C: DATA
        S: 503 5.5.1 DATA and BDAT cannot be mixed in one transaction
        C: BDAT 0 LAST
        S: 250 2.0.0 OK id=*
        """
    )


async def test_bdat_size_limit(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nmax_message_size = 1000\n")
    await env.play(
        HELO
        + f"""
        C: MAIL FROM:<a@example.org>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: BDAT 800
        B: {"x" * 800}
        S: 250 *
        C: BDAT 800
        B: {"x" * 800}
        S: 552 5.3.4 *
        C: BDAT 10 LAST
        B: {"x" * 10}
        S: 552 5.3.4 *
        C: MAIL FROM:<a@example.org>
        S: 250 *
        """
    )
    assert await env.inbox(ALICE) == []


# ---- SMTP smuggling (2023) ------------------------------------------------------------------------

SMUGGLE_ENDS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n"]


@pytest.mark.parametrize("fake_end", SMUGGLE_ENDS, ids=repr)
async def test_smuggling_rejected(env: Env, fake_end: bytes) -> None:
    c = await env.connect()
    await c.play(
        HELO
        + """
        C: MAIL FROM:<a@example.org>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        """
    )
    await c.send(
        b"Subject: innocent\r\n\r\nhello"
        + fake_end
        + b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\nevil\r\n.\r\n"
    )
    # exactly one reply for the whole data: the smuggled commands were content
    assert await c.reply() == [
        "550 5.5.2 Message contains a bare <CR> or <LF>; lines must end with <CR><LF>"
    ]
    assert await c.cmd("NOOP") == ["250 2.0.0 OK"]
    assert await env.inbox(ALICE) == []
    assert await env.inbox(BOB) == []


@pytest.mark.parametrize("fake_end", SMUGGLE_ENDS, ids=repr)
async def test_smuggling_normalised(make_env: MakeEnv, fake_end: bytes) -> None:
    env = await make_env('[smtp]\nbare_newline = "normalise"\n')
    c = await env.connect()
    await c.play(
        HELO
        + """
        C: MAIL FROM:<a@example.org>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        """
    )
    await c.send(
        b"Subject: innocent\r\n\r\nhello"
        + fake_end
        + b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\nevil\r\n.\r\n"
    )
    assert (await c.reply())[0].startswith("250 2.0.0 OK id=")
    assert await c.cmd("NOOP") == ["250 2.0.0 OK"]
    [msg] = await env.inbox(ALICE)
    assert b"MAIL FROM:<admin@example.test>\r\n" in msg
    body = msg.split(b"\r\n\r\n", 2)[-1]
    assert b"\r\n" in body and body.count(b"\n") == body.count(b"\r\n")  # all CRLF now
    assert body.count(b"\r") == body.count(b"\r\n")
    assert await env.inbox(BOB) == []


async def test_bare_lf_in_commands_rejected(env: Env) -> None:
    await env.play(
        """
        S: 220 *
        B: NOOP\\n
        S: 500 5.5.2 Command lines must end with <CR><LF>
        """
    )


# ---- durability: all recipients or none --------------------------------------------------------


class FailingStore(MemoryMailStore):
    """Refuses deliveries to a chosen account after validating the rest: an injected failure."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False
        self.calls = 0

    async def deliver(
        self,
        deliveries: Sequence[Delivery],
        source: MessageSource,
        delivery_id: str | None = None,
    ) -> list[AppendResult]:
        self.calls += 1
        if self.fail:
            raise StoreError("injected failure")
        return await super().deliver(deliveries, source, delivery_id)


async def test_multi_recipient_all_or_nothing(make_env: MakeEnv) -> None:
    store = FailingStore()
    env = await make_env(store=store)
    store.fail = True
    transcript = (
        HELO
        + """
        C: MAIL FROM:<a@example.org>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: RCPT TO:<bob@example.test>
        S: 250 *
        C: RCPT TO:<carol@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        C: Subject: From the start
        C:
        C: From here on
        C: >From there
        C: .
        """
    )
    await env.play(transcript + "S: 451 4.3.0 Delivery failed: *; try again later\n")
    assert store.calls == 1
    assert await env.inbox(ALICE) == [] and await env.inbox(BOB) == []
    assert env.mbox(CAROL) == b""  # carol's mbox append was truncated away
    store.fail = False
    await env.play(transcript + "S: 250 2.0.0 OK id=*\n")
    assert len(await env.inbox(ALICE)) == 1 and len(await env.inbox(BOB)) == 1
    mbox = env.mbox(CAROL)
    assert mbox.startswith(b"From a@example.org ")
    assert b"\nReturn-Path: <a@example.org>\n" in mbox
    assert b"\n>From here on\n>>From there\n\n" in mbox
    assert b"\r" not in mbox


async def test_store_io_error_is_temporary(make_env: MakeEnv) -> None:
    class Broken(MemoryMailStore):
        async def deliver(
            self,
            deliveries: Sequence[Delivery],
            source: MessageSource,
            delivery_id: str | None = None,
        ) -> list[AppendResult]:
            raise OSError(28, "No space left on device")

    env = await make_env(store=Broken())
    await env.play(
        HELO
        + """
        C: MAIL FROM:<a@example.org>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        C: .
        S: 452 4.3.1 Insufficient system storage
        """
    )


async def test_temp_files_removed(env: Env) -> None:
    await env.play(
        HELO
        + """
        C: MAIL FROM:<a@example.org>
        S: 250 *
        C: RCPT TO:<team@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        C: x
        C: .
        S: 250 *
        C: MAIL FROM:<a@example.org>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        C: half a message, then the client goes away
        """
    )
    for c in env.clients:
        await c.close()
    for lst in env.listeners:
        await lst.stop(grace=2)
    tmp = env.ctx.config.data_dir / "tmp"
    assert list(tmp.iterdir()) == []


# ---- a sender cannot hold the session in DATA / BDAT forever ------------------------------------

TXN = """
C: MAIL FROM:<a@example.org>
S: 250 *
C: RCPT TO:<alice@example.test>
S: 250 *
"""


async def stream(c: Client, block: bytes, total: int, pause: float = 0.0) -> None:
    """Send `total` octets of `block`s (or until the server closes)."""
    sent = 0
    try:
        while sent < total:
            await c.send(block)
            sent += len(block)
            if pause:
                await asyncio.sleep(pause)
    except ConnectionError:
        pass


async def test_endless_oversized_data_gets_552_and_the_session_closes(make_env: MakeEnv) -> None:
    """Past max(size limit, 16 MiB) of discarded data beyond the limit: 552, then close (RFC
    5321 7.8); the reply still reaches a client that was busy sending (it is not reset away)."""
    env = await make_env("[smtp]\nmax_message_size = 1000\n")
    c = await env.play(HELO + TXN + "C: DATA\nS: 354 *")
    line = b"x" * 1022 + b"\r\n"
    sender = asyncio.create_task(stream(c, line * 64, (16 << 20) + (256 << 10)))
    await c.play(
        """
        S: 552 5.3.4 Message size exceeds fixed maximum message size; closing connection
        CLOSED
        """
    )
    await asyncio.wait_for(sender, TIMEOUT)
    assert await env.inbox(ALICE) == []
    assert list((env.ctx.config.data_dir / "tmp").iterdir()) == []


async def test_oversized_bdat_chunk_is_not_read_to_its_end(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nmax_message_size = 1000\n")
    c = await env.play(HELO + TXN + "C: BDAT 999999999999 LAST")
    sender = asyncio.create_task(stream(c, b"y" * 65536, (16 << 20) + (256 << 10)))
    await c.play("S: 552 5.3.4 * closing connection\nCLOSED")
    await asyncio.wait_for(sender, TIMEOUT)


async def test_data_deadline_closes_a_trickling_sender(make_env: MakeEnv) -> None:
    """Each read comes well within data_timeout, but the message never ends: 421 at the
    deadline for the whole transfer."""
    env = await make_env("[smtp]\ndata_deadline = 0.5\n")
    c = await env.play(HELO + TXN + "C: DATA\nS: 354 *")
    sender = asyncio.create_task(stream(c, b"slow line\r\n", 10_000, pause=0.05))
    await c.play(
        """
        S: 421 4.4.2 Message transfer took too long; closing connection
        CLOSED
        """
    )
    sender.cancel()
    assert await env.inbox(ALICE) == []


async def test_data_deadline_spans_all_bdat_chunks(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\ndata_deadline = 0.5\n")
    c = await env.play(HELO + TXN)
    start = asyncio.get_running_loop().time()
    while True:  # small chunks, each answered at once, but no LAST
        await c.send(b"BDAT 3\r\nabc")
        reply = await c.reply()
        if reply[0].startswith("421"):
            break
        assert reply == ["250 2.0.0 3 octets received"]
        await asyncio.sleep(0.05)
    assert reply == ["421 4.4.2 Message transfer took too long; closing connection"]
    assert await c.closed()
    assert 0.4 < asyncio.get_running_loop().time() - start < 5


async def test_data_deadline_is_per_message(make_env: MakeEnv) -> None:
    """Messages that each take most of the deadline, one after the other on one session (the
    second pipelined right behind the first's end): each has its own deadline."""
    env = await make_env("[smtp]\ndata_deadline = 0.6\n")
    c = await env.play(HELO + TXN + "C: DATA\nS: 354 *")
    for _ in range(4):
        await c.send(b"part\r\n")
        await asyncio.sleep(0.1)
    await c.send(b".\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert (await c.reply())[0].startswith("250 2.0.0 OK id=")
    await c.play("S: 250 *\nS: 250 *\nS: 354 *")
    for _ in range(4):
        await c.send(b"part\r\n")
        await asyncio.sleep(0.1)
    await c.play("C: .\nS: 250 2.0.0 OK id=*")
    assert len(await env.inbox(ALICE)) == 2


def test_data_deadline_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"smtp\.data_deadline"):
        loads("[smtp]\ndata_deadline = 0\n", data_dir=tmp_path)


async def test_long_text_lines_are_accepted_as_they_are(env: Env) -> None:
    """RFC 5321 4.5.3.1.6 makes 1000 octets the least a server must take, and 4.5.3.1 asks for
    no limits: a 3 MB line (no CRLF for 3 MB) is stored unchanged, streamed all the way."""
    line = b"0123456789" * 300_000
    c = await env.play(HELO + TXN + "C: DATA\nS: 354 *")
    await c.send(b"Subject: long\r\n\r\n" + line + b"\r\n.\r\n")
    assert (await c.reply())[0].startswith("250 2.0.0 OK id=")
    (msg,) = await env.inbox(ALICE)
    assert msg.endswith(b"Subject: long\r\n\r\n" + line + b"\r\n")

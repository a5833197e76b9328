"""Message data: PIPELINING (RFC 2920), CHUNKING/BDAT (RFC 3030), dot transparency, the SMTP
smuggling class (bare CR/LF never end or smuggle a message), and all-or-nothing delivery."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from smtp_harness import ALICE, BOB, CAROL, Env, MakeEnv

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
        self, deliveries: Sequence[Delivery], source: MessageSource
    ) -> list[AppendResult]:
        self.calls += 1
        if self.fail:
            raise StoreError("injected failure")
        return await super().deliver(deliveries, source)


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
            self, deliveries: Sequence[Delivery], source: MessageSource
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

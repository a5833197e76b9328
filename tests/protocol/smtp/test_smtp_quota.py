"""The mail quota at SMTP delivery (RFC 9208 via the store): a recipient over quota gets
"452 4.2.2" (RFC 3463 mailbox full; RFC 5321 4.5.3.1.10), nothing is delivered, and the owner
gets one warning message when a delivery takes the account past 90 % of a limit."""

from __future__ import annotations

from smtp_harness import ALICE, MakeEnv

from carteiro.store.api import Delivery
from carteiro.store.memory import MemoryMailStore

SEND = """
C: MAIL FROM:<a@example.org>
S: 250 *
C: RCPT TO:<{rcpt}>
S: 250 *
C: DATA
S: 354 *
C: Subject: s
C:
C: body
C: .
S: {reply}
"""


async def test_warning_at_ninety_percent_then_452_when_full(make_env: MakeEnv) -> None:
    store = MemoryMailStore()
    env = await make_env(store=store)
    acct = await store.account(ALICE)
    await acct.set_quota(None, 20)
    for _ in range(18):
        await store.deliver([Delivery(ALICE)], b"Subject: old\r\n\r\nx\r\n")
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO client.example.org")
    await c.play(SEND.format(rcpt=ALICE, reply="250 2.0.0 *"))  # 19 of 20: above 90 %
    inbox = await env.inbox(ALICE)
    assert len(inbox) == 20  # the message and the warning
    warnings = [m for m in inbox if b"Subject: Your mailbox is almost full" in m]
    assert len(warnings) == 1 and b"Messages: 19 of 20 (95 %)." in warnings[0]
    await c.play(SEND.format(rcpt=ALICE, reply="452 4.2.2 Mailbox full*"))
    assert len(await env.inbox(ALICE)) == 20

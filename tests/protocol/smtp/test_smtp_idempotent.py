"""Issue 10, "Deliver" 3: delivery is idempotent end to end. A client that resends a message
(same envelope, same data, a Message-ID) after a lost 250, or after we failed between the store's
COMMIT and the queue's, gets no second copy, locally or in the queue. A message without a
Message-ID is never merged with another (a script's fixed text sent twice arrives twice)."""

from __future__ import annotations

from smtp_harness import ALICE, Env

from carteiro.store.api import StoreError


def transaction(rcpt: str, body: str) -> str:
    lines = "\n".join(f"C: {line}" for line in body.split("\n"))
    return f"""
        S: 220 *
        C: HELO c.example.org
        S: 250 *
        C: MAIL FROM:<x@example.org>
        S: 250 *
        C: RCPT TO:<{rcpt}>
        S: 250 *
        C: DATA
        S: 354 *
{lines}
        C: .
        S: {{reply}}
        C: QUIT
        S: 221 *
        """


WITH_ID = "Message-ID: <m1@example.org>\nSubject: once\n\nhello"
WITHOUT_ID = "Subject: twice\n\nhello"


async def test_a_resent_message_is_delivered_once(env: Env) -> None:
    for _ in range(3):  # the 250 was lost twice: the client sends it again
        await env.play(transaction("alice@example.test", WITH_ID).replace("{reply}", "250 *"))
    assert len(await env.inbox(ALICE)) == 1


async def test_without_a_message_id_each_is_delivered(env: Env) -> None:
    for _ in range(2):
        await env.play(transaction("alice@example.test", WITHOUT_ID).replace("{reply}", "250 *"))
    assert len(await env.inbox(ALICE)) == 2


async def test_a_different_envelope_is_another_delivery(env: Env) -> None:
    await env.play(transaction("alice@example.test", WITH_ID).replace("{reply}", "250 *"))
    await env.play(transaction("bob@example.test", WITH_ID).replace("{reply}", "250 *"))
    assert len(await env.inbox(ALICE)) == 1
    assert len(await env.inbox("bob@example.test")) == 1


async def test_queue_failure_after_the_local_commit_then_retry(env: Env) -> None:
    """The local copy is committed, the queue refuses (as if we crashed between the two): 451.
    The client's retry completes the remote part without a second local copy."""
    env.spool.fail = StoreError("outbound queue not available")
    await env.play(transaction("team@example.test", WITH_ID).replace("{reply}", "451 4.3.0 *"))
    env.spool.fail = None
    await env.play(transaction("team@example.test", WITH_ID).replace("{reply}", "250 *"))
    await env.play(transaction("team@example.test", WITH_ID).replace("{reply}", "250 *"))
    assert len(await env.inbox(ALICE)) == 1
    assert len(env.spool.queued) == 1
    assert [r.address for r in env.spool.queued[0][0].recipients] == ["friend@remote.test"]

"""A domain whose `[transport]` entry is `lmtp:` (lists handed to an external Mailman 3) is
accepted at RCPT from anyone, as Postfix's relay_domains with transport_maps, and queued for the
queue's LMTP transport; an `smtp:` transport entry grants no relaying, nor does anything else."""

from __future__ import annotations

from smtp_harness import Env, MakeEnv

CONFIG = """
[transport]
"lists.test" = "lmtp:127.0.0.1:8024"
".ml.test" = "lmtp:unix:/run/mailman/lmtp"
"smtp.test" = "smtp:127.0.0.1:2526"
"""


async def test_lmtp_domain_accepted_from_anyone(make_env: MakeEnv) -> None:
    env: Env = await make_env(CONFIG)
    await env.play(
        """
        S: 220 *
        C: HELO client.example.org
        S: 250 *
        C: MAIL FROM:<poster@example.org>
        S: 250 *
        C: RCPT TO:<dev@lists.test>
        S: 250 2.1.5 Recipient <dev@lists.test> OK
        C: RCPT TO:<dev-bounces+bob=b.test@Lists.Test>
        S: 250 2.1.5 *
        C: RCPT TO:<dev-request@a.ml.test>
        S: 250 2.1.5 *
        C: RCPT TO:<x@ml.test>
        S: 554 5.7.1 <x@ml.test>: Relay access denied
        C: RCPT TO:<x@smtp.test>
        S: 554 5.7.1 <x@smtp.test>: Relay access denied
        C: RCPT TO:<x@elsewhere.test>
        S: 554 5.7.1 <x@elsewhere.test>: Relay access denied
        C: DATA
        S: 354 *
        C: From: poster@example.org
        C: To: dev@lists.test
        C: Subject: hello list
        C:
        C: hi
        C: .
        S: 250 2.0.0 *queued as Q1
        C: QUIT
        S: 221 *
        """
    )
    ((envelope, data),) = env.spool.queued
    assert [r.address for r in envelope.recipients] == [
        "dev@lists.test",
        "dev-bounces+bob=b.test@Lists.Test",
        "dev-request@a.ml.test",
    ]
    assert not envelope.trusted  # a stranger's mail: relayed to the list manager, never signed
    assert b"Subject: hello list" in data


async def test_list_addresses_of_a_local_domain_handed_off(make_env: MakeEnv) -> None:
    """Mailman 3 in a shared domain (its generated postfix_lmtp map, one entry per address):
    those addresses are accepted and queued for Mailman, the domain's users stay local."""
    env: Env = await make_env(
        """
        [transport]
        "dev@example.test" = "lmtp:127.0.0.1:8024"
        "dev-bounces@example.test" = "lmtp:127.0.0.1:8024"
        "ext@elsewhere.test" = "smtp:127.0.0.1:2526"
        """
    )
    await env.play(
        """
        S: 220 *
        C: HELO client.example.org
        S: 250 *
        C: MAIL FROM:<poster@example.org>
        S: 250 *
        C: RCPT TO:<dev@example.test>
        S: 250 2.1.5 Recipient <dev@example.test> OK
        C: RCPT TO:<dev-bounces+bob=b.test@example.test>
        S: 250 2.1.5 *
        C: RCPT TO:<dev-request@example.test>
        S: 550 5.1.1 <dev-request@example.test>: no such user here
        C: RCPT TO:<ext@elsewhere.test>
        S: 554 5.7.1 <ext@elsewhere.test>: Relay access denied
        C: RCPT TO:<alice@example.test>
        S: 250 2.1.5 *
        C: DATA
        S: 354 *
        C: Subject: both
        C:
        C: hi
        C: .
        S: 250 2.0.0 *queued as Q1
        """
    )
    ((envelope, _),) = env.spool.queued
    assert [r.address for r in envelope.recipients] == [
        "dev@example.test",
        "dev-bounces+bob=b.test@example.test",
    ]
    assert len(await env.inbox("alice@example.test")) == 1  # local, as before

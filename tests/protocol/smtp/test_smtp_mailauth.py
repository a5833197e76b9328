"""Mail authentication in the SMTP session (RFC 7208, 6376, 7489, 8601): what the MX answers and
what it delivers, with the records served from memory. The client is 127.0.0.1, so these tests
clear [mailauth] ignore_networks (loopback is exempt by default, as local tools are)."""

from __future__ import annotations

import base64

import dkim
import nacl.signing
from smtp_harness import ALICE, ALICE_PW, BOB, MakeEnv

from carteiro.mailauth.dmarc_reports import Recorder
from carteiro.mailauth.inbound import Checker, Settings
from carteiro.mailauth.lookup import NoResolver
from carteiro.testing.dns import StaticResolver

SEED = bytes(range(32))
ED_P = base64.b64encode(bytes(nacl.signing.SigningKey(SEED).verify_key)).decode()
ZONE = f"""
good.test. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.good.test. 60 IN TXT "v=DMARC1; p=reject"
ed._domainkey.good.test. 60 IN TXT "v=DKIM1; k=ed25519; p={ED_P}"
bank.test. 60 IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.bank.test. 60 IN TXT "v=DMARC1; p=reject"
shop.test. 60 IN TXT "v=spf1 -all"
_dmarc.shop.test. 60 IN TXT "v=DMARC1; p=quarantine"
nodmarc.test. 60 IN TXT "v=spf1 -all"
1.0.0.127.in-addr.arpa. 60 IN PTR mx.good.test.
mx.good.test. 60 IN A 127.0.0.1
mx.good.test. 60 IN TXT "v=spf1 a -all"
"""
CHECKED = "[mailauth]\nignore_networks = []\n[limits]\npregreet_wait = 0\n"


def checker(resolver: object = None, **kw: object) -> Checker:
    settings = Settings(authserv_id="mail.example.test", dns_timeout=5.0, **kw)  # type: ignore[arg-type]
    return Checker(resolver or StaticResolver(ZONE, servfail=("_dmarc.down.test",)), settings)  # type: ignore[arg-type]


def message(author: str, extra: str = "") -> str:
    return (
        f"{extra}From: <{author}>\r\nTo: <{BOB}>\r\nSubject: check\r\n"
        f"Message-ID: <{author}.1@x>\r\n\r\nHello.\r\n"
    )


async def send(env, mail_from: str, msg: str) -> list[str]:  # type: ignore[no-untyped-def]
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO mx.good.test")
    assert (await c.cmd(f"MAIL FROM:<{mail_from}>"))[0].startswith("250")
    rcpt = await c.cmd(f"RCPT TO:<{BOB}>")
    if not rcpt[0].startswith("250"):
        return rcpt
    assert (await c.cmd("DATA"))[0].startswith("354")
    await c.send(msg.encode() + b".\r\n")
    return await c.reply()


async def test_aligned_pass_is_delivered_with_our_results_on_top(make_env: MakeEnv) -> None:
    env = await make_env(CHECKED, mailauth=checker())
    forged = "Authentication-Results: mail.example.test; dmarc=pass header.from=bank.test\r\n"
    reply = await send(env, "alice@good.test", message("alice@good.test", forged))
    assert reply[0].startswith("250"), reply
    (got,) = await env.inbox(BOB)
    assert got.startswith(
        b"Return-Path: <alice@good.test>\r\nAuthentication-Results: mail.example.test;"
    )
    head = got.split(b"\r\n\r\n")[0]
    assert head.count(b"Authentication-Results:") == 1  # the forged one is gone
    assert b"iprev=pass" in head and b"spf=pass" in head and b"dmarc=pass" in head
    assert b"smtp.mailfrom=alice@good.test" in head and b"dkim=none" in head
    # RFC 7208 2.3: the HELO identity too, once per session
    assert b"spf=pass (mx.good.test: 127.0.0.1 is authorized) smtp.helo=mx.good.test" in head


async def test_ed25519_signed_mail_passes_dkim(make_env: MakeEnv) -> None:
    env = await make_env(CHECKED, mailauth=checker())
    raw = message("carol@good.test").encode()
    sig = dkim.sign(raw, b"ed", b"good.test", base64.b64encode(SEED),
                    signature_algorithm=b"ed25519-sha256", canonicalize=(b"relaxed", b"relaxed"))  # fmt: skip
    # sent from another domain's bounce address: DMARC passes on DKIM alone
    reply = await send(env, "bounce@nodmarc.test", (sig + raw).decode())
    assert reply[0].startswith("250"), reply
    (got,) = await env.inbox(BOB)
    assert b"dkim=pass header.d=good.test header.s=ed header.a=ed25519-sha256" in got
    assert b"spf=fail" in got and b"dmarc=pass" in got


async def test_p_reject_is_refused_at_data(make_env: MakeEnv) -> None:
    env = await make_env(CHECKED, mailauth=checker())
    reply = await send(env, "ceo@bank.test", message("ceo@bank.test"))
    assert reply[0].startswith("550 5.7.1 DMARC policy of bank.test rejects"), reply
    assert await env.inbox(BOB) == []


async def test_p_quarantine_goes_to_junk(make_env: MakeEnv) -> None:
    env = await make_env(CHECKED, mailauth=checker())
    reply = await send(env, "sales@shop.test", message("sales@shop.test"))
    assert reply[0].startswith("250"), reply
    assert await env.inbox(BOB) == []
    (junk,) = await env.inbox(BOB, "Junk")
    assert b"dmarc=fail (p=quarantine dis=quarantine)" in junk


async def test_dns_trouble_defers_never_judges(make_env: MakeEnv) -> None:
    env = await make_env(CHECKED, mailauth=checker(NoResolver()))
    reply = await send(env, "ceo@bank.test", message("ceo@bank.test"))
    assert reply[0].startswith("451 4.4.3"), reply
    env2 = await make_env(CHECKED, mailauth=checker())
    reply = await send(env2, "a@down.test", message("a@down.test"))
    assert reply[0].startswith("451 4.4.3"), reply
    assert await env2.inbox(BOB) == []


async def test_dns_trouble_is_no_error_of_the_client(make_env: MakeEnv) -> None:
    """Our DNS failing for now (451 4.4.3, 4.7.24, 4.7.25) is not the client's error: it does
    not count towards [smtp] max_errors, however many messages meet it in one session."""
    env = await make_env(CHECKED + "[smtp]\nmax_errors = 2\n", mailauth=checker(NoResolver()))
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO mx.good.test")
    for _ in range(4):
        assert (await c.cmd("MAIL FROM:<ceo@bank.test>"))[0].startswith("250")
        assert (await c.cmd(f"RCPT TO:<{BOB}>"))[0].startswith("250")
        assert (await c.cmd("DATA"))[0].startswith("354")
        await c.send(message("ceo@bank.test").encode() + b".\r\n")
        reply = await c.reply()
        assert reply[0].startswith("451 4.4.3 DMARC of bank.test cannot be checked now"), reply
    assert (await c.cmd("NOOP")) == ["250 2.0.0 OK"]


async def test_spf_fail_reject_at_rcpt_and_iprev_required(make_env: MakeEnv) -> None:
    env = await make_env(CHECKED, mailauth=checker(spf_fail="reject"))
    reply = await send(env, "x@nodmarc.test", message("x@nodmarc.test"))
    assert reply[0].startswith("550 5.7.23"), reply
    no_ptr = StaticResolver(ZONE.replace("1.0.0.127.in-addr.arpa.", "9.0.0.127.in-addr.arpa."))
    env2 = await make_env(CHECKED, mailauth=checker(no_ptr, require_iprev=True))
    c = await env2.connect()
    await c.reply()
    await c.cmd("EHLO mx.good.test")
    reply = await c.cmd("MAIL FROM:<alice@good.test>")
    assert reply[0].startswith("550 5.7.25"), reply


async def test_loopback_is_not_checked_by_default_but_forgeries_are_stripped(
    make_env: MakeEnv,
) -> None:
    env = await make_env("", mailauth=checker(NoResolver()))
    forged = "Authentication-Results: mail.example.test; dmarc=pass\r\n"
    reply = await send(env, "ceo@bank.test", message("ceo@bank.test", forged))
    assert reply[0].startswith("250"), reply
    (got,) = await env.inbox(BOB)
    assert b"Authentication-Results" not in got


async def test_too_large_to_verify_is_quarantined_not_passed(make_env: MakeEnv) -> None:
    env = await make_env(CHECKED, mailauth=checker(verify_max_size=100))
    reply = await send(env, "ceo@bank.test", message("ceo@bank.test") + "x" * 200 + "\r\n")
    assert reply[0].startswith("250"), reply  # p=reject, but DKIM could not be verified
    assert await env.inbox(BOB) == []
    (junk,) = await env.inbox(BOB, "Junk")
    assert b"dkim=policy (not verified: over" in junk and b"dmarc=fail" in junk


async def test_forged_results_are_stripped_from_large_messages_too(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nmemory_buffer_max = 0\n")  # every message goes through a file
    forged = "Authentication-Results: mail.example.test; dmarc=pass\r\n"
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO client.test")
    await c.cmd("MAIL FROM:<a@remote.test>")
    await c.cmd(f"RCPT TO:<{BOB}>")
    await c.cmd("DATA")
    await c.send((message("a@remote.test", forged) + ".\r\n").encode())
    assert (await c.reply())[0].startswith("250")
    await c.cmd("MAIL FROM:<a@remote.test>")
    await c.cmd(f"RCPT TO:<{BOB}>")
    await c.cmd("DATA")
    await c.send((message("b@remote.test") + ".\r\n").encode())
    assert (await c.reply())[0].startswith("250")
    first, second = await env.inbox(BOB)
    assert b"Authentication-Results" not in first and b"From: <b@remote.test>" in second


async def test_several_authors_the_strictest_policy_wins(make_env: MakeEnv) -> None:
    env = await make_env(CHECKED, mailauth=checker())
    # good.test passes (SPF aligned), bank.test (p=reject) does not: 550
    reply = await send(env, "alice@good.test", message("alice@good.test, <ceo@bank.test>"))
    assert reply[0].startswith("550 5.7.1 DMARC policy of bank.test"), reply


async def test_helo_name_is_recorded_and_refused_only_when_configured(make_env: MakeEnv) -> None:
    env = await make_env(CHECKED, mailauth=checker())
    reply = await send(env, "alice@good.test", message("alice@good.test"))
    assert reply[0].startswith("250"), reply
    (got,) = await env.inbox(BOB)
    # mx.good.test has A 127.0.0.1, the client's address
    assert b"x-helo=pass smtp.helo=mx.good.test policy.helo=confirmed" in got

    async def greet(env, name: str) -> list[str]:  # type: ignore[no-untyped-def]
        c = await env.connect()
        await c.reply()
        await c.cmd(f"EHLO {name}")
        return await c.cmd("MAIL FROM:<alice@good.test>")  # type: ignore[no-any-return]

    # by default a lie is recorded, not refused (RFC 5321 4.1.4)
    assert (await greet(env, "[192.0.2.9]"))[0].startswith("250")
    assert (await greet(env, "localhost"))[0].startswith("250")
    strict = await make_env(CHECKED, mailauth=checker(require_helo="valid"))
    assert (await greet(strict, "[192.0.2.9]"))[0].startswith("550 5.7.1")
    assert (await greet(strict, "localhost"))[0].startswith("504 5.5.2")
    assert (await greet(strict, "[127.0.0.1]"))[0].startswith("250")
    assert (await greet(strict, "unknown.good.test"))[0].startswith("250")
    known = await make_env(CHECKED, mailauth=checker(require_helo="known"))
    assert (await greet(known, "unknown.good.test"))[0].startswith("450 4.7.1")
    assert (await greet(known, "mx.good.test"))[0].startswith("250")


async def test_failure_report_is_queued_only_when_configured(make_env: MakeEnv) -> None:
    zone = ZONE + (
        'ruf.test. 60 IN TXT "v=spf1 -all"\n'
        '_dmarc.ruf.test. 60 IN TXT "v=DMARC1; p=reject; ruf=mailto:fail@ruf.test"\n'
    )
    for on in (False, True):
        env = await make_env(
            CHECKED, mailauth=checker(StaticResolver(zone), dmarc_failure_reports=on)
        )
        recorder = Recorder(env.ctx.config.data_dir)
        env.ctx.dmarc_recorder = recorder
        reply = await send(env, "ceo@ruf.test", message("ceo@ruf.test") + "secret body\r\n")
        assert reply[0].startswith("550 5.7.1"), reply
        cases = recorder.failures.drain()
        if not on:
            assert cases == []
            continue
        (case,) = cases
        assert (case.policy_domain, case.ruf, case.delivery) == (
            "ruf.test",
            ("mailto:fail@ruf.test",),
            "reject",
        )
        assert b"Subject: check\r\n" in case.header and b"secret body" not in case.header
        assert "dmarc=fail" in case.results and case.source_ip == "127.0.0.1"


async def test_forged_results_are_stripped_on_submission_too(make_env: MakeEnv) -> None:
    """RFC 8601 5: on every listener, not only the checked MX (an authenticated user must not
    be able to hand a local recipient a "dmarc=pass" under our name either)."""
    env = await make_env(CHECKED, mailauth=checker())
    c = await env.connect("submissions")
    await c.reply()
    await c.cmd("EHLO client.test")
    token = base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()
    assert (await c.cmd(f"AUTH PLAIN {token}"))[0].startswith("235")
    assert (await c.cmd(f"MAIL FROM:<{ALICE}>"))[0].startswith("250")
    assert (await c.cmd(f"RCPT TO:<{BOB}>"))[0].startswith("250")
    assert (await c.cmd("DATA"))[0].startswith("354")
    forged = (
        "Authentication-Results: mail.example.test; dmarc=pass header.from=bank.test\r\n"
        "Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\r\n"
    )
    await c.send((message(ALICE, forged) + ".\r\n").encode())
    assert (await c.reply())[0].startswith("250")
    (got,) = await env.inbox(BOB)
    assert b"mail.example.test; dmarc=pass" not in got
    assert b"Authentication-Results: other.example; spf=pass" in got  # another's is kept

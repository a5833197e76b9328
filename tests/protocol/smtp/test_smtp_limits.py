"""Abuse limits on SMTP: messages and recipients per minute per address and per account,
clients that talk before the greeting, DNS blocklists, and the header From of authenticated
submission (an address the user owns, as MAIL FROM)."""

from __future__ import annotations

import base64
from pathlib import Path

from smtp_harness import ALICE, ALICE_PW, BOB, MakeEnv

from carteiro.core.ratelimit import RateLimiter
from carteiro.mailauth.greylist import Greylist
from carteiro.mailauth.inbound import Checker, Settings
from carteiro.testing.dns import StaticResolver


def plain(user: str, pw: str) -> str:
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


def test_rate_limiter_slides() -> None:
    now = [0.0]
    r = RateLimiter(3, 60.0, clock=lambda: now[0])
    assert [r.allow("ip") for _ in range(4)] == [True, True, True, False]
    assert r.allow("other")
    now[0] = 90.0  # half of the previous minute still counts: 3 * 0.5 = 1.5
    assert r.allow("ip") and not r.allow("ip")
    now[0] = 200.0
    assert r.allow("ip") and r.allow("ip") and r.allow("ip")
    assert RateLimiter(0).allow("x")  # 0: no limit


def test_rate_limiter_keeps_a_bounded_number_of_keys() -> None:
    r = RateLimiter(5, 60.0, clock=lambda: 1.0, max_keys=100)
    for i in range(1000):
        r.allow(f"k{i}")
    assert len(r._counts) <= 100


async def test_messages_and_recipients_per_minute_per_address(make_env: MakeEnv) -> None:
    env = await make_env(
        "[mailauth]\nignore_networks = []\n"
        "[limits]\nmessages_per_minute_per_ip = 2\nrecipients_per_minute_per_ip = 3\n"
        "pregreet_wait = 0\n"
    )
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<a@remote.test>"))[0].startswith("250")
    for _ in range(3):
        assert (await c.cmd(f"RCPT TO:<{BOB}>"))[0].startswith("250")
    assert await c.cmd(f"RCPT TO:<{BOB}>") == [
        "451 4.7.1 Too many recipients from you; try again later"
    ]
    await c.cmd("RSET")
    assert (await c.cmd("MAIL FROM:<a@remote.test>"))[0].startswith("250")
    await c.cmd("RSET")
    assert await c.cmd("MAIL FROM:<a@remote.test>") == [
        "451 4.7.1 Too many messages from you; try again later"
    ]


async def test_per_account_limit_on_submission(make_env: MakeEnv) -> None:
    env = await make_env(
        "[limits]\nmessages_per_minute_per_user = 1\nrecipients_per_minute_per_user = 2\n"
    )
    c = await env.connect("submissions")
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd(f"AUTH PLAIN {plain(ALICE, ALICE_PW)}"))[0].startswith("235")
    assert (await c.cmd(f"MAIL FROM:<{ALICE}>"))[0].startswith("250")
    assert (await c.cmd(f"RCPT TO:<{BOB}>"))[0].startswith("250")
    assert (await c.cmd("RCPT TO:<carol@elsewhere.test>"))[0].startswith("250")
    assert await c.cmd("RCPT TO:<dave@elsewhere.test>") == [
        "451 4.7.1 Too many recipients from you; try again later"
    ]
    await c.cmd("RSET")
    assert (await c.cmd(f"MAIL FROM:<{ALICE}>"))[0].startswith("451 4.7.1")


async def test_header_from_must_be_owned_on_submission(make_env: MakeEnv) -> None:
    env = await make_env()
    c = await env.connect("submissions")
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd(f"AUTH PLAIN {plain(ALICE, ALICE_PW)}"))[0].startswith("235")
    for author, code in (
        ("Boss <bob@example.test>", "550 5.7.1 From: <bob@example.test> is not an address of"),
        ("Alice <alice+news@example.test>", "250"),  # her own +detail form
        ("<team@example.test>", "250"),  # an alias of hers
    ):
        assert (await c.cmd(f"MAIL FROM:<{ALICE}>"))[0].startswith("250")
        assert (await c.cmd(f"RCPT TO:<{BOB}>"))[0].startswith("250")
        assert (await c.cmd("DATA"))[0].startswith("354")
        await c.send(f"From: {author}\r\nSubject: hi\r\n\r\nhello\r\n.\r\n".encode())
        reply = await c.reply()
        assert reply[0].startswith(code), (author, reply)


async def test_pregreet_talker_is_refused(make_env: MakeEnv) -> None:
    checker = Checker(StaticResolver(""), Settings("mail.example.test", dns_timeout=5.0))
    env = await make_env(
        "[mailauth]\nignore_networks = []\n[limits]\npregreet_wait = 0.5\n", mailauth=checker
    )
    c = await env.connect()
    await c.send(b"EHLO bot.test\r\n")  # before the greeting
    assert (await c.reply())[0].startswith("554 5.5.1")
    assert await c.closed()
    patient = await env.connect()
    assert (await patient.reply())[0].startswith("220")


async def test_dnsbl_listed_client_is_refused_at_mail(make_env: MakeEnv) -> None:
    zone = '1.0.0.127.bl.test. 60 IN A 127.0.0.2\n1.0.0.127.bl.test. 60 IN TXT "listed for spam"\n'
    checker = Checker(
        StaticResolver(zone),
        Settings("mail.example.test", dns_timeout=5.0, dnsbl_zones=("ok.test", "bl.test")),
    )
    env = await make_env(
        "[mailauth]\nignore_networks = []\n[limits]\npregreet_wait = 0\n", mailauth=checker
    )
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO client.test")
    reply = await c.cmd("MAIL FROM:<a@remote.test>")
    assert reply[0] == "554 5.7.1 Client [127.0.0.1] is listed in bl.test: listed for spam"


def test_greylist_triplets(tmp_path: Path) -> None:
    g = Greylist(tmp_path, delay=300)
    assert g.check("192.0.2.10", "a@x.test", "bob@example.test", now=1000) == "defer"
    assert g.check("192.0.2.11", "a@x.test", "bob@example.test", now=1100) == "defer"  # too soon
    # the retry after the delay passes, from a neighbour in the same /24
    assert g.check("192.0.2.12", "a@x.test", "bob@example.test", now=1400) == "pass"
    # from then on the client network passes at once, any sender
    assert g.check("192.0.2.99", "z@y.test", "carol@example.test", now=1500) == "pass"
    assert g.check("198.51.100.1", "a@x.test", "bob@example.test", now=1500) == "defer"
    g.close()
    # remembered across restarts
    assert Greylist(tmp_path).check("192.0.2.7", "q@q.test", "r@example.test", now=2000) == "pass"


async def test_greylisting_in_the_session(make_env: MakeEnv) -> None:
    checker = Checker(StaticResolver(""), Settings("mail.example.test", dns_timeout=5.0))
    env = await make_env(
        "[mailauth]\nignore_networks = []\n[limits]\npregreet_wait = 0\ngreylist = true\n",
        mailauth=checker,
    )
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<a@remote.test>"))[0].startswith("250")
    # an address we would refuse gets its 550 at once, not a 451 first
    assert (await c.cmd("RCPT TO:<nobody@example.test>"))[0].startswith("550")
    assert await c.cmd(f"RCPT TO:<{BOB}>") == ["451 4.7.1 Greylisted: please try again later"]


async def test_connection_rate_per_address(make_env: MakeEnv) -> None:
    env = await make_env(
        "[mailauth]\nignore_networks = []\n[limits]\nconnections_per_minute_per_ip = 2\n"
    )
    for _ in range(2):
        c = await env.connect()
        assert (await c.reply())[0].startswith("220")
    c = await env.connect()
    assert await c.reply() == ["421 4.7.0 Too many connections from your address; try again later"]
    assert await c.closed()

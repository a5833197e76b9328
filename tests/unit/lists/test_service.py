"""The list engine with a fake queue and clock over a real lists.sqlite: subscriptions with
double opt-in and expiring tokens, posts in batches, moderation, bounce scores, digests, one-click
unsubscribe, and that a repeated hand-over changes nothing."""

from __future__ import annotations

import email
import email.policy
import os
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from carteiro.lists.db import ListDB
from carteiro.lists.model import MailingList, Member, Settings
from carteiro.lists.service import Copy, ListService

T0 = 1_800_000_000.0
DAY = 86400.0


@dataclass
class Sent:
    mail_from: str
    to: list[str]
    data: bytes
    verp: bool
    trusted: bool
    key: str | None
    headers: list[bytes]

    @property
    def msg(self) -> Message:
        return email.message_from_bytes(self.data, policy=email.policy.compat32)


@dataclass
class FakeSender:
    sent: list[Sent] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    async def send(
        self,
        mail_from: str,
        recipients: Sequence[Copy],
        data: bytes,
        *,
        verp: bool = False,
        trusted: bool = True,
        key: str | None = None,
    ) -> None:
        if key is not None and key in self.keys:
            return  # the queue drops a repeated key
        if key is not None:
            self.keys.add(key)
        self.sent.append(
            Sent(
                mail_from,
                [c.address for c in recipients],
                data,
                verp,
                trusted,
                key,
                [c.headers for c in recipients],
            )
        )

    def to(self, address: str) -> list[Sent]:
        return [s for s in self.sent if address in s.to]

    def take(self) -> list[Sent]:
        out, self.sent = self.sent, []
        return out


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class Policy:
    def __init__(self) -> None:
        self.strict: set[str] = set()

    async def policy(self, domain: str) -> str | None:
        return "reject" if domain in self.strict else "none"


@dataclass
class Env:
    svc: ListService
    db: ListDB
    out: FakeSender
    clock: Clock
    ml: MailingList
    dmarc: Policy
    archived: list[tuple[str, bytes]]

    async def mail(
        self,
        to: str,
        frm: str,
        subject: str,
        body: str = "hi",
        extra: str = "",
        envelope: str | None = None,
    ) -> str:
        data = (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}\r\n{body}\r\n").encode()
        out = await self.svc.receive(
            envelope if envelope is not None else frm.strip("<>").split("<")[-1], to, data
        )
        return f"{out.code} {out.text}"

    def reload(self) -> MailingList:
        got = self.db.get(self.ml.address)
        assert got is not None
        return got


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    db = ListDB(tmp_path / "lists.sqlite")
    out, clock, dmarc = FakeSender(), Clock(), Policy()
    archived: list[tuple[str, bytes]] = []

    class Archive:
        async def archive(self, target: str, data: bytes, key: str) -> None:
            archived.append((target, data))

    svc = ListService(db, out, dmarc, Archive(), web_url="https://mx.l.test", clock=clock, batch=2)
    ml = MailingList("dev@l.test", ["owner@l.test"], Settings(), T0)
    db.create(ml)
    yield Env(svc, db, out, clock, ml, dmarc, archived)
    await svc.stop()
    svc.close()


def _token(sent: Sent) -> str:
    m = re.search(r"confirm\+(\w+)@", str(sent.msg["Reply-To"]))
    assert m, sent.msg["Reply-To"]
    return m.group(1)


async def test_double_opt_in(env: Env) -> None:
    assert (await env.mail("dev-join@l.test", "bob@b.test", "join")).startswith("250")
    (ask, answer) = env.out.take()
    assert ask.to == ["bob@b.test"] and ask.msg["Subject"].startswith("confirm ")
    assert ask.mail_from == "dev-bounces@l.test" and not ask.verp
    assert "confirmation request was sent" in answer.msg.get_payload()
    assert env.db.member("dev@l.test", "bob@b.test") is None
    token = _token(ask)
    await env.mail(f"dev-confirm+{token}@l.test", "bob@b.test", f"Re: confirm {token}")
    assert env.db.member("dev@l.test", "bob@b.test") is not None
    assert any(s.msg["Subject"] == "Welcome to dev@l.test" for s in env.out.take())
    # spent
    await env.mail(f"dev-confirm+{token}@l.test", "bob@b.test", "again")
    assert "unknown or has expired" in env.out.take()[0].msg.get_payload()
    # leaving needs its own confirmation; "confirm TOKEN" to -request works too
    await env.mail("dev-request@l.test", "bob@b.test", "unsubscribe")
    ask = next(s for s in env.out.take() if s.msg["Subject"].startswith("confirm "))
    await env.mail("dev-request@l.test", "bob@b.test", f"confirm {_token(ask)}")
    assert env.db.member("dev@l.test", "bob@b.test") is None


async def test_tokens_expire(env: Env) -> None:
    await env.mail("dev-join@l.test", "bob@b.test", "join")
    token = _token(env.out.take()[0])
    env.clock.t += 73 * 3600
    await env.svc.maintain()
    assert env.db.pending(token) is None
    await env.mail(f"dev-confirm+{token}@l.test", "bob@b.test", "late")
    assert env.db.member("dev@l.test", "bob@b.test") is None


async def test_policies_open_closed_moderated(env: Env) -> None:
    ml = env.reload()
    ml.settings.subscription = "open"
    env.db.save(ml)
    await env.mail("dev-join@l.test", "a@b.test", "join")
    assert env.db.member("dev@l.test", "a@b.test") is not None
    ml.settings.subscription = "closed"
    env.db.save(ml)
    await env.mail("dev-join@l.test", "c@b.test", "join")
    assert "closed" in env.out.take()[-1].msg.get_payload()
    ml.settings.subscription = "moderated"
    env.db.save(ml)
    await env.mail("dev-join@l.test", "d@b.test", "join")
    token = _token(env.out.take()[0])
    await env.mail(f"dev-confirm+{token}@l.test", "d@b.test", "yes")
    assert env.db.member("dev@l.test", "d@b.test") is None  # confirmed, not yet approved
    notice = next(s for s in env.out.take() if s.to == ["owner@l.test"])
    mod = _token(notice)
    await env.mail(f"dev-confirm+{mod}@l.test", "d@b.test", "Re: x", "approve")  # not a moderator
    assert env.db.member("dev@l.test", "d@b.test") is None
    await env.mail(f"dev-confirm+{mod}@l.test", "owner@l.test", "Re: x", "approve")
    assert env.db.member("dev@l.test", "d@b.test") is not None


async def test_automatic_mail_gets_no_answer(env: Env) -> None:
    await env.mail(
        "dev-join@l.test", "bob@b.test", "join", extra="Auto-Submitted: auto-replied\r\n"
    )
    await env.mail("dev-request@l.test", "MAILER-DAEMON@b.test", "help", envelope="")
    assert env.out.sent == []


async def test_post_goes_out_in_batches_with_verp_and_one_click(env: Env) -> None:
    env.db.add_members("dev@l.test", [Member(f"m{i}@b.test") for i in range(5)])
    env.db.add_members(
        "dev@l.test",
        [Member("dig@b.test", delivery="digest"), Member("off@b.test", status="bounce")],
    )
    await env.mail("dev@l.test", "m0@b.test", "news")
    batches = env.out.take()
    assert [len(b.to) for b in batches] == [2, 2, 1]  # batch=2
    assert all(b.verp and b.mail_from == "dev-bounces@l.test" for b in batches)
    assert not any(b.trusted for b in batches)  # a stranger's From is never signed by us
    everyone = [a for b in batches for a in b.to]
    assert sorted(everyone) == [f"m{i}@b.test" for i in range(5)]
    head = batches[0].headers[0].decode()
    url = re.search(r"<(https://mx\.l\.test/lists/unsubscribe/([^>]+))>", head)
    assert url and "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in head
    assert batches[0].msg["List-Id"] == "<dev.l.test>"
    # the same hand-over again (a retry after a crash): nothing new
    await env.mail("dev@l.test", "m0@b.test", "news")
    assert env.out.take() == []
    # one-click: removes once, then says there was nobody
    token = url.group(2)
    who = batches[0].to[0]
    assert await env.svc.one_click(token) is True
    assert env.db.member("dev@l.test", who) is None
    assert await env.svc.one_click(token) is False
    assert await env.svc.one_click(token[:-2] + "xx") is None
    # the digest member's copy waits for the digest
    assert len(env.db.digest_posts("dev@l.test")) == 1
    n = await env.svc.send_digest(env.reload(), env.clock.t, force=True)
    (digest,) = env.out.take()
    assert n == 1 and digest.to == ["dig@b.test"]
    parts = digest.msg.get_payload()
    assert isinstance(parts, list) and parts[1].get_content_type() == "multipart/digest"
    inner = parts[1].get_payload()
    assert isinstance(inner, list) and len(inner) == 1
    assert inner[0].get_content_type() == "message/rfc822"  # RFC 2046 5.1.5: the default
    assert "news" in digest.data.decode()
    assert env.db.digest_posts("dev@l.test") == []


async def test_dmarc_strict_poster_is_rewritten_and_signed(env: Env) -> None:
    env.db.add_member("dev@l.test", Member("bob@strict.test"))
    env.dmarc.strict.add("strict.test")
    await env.mail("dev@l.test", "Bob <bob@strict.test>", "hi")
    (b,) = env.out.take()
    assert b.msg["From"] == "Bob via dev <dev@l.test>" and b.trusted


async def test_nonmember_post_held_then_rejected_by_moderator_reply(env: Env) -> None:
    ml = env.reload()
    ml.settings.archive = "owner@l.test:Lists/dev"
    env.db.save(ml)
    env.db.add_member("dev@l.test", Member("bob@b.test"))
    await env.mail("dev@l.test", "eve@e.test", "spam")
    sent = env.out.take()
    notice = next(s for s in sent if s.to == ["owner@l.test"])
    assert any(s.to == ["eve@e.test"] and "awaits a moderator" in s.msg["Subject"] for s in sent)
    assert "spam" in notice.data.decode()  # the held post is attached
    token = _token(notice)
    await env.mail(
        f"dev-confirm+{token}@l.test", "owner@l.test", "Re: x", "reject because spam\r\n> quoted"
    )
    sent = env.out.take()
    refusal = next(s for s in sent if s.to == ["eve@e.test"])
    assert "Reason: because spam" in refusal.msg.get_payload()[0].get_payload()
    assert not env.out.to("bob@b.test") and env.archived == []
    # a member's post is archived where the owner chose
    await env.mail("dev@l.test", "bob@b.test", "real")
    assert env.archived and env.archived[0][0] == "owner@l.test:Lists/dev"


async def test_cli_decision_is_carried_out_and_held_posts_expire(env: Env) -> None:
    env.db.add_member("dev@l.test", Member("bob@b.test"))
    await env.mail("dev@l.test", "eve@e.test", "one")
    await env.mail("dev@l.test", "eve@e.test", "two")
    env.out.take()
    one, _two = env.db.pending_of("dev@l.test", "post")
    assert env.db.set_pending_state(one.token, "approved")
    await env.svc.maintain()
    assert [s.msg["Subject"] for s in env.out.to("bob@b.test")] == ["one"]
    env.out.take()
    env.clock.t += 15 * DAY
    await env.svc.maintain()
    (expired,) = env.out.take()
    assert expired.to == ["eve@e.test"] and expired.msg["Subject"] == "Expired: two"
    assert env.db.pending_of("dev@l.test", "post") == []


async def test_announce_list_refuses_others(env: Env) -> None:
    ml = env.reload()
    ml.settings.posting, ml.settings.posters = "announce", ["boss@l.test"]
    env.db.save(ml)
    env.db.add_member("dev@l.test", Member("bob@b.test"))
    await env.mail("dev@l.test", "bob@b.test", "me too")
    (refusal,) = env.out.take()
    assert refusal.to == ["bob@b.test"] and refusal.msg["Subject"] == "Rejected: me too"
    await env.mail("dev@l.test", "boss@l.test", "news")
    assert [s.to for s in env.out.take()] == [["bob@b.test"]]


DSN_DELAY = (
    "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\n"
    "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
    "Final-Recipient: rfc822; bob@b.test\r\nAction: delayed\r\nStatus: 4.0.0\r\n--B--"
)


async def test_bounce_score_probe_disable_warn_remove(env: Env) -> None:
    ml = env.reload()
    ml.settings.bounce_threshold = 2
    env.db.save(ml)
    env.db.add_member("dev@l.test", Member("bob@b.test"))
    verp_addr = "dev-bounces+bob=b.test@l.test"
    await env.mail(verp_addr, "MAILER-DAEMON@b.test", "failure", envelope="")
    await env.mail(verp_addr, "MAILER-DAEMON@b.test", "failure", envelope="")  # same day
    m = env.db.member("dev@l.test", "bob@b.test")
    assert m is not None and m.bounce_score == 1
    # a delay report counts for nothing
    env.clock.t += DAY
    data = f"From: MAILER-DAEMON@b.test\r\nSubject: delayed\r\n{DSN_DELAY}".encode()
    await env.svc.receive("", verp_addr, data)
    assert env.db.member("dev@l.test", "bob@b.test").bounce_score == 1  # type: ignore[union-attr]
    await env.mail(verp_addr, "MAILER-DAEMON@b.test", "failure", envelope="")
    (probe,) = env.out.take()
    assert probe.to == ["bob@b.test"]
    assert probe.mail_from.startswith("dev-bounces+probe.")
    assert env.db.member("dev@l.test", "bob@b.test").status == "enabled"  # type: ignore[union-attr]
    # the probe bounces: delivery stops, member and owner are told
    await env.svc.receive("", probe.mail_from, b"Subject: failure\r\n\r\nno\r\n")
    assert env.db.member("dev@l.test", "bob@b.test").status == "bounce"  # type: ignore[union-attr]
    assert sorted(s.to[0] for s in env.out.take()) == ["bob@b.test", "owner@l.test"]
    # warnings every 7 days, then removal
    for _ in range(2):
        env.clock.t += 7 * DAY + 1
        env.svc._next_sweep = 0
        await env.svc.maintain()
        assert env.out.take()[0].msg["Subject"] == "dev: delivery still disabled"
    env.clock.t += 7 * DAY + 1
    env.svc._next_sweep = 0
    await env.svc.maintain()
    assert env.db.member("dev@l.test", "bob@b.test") is None


async def test_stale_scores_start_again(env: Env) -> None:
    env.db.add_member("dev@l.test", Member("bob@b.test"))
    for _ in range(3):
        await env.svc.register_bounce(env.reload(), "bob@b.test", env.clock.t)
        env.clock.t += 8 * DAY
    assert env.db.member("dev@l.test", "bob@b.test").bounce_score == 1  # type: ignore[union-attr]


async def test_unknown_list_address_is_refused(env: Env) -> None:
    assert (await env.mail("nope@l.test", "a@b.test", "x")).startswith("550")
    assert env.svc.owns("dev-bounces+x=y.test@l.test") and not env.svc.owns("dev-x@l.test")
    assert env.svc.loops("dev@l.test", b"List-Id: <dev.l.test>\r\n")
    assert not env.svc.loops("dev@l.test", b"List-Id: <other.l.test>\r\n")


async def test_owner_address_and_daily_digest(env: Env) -> None:
    await env.mail("dev-owner@l.test", "bob@b.test", "a question")
    (fwd,) = env.out.take()
    assert fwd.to == ["owner@l.test"] and fwd.mail_from == "dev-bounces@l.test"
    assert not fwd.trusted  # a stranger's message, forwarded: never signed by us
    env.db.add_member("dev@l.test", Member("dig@b.test", delivery="digest"))
    env.db.add_member("dev@l.test", Member("bob@b.test"))
    await env.mail("dev@l.test", "bob@b.test", "one")
    await env.mail("dev@l.test", "bob@b.test", "two")
    env.out.take()
    await env.svc.maintain()  # the first sweep: a day since the last digest (never)
    (digest,) = env.out.take()
    assert digest.to == ["dig@b.test"] and "dev digest" in digest.msg["Subject"]
    assert digest.data.count(b"Subject: one") == 1 and digest.data.count(b"Subject: two") == 1
    await env.mail("dev@l.test", "bob@b.test", "three")
    env.out.take()
    env.clock.t += 3600
    env.svc._next_sweep = 0
    await env.svc.maintain()
    assert env.out.take() == []  # not a day yet
    env.clock.t += DAY
    env.svc._next_sweep = 0
    await env.svc.maintain()
    assert [s.to for s in env.out.take()] == [["dig@b.test"]]


async def test_a_decision_repeated_after_a_crash_has_one_effect(env: Env) -> None:
    env.db.add_member("dev@l.test", Member("bob@b.test"))
    await env.mail("dev@l.test", "eve@e.test", "held")
    env.out.take()
    (p,) = env.db.pending_of("dev@l.test", "post")
    await env.svc._decide(env.reload(), p, "approve", "")  # done, then a crash: the token stays
    assert env.db.pending(p.token) is not None
    await env.svc.moderate(env.reload(), p.token, "approve", by="the retry")
    assert [s.msg["Subject"] for s in env.out.to("bob@b.test")] == ["held"]
    assert env.db.pending(p.token) is None
    # a subscription confirmed twice (the same hand-over again): one member, one welcome
    env.out.take()
    await env.mail("dev-join@l.test", "c@c.test", "join")
    token = _token(env.out.take()[0])
    for _ in range(2):
        await env.svc.receive(
            "c@c.test", f"dev-confirm+{token}@l.test", b"From: c@c.test\r\n\r\nok"
        )
    assert env.db.member("dev@l.test", "c@c.test") is not None
    assert [s.msg["Subject"] for s in env.out.to("c@c.test")].count("Welcome to dev@l.test") == 1


async def test_signed_list_copy_covers_both_unsubscribe_fields(env: Env, tmp_path: Path) -> None:
    # RFC 8058 4: List-Unsubscribe and List-Unsubscribe-Post must both be under a valid DKIM
    # signature; the queue signs each copy with its own fields in front, as this does.
    import dkim

    from carteiro.mailauth.dkim import DKIMSigner, ensure_dkim_key, txt_record

    key = ensure_dkim_key(tmp_path, "l.test", "s1")
    signer = DKIMSigner(tmp_path, ["l.test"], "s1")
    env.db.add_member("dev@l.test", Member("p@strict.test"))
    env.dmarc.strict.add("strict.test")
    await env.mail("dev@l.test", "p@strict.test", "hello")
    (batch,) = env.out.take()
    assert batch.trusted  # From is the list's now: the queue signs it
    copy = batch.headers[0] + batch.data
    signed = signer(copy) + copy
    sig = email.message_from_bytes(signed, policy=email.policy.compat32)["DKIM-Signature"]
    tags = dict(t.strip().split("=", 1) for t in re.sub(r"\s+", "", sig).split(";") if t)
    signed_fields = tags["h"].lower().split(":")
    assert "list-unsubscribe" in signed_fields
    assert "list-unsubscribe-post" in signed_fields

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.l.test."
        return txt_record(key).encode()

    assert dkim.verify(signed, dnsfunc=dns)
    # a field we added after signing would break it: the h= list is what was hashed
    assert not dkim.verify(signed.replace(b"One-Click", b"One-Clack", 1), dnsfunc=dns)


async def test_list_copy_is_arc_sealed_then_dkim_signed(env: Env, tmp_path: Path) -> None:
    # RFC 8617 5.1: the list changes the post (subject tag, footer), so it seals what its
    # receiving side saw; the queue DKIM-signs each copy after, as on the forward path.
    import dkim

    from carteiro.mailauth.arc import Sealer
    from carteiro.mailauth.dkim import DKIMSigner, ensure_dkim_key, txt_record

    keys = {d: ensure_dkim_key(tmp_path, d, "s1") for d in ("l.test", "fwd.test")}

    class ListSealer:
        def __init__(self) -> None:
            self.domains: list[str] = []

        def seal(self, domain: str, data: bytes) -> bytes:
            self.domains.append(domain)
            return Sealer.from_key_file(keys[domain], domain, "s1", "mx.l.test").seal(data)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        domain = name.decode().removeprefix("s1._domainkey.").rstrip(".")
        return txt_record(keys[domain]).encode()

    def arc(msg: bytes) -> tuple[str, list[str]]:
        cv, results, _why = dkim.arc_verify(msg, dnsfunc=dns)
        # the cv= of each ARC-Seal, oldest (i=1) first
        return cv.decode(), [r["cv"].decode() for r in sorted(results, key=lambda r: r["instance"])]

    env.svc.sealer = sealer = ListSealer()
    from dataclasses import replace

    settings = replace(env.ml.settings, subject_prefix="[dev] ", footer="-- the dev list")
    env.db.save(replace(env.ml, settings=settings))
    env.db.add_member("dev@l.test", Member("bob@strict.test"))
    env.dmarc.strict.add("strict.test")
    signer = DKIMSigner(tmp_path, ["l.test"], "s1")

    # first hop: no chain yet, our results vouch for the post; the seal says cv=none
    ours = "Authentication-Results: mx.l.test; spf=pass smtp.mailfrom=strict.test\r\n"
    await env.mail("dev@l.test", "bob@strict.test", "one", extra=ours)
    (batch,) = env.out.take()
    assert sealer.domains == ["l.test"]
    assert batch.msg["Subject"].startswith("[dev]") and batch.msg["ARC-Seal"] is not None
    assert "cv=none" in batch.msg["ARC-Seal"]
    assert arc(batch.data) == ("pass", ["none"])
    assert "spf=pass" in batch.msg["ARC-Authentication-Results"]
    copy = batch.headers[0] + batch.data
    signed = signer(copy) + copy
    assert dkim.verify(signed, dnsfunc=dns)  # the queue's signature over the sealed copy
    assert arc(signed) == ("pass", ["none"])  # per-member fields on top leave the seal intact
    assert arc(signed.replace(b"the dev list", b"the dve list"))[0] == "fail"

    # second hop: a forwarder sealed the post (i=1), our check saw arc=pass: the list's seal
    # (i=2) says cv=pass, though the footer broke the forwarder's message signature
    fwd = Sealer.from_key_file(keys["fwd.test"], "fwd.test", "s1", "mx.fwd.test")
    post = b"From: bob@strict.test\r\nTo: dev@l.test\r\nSubject: two\r\n\r\nhi\r\n"
    theirs = b"Authentication-Results: mx.fwd.test; spf=pass smtp.mailfrom=strict.test\r\n" + post
    sealed = fwd.seal(theirs) + theirs
    ours2 = b"Authentication-Results: mx.l.test; arc=pass header.oldest-pass=0\r\n" + sealed
    assert (await env.svc.receive("bob@strict.test", "dev@l.test", ours2)).code == 250
    (batch,) = env.out.take()
    assert arc(batch.data) == ("pass", ["none", "pass"])
    copy = batch.headers[0] + batch.data
    assert dkim.verify(signer(copy) + copy, dnsfunc=dns)

    # nothing of ours to vouch for: no seal (RFC 8617 5.1.1)
    await env.mail("dev@l.test", "bob@strict.test", "three")
    (batch,) = env.out.take()
    assert batch.msg["ARC-Seal"] is None


async def test_a_list_made_by_another_process_is_known_at_once(env: Env) -> None:
    """`carteiro list create` commits through its own connection while the server runs: the
    very next RCPT must know the list (a cache with a time-to-live once refused it, 5.1.1)."""
    assert env.svc.owns("dev@l.test")
    assert not env.svc.owns("new@l.test")
    other = ListDB(env.db.path)  # as the CLI opens the file
    try:
        other.create(MailingList("new@l.test", ["owner@l.test"], Settings(), T0))
    finally:
        other.close()
    assert env.svc.owns("new@l.test") and env.svc.owns("new-request@l.test")


class _CountingConnection:
    """A sqlite3 connection that counts the statements run through it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements = 0

    def execute(self, *args: Any) -> Any:
        self.statements += 1
        return self.conn.execute(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _age_wal(db: ListDB, seconds: float) -> None:
    wal = Path(f"{db.path}-wal")
    st = wal.stat()
    os.utime(wal, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


async def test_the_list_lookup_per_rcpt_runs_no_query_while_nothing_changes(env: Env) -> None:
    """RCPT asks whether an address is a list: once the WAL file is quiet, a stat answers."""
    counting = _CountingConnection(env.db._db)
    env.db._db = counting  # type: ignore[assignment]
    _age_wal(env.db, 10)
    assert env.svc.owns("dev@l.test")  # the query, whose answer the quiet file then vouches for
    before = counting.statements
    for _ in range(3):
        assert env.svc.owns("dev@l.test") and not env.svc.owns("new@l.test")
    assert counting.statements == before


async def test_a_list_made_after_a_quiet_spell_is_known_at_once(env: Env) -> None:
    _age_wal(env.db, 10)
    assert env.svc.owns("dev@l.test") and not env.svc.owns("new@l.test")
    other = ListDB(env.db.path)  # as the CLI opens the file
    try:
        other.create(MailingList("new@l.test", ["owner@l.test"], Settings(), T0))
    finally:
        other.close()
    assert env.svc.owns("new@l.test")
    other = ListDB(env.db.path)
    try:
        other.delete("new@l.test")
    finally:
        other.close()
    assert not env.svc.owns("new@l.test")


async def test_a_recent_wal_is_not_trusted(env: Env) -> None:
    """Two commits within one tick of the file clock can leave the same mtime and size: a WAL
    written less than WAL_QUIET ago never stands for the query."""
    counting = _CountingConnection(env.db._db)
    env.db._db = counting  # type: ignore[assignment]
    _age_wal(env.db, 0)
    env.svc.owns("dev@l.test")
    before = counting.statements
    env.svc.owns("dev@l.test")
    assert counting.statements == before + 1

"""Local delivery with Sieve: folders (:create), flags, editheader, redirects and vacation replies
handed to the outbound queue with the right envelope, loop protection, and a failing script
that keeps the message with a note."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carteiro.directory.accounts import Directory
from carteiro.mail.deliver import DeliveryError, LocalDelivery
from carteiro.mail.sieve_filter import open_sieve_filter
from carteiro.store.memory import MemoryMailStore

ALICE, BOB = "alice@example.test", "bob@example.test"
MSG = (
    b"Return-Path: <joe@remote.test>\r\n"
    b"From: Joe <joe@remote.test>\r\nTo: alice@example.test\r\nSubject: lunch\r\n"
    b"Message-ID: <m1@remote.test>\r\n\r\nLunch today?\r\n"
)


@dataclass
class Outbox:
    sent: list[tuple[str, tuple[str, ...], bytes, str | None, bool]] = field(default_factory=list)
    fail: bool = False

    async def __call__(
        self, mail_from: str, rcpts: tuple[str, ...], data: bytes, key: str | None, trusted: bool
    ) -> str:
        if self.fail:
            raise OSError("queue down")
        self.sent.append((mail_from, rcpts, data, key, trusted))
        return "q1"


@dataclass
class Env:
    d: LocalDelivery
    out: Outbox
    tmp: Path

    def script(self, account: str, text: str) -> None:
        assert self.d.sieve is not None
        self.d.sieve.scripts.put(account, "main", text)
        self.d.sieve.scripts.set_active(account, "main")

    async def deliver(self, to: str, data: bytes = MSG, sender: str = "joe@remote.test") -> None:
        res = self.d.resolve(to)
        await self.d.deliver(await self.d.targets(res.local_accounts), data, sender)

    async def messages(
        self, account: str, mailbox: str = "INBOX"
    ) -> list[tuple[bytes, frozenset[str]]]:
        acct = await self.d.store.account(account)
        box = await acct.get_mailbox(mailbox)
        return [
            (await acct.read_message(box.id, m.uid), m.flags)
            for m in await acct.list_messages(box.id)
        ]


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    # opening a directory and hashing passwords is slow: once per module (no test changes it)
    path = tmp_path_factory.mktemp("sieve-dir") / "directory.sqlite"
    d = Directory(path, static_domains=["example.test"])
    d.add_user(ALICE, "pw")
    d.add_user(BOB, "pw")
    d.add_alias("al@example.test", ALICE)
    yield d
    d.close()


@pytest.fixture
async def env(tmp_path: Path, directory: Directory) -> AsyncIterator[Env]:
    store = MemoryMailStore()
    for a in (ALICE, BOB):
        await store.create_account(a)
    out = Outbox()
    sieve = open_sieve_filter(tmp_path, "mx.example.test")
    d = LocalDelivery(store, directory, tmp_path / "mbox", sieve=sieve, outbound=out)
    yield Env(d, out, tmp_path)
    sieve.state.close()


async def test_no_script_plain_delivery(env: Env) -> None:
    await env.deliver(ALICE)
    assert len(await env.messages(ALICE)) == 1 and not env.out.sent


async def test_fileinto_create_flags_and_copy(env: Env) -> None:
    env.script(
        ALICE,
        'require ["fileinto", "mailbox", "imap4flags", "copy"];'
        'fileinto :create :flags "\\\\Flagged" "Food/Lunch"; fileinto :copy "Missing";',
    )
    await env.deliver(ALICE)
    [(data, flags)] = await env.messages(ALICE, "Food/Lunch")
    assert flags == {"\\Flagged"} and data.endswith(b"Lunch today?\r\n")
    # fileinto of a folder that does not exist (no :create) falls back to the INBOX, and the
    # :copy keeps the implicit keep: one copy there, not two
    assert len(await env.messages(ALICE)) == 1


async def test_a_folder_named_twice_gets_one_copy_with_the_later_flags(env: Env) -> None:
    # as Pigeonhole: rule 1 files into Work, rule 2 flags and files into Work again
    env.script(
        ALICE,
        'require ["fileinto", "imap4flags", "copy"];'
        'fileinto "Work"; fileinto :flags "\\\\Flagged" "Work";'
        'keep :flags "\\\\Seen"; fileinto :copy "INBOX";'
        'fileinto :copy :flags "$Later" "Copies";',
    )
    acct = await env.d.store.account(ALICE)
    for box in ("Work", "Copies"):
        await acct.create_mailbox(box)
    await env.deliver(ALICE)
    assert [f for _, f in await env.messages(ALICE, "Work")] == [{"\\Flagged"}]
    # INBOX named twice (keep, then fileinto :copy): one copy, the later action's flags (none)
    assert [f for _, f in await env.messages(ALICE)] == [frozenset()]
    assert [f for _, f in await env.messages(ALICE, "Copies")] == [{"$Later"}]


async def test_the_implicit_keep_leaves_an_explicit_inbox_copy_alone(env: Env) -> None:
    env.script(
        ALICE,
        'require ["fileinto", "imap4flags", "copy"]; fileinto :copy :flags "\\\\Seen" "INBOX";',
    )
    await env.deliver(ALICE)
    assert [f for _, f in await env.messages(ALICE)] == [{"\\Seen"}]


async def test_editheader_changes_the_stored_copy(env: Env) -> None:
    env.script(
        ALICE,
        'require ["editheader"]; addheader "X-Filed" "by sieve"; deleteheader "message-id";',
    )
    await env.deliver(ALICE)
    [(data, _)] = await env.messages(ALICE)
    assert data.startswith(b"X-Filed: by sieve\r\n") and b"Message-ID" not in data
    assert data.endswith(b"\r\n\r\nLunch today?\r\n")


async def test_a_broken_script_keeps_with_a_note(env: Env) -> None:
    env.script(ALICE, 'require "variables"; set "a" "${a}${a}"; keep;')
    assert env.d.sieve is not None
    # a script made unusable on disk behind the checker's back (an upgrade, a hand edit)
    path = next((env.tmp / "sieve").glob("alice*/main.sieve"))
    path.write_text("if true {")
    await env.deliver(ALICE)
    [(kept, _), (notice, _)] = await env.messages(ALICE)
    assert b"X-Sieve-Error: script 'main' does not compile: line 1" in kept
    assert kept.endswith(b"Lunch today?\r\n")
    assert b"Subject: Your mail filter 'main' failed" in notice
    assert b"Auto-Submitted: auto-generated" in notice and b"line 1, column 10" in notice
    # the same failure again: the message is kept with its note, the user is not told twice
    await env.deliver(ALICE)
    assert len(await env.messages(ALICE)) == 3
    # a runtime error (the CPU limit) keeps too, and is news
    env.d.sieve.limits.cost = 50
    path.write_text('if header :matches "subject" "*l*u*n*c*h*x" { discard; }' * 20)
    await env.deliver(ALICE)
    got = await env.messages(ALICE)
    assert len(got) == 5 and b"CPU limit" in got[3][0] and b"CPU limit" in got[4][0]


async def test_redirect_goes_through_the_queue_with_a_fresh_envelope(env: Env) -> None:
    env.script(ALICE, 'redirect "friend@elsewhere.test";')
    await env.deliver(ALICE)
    assert await env.messages(ALICE) == []
    [(mail_from, rcpts, data, _, trusted)] = env.out.sent
    assert (mail_from, rcpts, trusted) == (ALICE, ("friend@elsewhere.test",), False)
    assert data.startswith(b"X-Sieve-Redirected-From: alice@example.test\r\nFrom: Joe")
    assert b"Return-Path" not in data
    # a bounce stays a bounce: null reverse-path
    await env.deliver(ALICE, sender="")
    assert env.out.sent[-1][0] == ""


async def test_redirect_that_cannot_be_queued_fails_the_delivery(env: Env) -> None:
    env.script(ALICE, 'require "copy"; redirect :copy "friend@elsewhere.test";')
    env.out.fail = True
    with pytest.raises(DeliveryError):
        await env.deliver(ALICE)
    assert await env.messages(ALICE) == []  # undone: the client retries the whole message


async def test_two_accounts_redirecting_to_each_other_do_not_loop(env: Env) -> None:
    env.script(ALICE, f'redirect "{BOB}";')
    env.script(BOB, f'redirect "{ALICE}";')
    await env.deliver(ALICE)
    # the queue would bring it to bob; deliver what alice sent to bob, then back to alice
    for hop in range(3):
        mail_from, (rcpt,), data, _, _ = env.out.sent[-1]
        await env.deliver(rcpt, b"Return-Path: <x>\r\n" + data, mail_from)
        if len(env.out.sent) == hop + 1:
            break
    assert len(env.out.sent) == 2  # alice -> bob -> alice, then alice keeps it
    [(data, _)] = await env.messages(ALICE)
    assert b"mail loop" in data


async def test_vacation_once_per_sender_and_never_to_lists(env: Env) -> None:
    env.script(ALICE, 'require "vacation"; vacation :days 7 "Away until Monday.";')
    await env.deliver(ALICE)
    [(mail_from, rcpts, data, _, trusted)] = env.out.sent
    assert (mail_from, rcpts, trusted) == ("", ("joe@remote.test",), True)
    assert b"Auto-Submitted: auto-replied" in data and b"In-Reply-To: <m1@remote.test>" in data
    assert b"Subject: Auto: lunch" in data and b"Away until Monday." in data
    assert len(await env.messages(ALICE)) == 1  # and the message is kept
    await env.deliver(ALICE)
    assert len(env.out.sent) == 1  # once per sender per :days
    other = MSG.replace(b"joe@remote.test", b"ann@remote.test")
    await env.deliver(ALICE, other, "ann@remote.test")
    assert len(env.out.sent) == 2
    for bad in (
        b"List-Id: <l.remote.test>\r\n",
        b"Precedence: bulk\r\n",
        b"Auto-Submitted: auto-generated\r\n",
    ):
        msg = bad + MSG.replace(b"joe@", b"kim@")
        await env.deliver(ALICE, msg, "kim@remote.test")
    await env.deliver(ALICE, MSG.replace(b"joe@", b"lee@"), "")  # a bounce
    cc = MSG.replace(b"To: alice@example.test", b"To: someone@else.test")
    await env.deliver(ALICE, cc.replace(b"joe@", b"may@"), "may@remote.test")  # Bcc'd
    assert len(env.out.sent) == 2
    # an alias of the account counts as the user's address
    via_alias = MSG.replace(b"To: alice@example.test", b"To: al@example.test")
    await env.deliver("al@example.test", via_alias.replace(b"joe@", b"ned@"), "ned@remote.test")
    assert len(env.out.sent) == 3


async def test_reject_sends_an_mdn_and_stores_nothing(env: Env) -> None:
    env.script(ALICE, 'require "reject"; reject "Not interested.";')
    await env.deliver(ALICE)
    assert await env.messages(ALICE) == []
    [(mail_from, rcpts, data, _, _)] = env.out.sent
    assert (mail_from, rcpts) == ("", ("joe@remote.test",))
    assert b"disposition-notification" in data and b"deleted" in data


async def test_ereject_sends_a_dsn(env: Env) -> None:
    env.script(ALICE, 'require "ereject"; ereject "No thanks.";')
    await env.deliver(ALICE)
    [(mail_from, rcpts, data, _, _)] = env.out.sent
    assert (mail_from, rcpts) == ("", ("joe@remote.test",))
    assert b'report-type="delivery-status"' in data or b"report-type=delivery-status" in data
    assert b"Status: 5.7.1" in data and b"No thanks." in data
    # a bounce is never rejected back: it is dropped
    env.out.sent.clear()
    await env.deliver(ALICE, sender="")
    assert env.out.sent == [] and await env.messages(ALICE) == []


def test_state_is_durable_and_expires(tmp_path: Path) -> None:
    from carteiro.mail.sieve_state import SieveState

    st = SieveState(tmp_path / "state.sqlite")
    st.record_reply(ALICE, "h", "Joe@Remote.test", now=100.0, until=200.0)
    st.record_id(ALICE, "k", now=100.0, until=200.0, renew=False)
    st.close()
    st = SieveState(tmp_path / "state.sqlite")  # a restart
    assert st.replied(ALICE, "h", "joe@remote.test", 150.0)
    assert not st.replied(ALICE, "h", "joe@remote.test", 250.0)
    assert not st.replied(BOB, "h", "joe@remote.test", 150.0)  # per account
    assert st.seen(ALICE, "k", 150.0)
    # RFC 7352 3: without :last a repeat does not extend the period; with :last it does
    st.record_id(ALICE, "k", now=150.0, until=250.0, renew=False)
    assert not st.seen(ALICE, "k", 220.0)
    st.record_id(ALICE, "k", now=150.0, until=250.0, renew=True)
    assert st.seen(ALICE, "k", 220.0)
    st.close()


async def test_envelope_to_is_the_address_the_mail_was_sent_to(env: Env) -> None:
    env.script(
        ALICE,
        'require ["envelope", "fileinto", "mailbox"];'
        'if envelope :is "to" "al@example.test" { fileinto :create "ViaAlias"; }',
    )
    await env.d.deliver_to("al@example.test", "joe@remote.test", MSG, None)
    assert len(await env.messages(ALICE, "ViaAlias")) == 1
    await env.d.deliver_to(ALICE, "joe@remote.test", MSG, None)
    assert len(await env.messages(ALICE)) == 1


async def test_include_personal_and_global_scripts(env: Env) -> None:
    assert env.d.sieve is not None
    scripts = env.d.sieve.scripts
    scripts.put(ALICE, "lists", 'require ["fileinto", "mailbox"]; fileinto :create "Food";')
    gdir = env.tmp / "sieve" / "_global"
    gdir.mkdir(parents=True)
    (gdir / "flags.sieve").write_text('require "imap4flags"; addflag "$Global";')
    env.script(
        ALICE,
        'require ["include", "imap4flags"]; include :global "flags"; include :personal "lists";',
    )
    await env.deliver(ALICE)
    await env.deliver(ALICE)  # the included scripts come from the compiled cache now
    got = await env.messages(ALICE, "Food")
    assert len(got) == 2 and all(flags == {"$Global"} for _, flags in got)


async def test_notify_mailto_goes_out_once_and_never_about_automatic_mail(env: Env) -> None:
    env.script(
        ALICE,
        'require "enotify"; notify :importance "1" "mailto:pager@remote.test?subject=New%20mail";',
    )
    await env.deliver(ALICE)
    [(mail_from, rcpts, data, _, trusted)] = env.out.sent
    assert (mail_from, rcpts, trusted) == ("", ("pager@remote.test",), True)
    assert b"Auto-Submitted: auto-notified" in data and b"Subject: New mail" in data
    assert b"Importance: high" in data
    assert len(await env.messages(ALICE)) == 1  # notify keeps the implicit keep
    await env.deliver(ALICE, b"Auto-Submitted: auto-notified\r\n" + MSG)
    assert len(env.out.sent) == 1  # RFC 5436 2.7: no notification about a notification

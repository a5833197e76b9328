"""Local delivery: resolution (aliases, catch-all, plus-addressing), plus-folders, store + mbox in
one all-or-nothing transaction, and the undo when a later step fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from carteiro.directory.accounts import Directory
from carteiro.mail.deliver import DeliveryError, LocalDelivery, Target, UnknownRecipient
from carteiro.store.memory import MemoryMailStore

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"


@pytest.fixture(scope="module")
def directory_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("deliver-dir") / "directory.sqlite"
    d = Directory(path, static_domains=["example.test"])
    d.add_user(ALICE, "pw")
    d.add_user(BOB, "pw")
    d.add_user(CAROL, "pw", delivery="mbox")
    d.add_alias("all@example.test", ALICE)
    d.add_alias("all@example.test", BOB)
    d.add_alias("all@example.test", CAROL)
    d.add_alias("fwd@example.test", "x@remote.test")
    d.add_alias("mixed@example.test", ALICE)
    d.add_alias("mixed@example.test", "y@remote.test")
    d.close()
    return path


@pytest.fixture
async def env(tmp_path: Path, directory_file: Path) -> AsyncIterator[tuple[LocalDelivery, Path]]:
    (tmp_path / "directory.sqlite").write_bytes(directory_file.read_bytes())
    directory = Directory(tmp_path / "directory.sqlite", static_domains=["example.test"])
    store = MemoryMailStore()
    for a in (ALICE, BOB, CAROL):
        await store.create_account(a)
    acct = await store.account(ALICE)
    await acct.create_mailbox("Lists")
    msg = tmp_path / "msg"
    msg.write_bytes(b"Return-Path: <s@x.test>\r\nSubject: hi\r\n\r\nFrom me\r\n")
    yield LocalDelivery(store, directory, tmp_path / "mbox", plus_folders=True), msg
    directory.close()


async def count(d: LocalDelivery, account: str, mailbox: str = "INBOX") -> int:
    acct = await d.store.account(account)
    return len(await acct.list_messages((await acct.get_mailbox(mailbox)).id))


async def test_resolution(env: tuple[LocalDelivery, Path]) -> None:
    d, _ = env
    assert d.resolve("Alice@Example.test").local_accounts == ((ALICE, ""),)
    assert d.resolve("alice+Lists@example.test").local_accounts == ((ALICE, "lists"),)
    assert d.resolve("fwd@example.test").remote == ("x@remote.test",)
    with pytest.raises(UnknownRecipient):
        d.resolve("nobody@example.test")
    with pytest.raises(UnknownRecipient):  # the refusal is cached too, and raised afresh
        d.resolve("nobody@example.test")


async def test_plus_folder_and_one_copy_per_account(env: tuple[LocalDelivery, Path]) -> None:
    d, msg = env
    targets = await d.targets([(ALICE, "lists"), (ALICE, ""), (BOB, "Nope")])
    assert targets == [Target(ALICE, "Lists"), Target(BOB, "INBOX")]
    await d.deliver(targets, msg, "s@x.test")
    assert await count(d, ALICE, "Lists") == 1 and await count(d, ALICE) == 0
    assert await count(d, BOB) == 1


async def test_store_and_mbox_together(env: tuple[LocalDelivery, Path]) -> None:
    d, msg = env
    res = d.resolve("all@example.test")
    receipt = await d.deliver(await d.targets(res.local_accounts), msg, "s@x.test")
    assert receipt.mbox_accounts == (CAROL,) and len(receipt.appended) == 2
    mbox = d.mbox.path_for(CAROL).read_bytes()
    assert mbox.startswith(b"From s@x.test ") and b"\n>From me\n\n" in mbox


async def test_a_failing_later_step_undoes_everything(env: tuple[LocalDelivery, Path]) -> None:
    d, msg = env
    targets = await d.targets(d.resolve("all@example.test").local_accounts)

    async def queue_refuses() -> None:
        raise RuntimeError("spool down")

    with pytest.raises(RuntimeError):
        await d.deliver(targets, msg, "s@x.test", then=queue_refuses)
    assert await count(d, ALICE) == 0 and await count(d, BOB) == 0
    assert d.mbox.path_for(CAROL).read_bytes() == b""
    assert not list(d.mbox.directory.glob("*.lock"))


async def test_store_failure_rolls_back_mbox(env: tuple[LocalDelivery, Path]) -> None:
    d, msg = env
    targets = [Target(ALICE, "INBOX"), Target(CAROL, "INBOX"), Target("gone@example.test")]
    with pytest.raises(DeliveryError) as e:
        await d.deliver(targets, msg, "s@x.test")
    assert e.value.temporary
    assert d.mbox.path_for(CAROL).read_bytes() == b""
    assert await count(d, ALICE) == 0


DATA = b"Subject: report\r\n\r\nbody\r\n"


async def inbox(d: LocalDelivery, account: str) -> list[bytes]:
    acct = await d.store.account(account)
    box = await acct.get_mailbox("INBOX")
    return [await acct.read_message(box.id, m.uid) for m in await acct.list_messages(box.id)]


async def test_deliver_to_one_address_for_the_queue(env: tuple[LocalDelivery, Path]) -> None:
    d, _ = env
    forwarded: list[tuple[str, ...]] = []

    async def forward(remote: object) -> None:
        forwarded.append(tuple(remote))  # type: ignore[call-overload]

    # RFC 5321 4.4: the delivering MTA adds Return-Path; the data handed over has none
    assert await d.deliver_to(ALICE, "", DATA, forward) == "delivered locally"
    assert await inbox(d, ALICE) == [b"Return-Path: <>\r\n" + DATA]
    assert await d.deliver_to("mixed@example.test", "s@x.test", DATA, forward) == (
        "delivered locally"
    )
    assert forwarded == [("y@remote.test",)] and len(await inbox(d, ALICE)) == 2
    assert await d.deliver_to("fwd@example.test", "s@x.test", DATA, forward) == "forwarded"
    assert forwarded[-1] == ("x@remote.test",)
    with pytest.raises(UnknownRecipient):
        await d.deliver_to("nobody@example.test", "", DATA, forward)


async def test_deliver_to_undoes_the_local_copy_when_forwarding_fails(
    env: tuple[LocalDelivery, Path],
) -> None:
    d, _ = env

    async def spool_down(remote: object) -> None:
        raise RuntimeError("spool down")

    with pytest.raises(RuntimeError):
        await d.deliver_to("mixed@example.test", "s@x.test", DATA, spool_down)
    assert await inbox(d, ALICE) == []
    with pytest.raises(DeliveryError) as e:  # nowhere to forward: try later, nothing delivered
        await d.deliver_to("mixed@example.test", "s@x.test", DATA, None)
    assert e.value.temporary and await inbox(d, ALICE) == []


async def test_quota_check_after_delivery_reuses_the_account_handle(tmp_path: Path) -> None:
    """The quota check after each delivery looks the account up in the store once per
    cache_ttl (a read in the store's thread pool each time otherwise), and still warns."""
    directory = Directory(tmp_path / "directory.sqlite", static_domains=["example.test"])
    directory.add_user(ALICE, "pw")
    store = MemoryMailStore()
    await store.create_account(ALICE)
    acct = await store.account(ALICE)
    await acct.set_quota(None, 20)
    message = b"Return-Path: <s@x.test>\r\nSubject: hi\r\n\r\nbody\r\n"
    for _ in range(17):
        await acct.append("INBOX", message)
    looked_up: list[str] = []
    real_account = store.account

    async def counting_account(name: str) -> object:
        looked_up.append(name)
        return await real_account(name)

    store.account = counting_account  # type: ignore[method-assign,assignment]
    # (this store instance is the test's alone: no need to put the method back)
    now = [100.0]
    d = LocalDelivery(store, directory, tmp_path / "mbox", clock=lambda: now[0])
    await d.deliver([Target(ALICE, "INBOX")], message, "s@x.test")
    await d.deliver([Target(ALICE, "INBOX")], message, "s@x.test")
    assert looked_up == [ALICE]
    # 19 of 20 after the second: the owner got the 90 % warning through the kept handle
    inbox = await acct.get_mailbox("INBOX")
    assert len(await acct.list_messages(inbox.id)) == 20
    await acct.set_quota(None, 40)
    now[0] += 1.5  # past cache_ttl: looked up again
    await d.deliver([Target(ALICE, "INBOX")], message, "s@x.test")
    assert looked_up == [ALICE, ALICE]
    assert len(await acct.list_messages(inbox.id)) == 21
    directory.close()

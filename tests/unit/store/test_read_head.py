"""AccountStore.read_head (POP3 TOP of a large message): the start of read_message's bytes, at
least as many octets as asked when the message has them, and whether that is all of it; for a
message committed with its bytes, a file in its LF form, and a file a Maildir client renamed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carteiro.store.api import DELETED, FlagOp, MailStore
from carteiro.store.sqlite_maildir import SqliteMaildirStore

ACCOUNT = "head@example.test"
SMALL = b"Subject: small\r\n\r\nhello\r\n"
BIG = b"Subject: big\r\n\r\n" + b"".join(b"line %05d\r\n" % i for i in range(40000))


async def test_read_head(store: MailStore) -> None:
    await store.create_account(ACCOUNT)
    acct = await store.account(ACCOUNT)
    small = (await acct.append("INBOX", SMALL)).uid
    big = (await acct.append("INBOX", BIG)).uid
    box = await acct.get_mailbox("INBOX")
    if isinstance(store, SqliteMaildirStore):
        await store.flush_files()
    assert await acct.read_head(box.id, small, 1000) == (SMALL, True)
    for octets in (1, 4096, 65536, len(BIG) - 1, len(BIG), 10 * len(BIG)):
        data, whole = await acct.read_head(box.id, big, octets)
        assert BIG.startswith(data) and len(data) >= min(octets, len(BIG))
        # (a file in its LF form is shorter than the message: it may all come before `octets`)
        assert whole == (data == BIG)
        if octets >= len(BIG):
            assert whole
    if isinstance(store, SqliteMaildirStore):
        # a Maildir client renamed the file (a flag): read_message's search finds it
        cur = store.data_dir / "mail" / "example.test" / "head" / "Maildir" / "cur"
        [name] = [n for n in os.listdir(cur) if ",U=2:" in n]
        os.rename(cur / name, cur / (name + "S"))
        data, _ = await acct.read_head(box.id, big, 4096)
        assert BIG.startswith(data) and len(data) >= 4096
    await acct.set_flags(box.id, [big], FlagOp.ADD, [DELETED])
    await acct.expunge(box.id)
    with pytest.raises(KeyError):
        await acct.read_head(box.id, big, 10)


def test_the_path_above_is_where_the_store_puts_the_account(tmp_path: Path) -> None:
    from carteiro.store import names

    assert names.account_path_parts(ACCOUNT) == ("example.test", "head")

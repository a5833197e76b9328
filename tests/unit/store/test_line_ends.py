"""A delivery whose caller vouches for its line ends (`crlf`: the SMTP server checked every chunk)
is stored in the same LF form as one the store checks itself, and the store skips the check."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carteiro.store import maildir
from carteiro.store.api import Delivery
from carteiro.store.sqlite_maildir import SqliteMaildirStore

ACCOUNT = "crlf@example.test"

# lines without CR or LF (any other octet), joined by CRLF, the last one maybe unterminated
_line = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def crlf_messages(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(_line, max_size=20))
    tail = draw(_line)
    return b"".join(line + b"\r\n" for line in lines) + tail


@given(crlf_messages())
def test_to_disk_with_crlf_equals_the_checked_form(data: bytes) -> None:
    lf = maildir.to_disk(data, crlf=True)
    assert lf == maildir.to_disk(data)
    if lf is not None:
        assert maildir.to_wire(lf) == data


@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"\r\r\n"]), max_size=30))
def test_the_file_of_a_name_in_lf_form_is_to_disks_form(pieces: list[bytes]) -> None:
    """The file worker trusts the name (no bare LF) and counts instead of checking: the same
    bytes as to_disk, bare CRs included (they stay in the LF form)."""
    data = b"".join(pieces)
    lf = maildir.to_disk(data)
    base = maildir.make_base("u", len(data), 1, None if lf is None else len(lf))
    assert maildir.disk_bytes(data, base) == (data if lf is None else lf)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMaildirStore]:
    s = SqliteMaildirStore(tmp_path / "data", search_indexer=False)
    await s.create_account(ACCOUNT)
    try:
        yield s
    finally:
        await s.close()


def _message(size: int) -> bytes:
    head = b"From: a@example.org\r\nSubject: line ends\r\n\r\n"
    line = b"0123456789 abcdefghij klmnopqrst uvwxyz ABCDEFGHIJ KLMNOPQRST\r\n"
    return head + line * (size // len(line))


@pytest.mark.parametrize("size", [1024, 100 * 1024])  # committed with its bytes; staged as a file
@pytest.mark.parametrize("crlf", [False, True])
async def test_a_vouched_delivery_skips_the_check_and_reads_back_the_same(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch, size: int, crlf: bool
) -> None:
    checks = 0
    real = maildir.to_wire

    def counting(data: bytes) -> bytes:
        nonlocal checks
        checks += 1
        return real(data)

    data = _message(size)
    monkeypatch.setattr(maildir, "to_wire", counting)
    [res] = await store.deliver([Delivery(ACCOUNT, "INBOX", (), time.time())], data, crlf=crlf)
    await store.flush_files()
    monkeypatch.setattr(maildir, "to_wire", real)
    assert checks == (0 if crlf else 1)  # to_disk's check, once (not again when staging)
    acct = await store.account(ACCOUNT)
    assert await acct.read_message(res.mailbox_id, res.uid) == data
    [path] = (store.mail_root / "example.test" / "crlf" / "Maildir" / "cur").iterdir()
    assert path.read_bytes() == data.replace(b"\r\n", b"\n")  # the LF form, as before
    assert ",W=" in path.name


async def test_a_file_source_is_converted_once(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A spooled file read from the page cache: its LF form is made once (it used to be made
    twice: once to know whether it has one, once more to stage it)."""
    src = tmp_path / "spooled"
    data = _message(100 * 1024)
    src.write_bytes(data)
    calls = 0
    real = maildir.to_disk

    def counting(d: bytes, crlf: bool = False) -> bytes | None:
        nonlocal calls
        calls += 1
        return real(d, crlf)

    monkeypatch.setattr(maildir, "to_disk", counting)
    [res] = await store.deliver([Delivery(ACCOUNT, "INBOX", (), time.time())], src)
    monkeypatch.setattr(maildir, "to_disk", real)
    assert calls == 1
    acct = await store.account(ACCOUNT)
    assert await acct.read_message(res.mailbox_id, res.uid) == data

"""Mailbox and account names: validation and their on-disk encoding round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carteiro.store import names
from carteiro.store.api import InvalidName

level = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="/*%\x7f"),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", ".."))


@given(st.lists(level, min_size=1, max_size=4))
def test_folder_dir_round_trips(levels: list[str]) -> None:
    name = names.normalize_mailbox_name("/".join(levels))
    folder = names.folder_dir(name)
    assert "/" not in folder and "\x00" not in folder
    if name == names.INBOX:
        assert folder == ""
    elif folder.startswith(names.LONG_DIR_PREFIX):
        assert len(folder) <= names.MAX_DIR_OCTETS  # named by its metadata file
    else:
        assert folder.startswith(".") and folder.count(".") == len(levels)
        assert names.name_from_folder_dir(folder) == name


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("Sent", ".Sent"),
        ("Work/a.b", ".Work.a&AC4-b"),
        ("R&D", ".R&-D"),
        ("Entwürfe", ".Entw&APw-rfe"),
    ],
)
def test_known_encodings(name: str, folder: str) -> None:
    assert names.folder_dir(name) == folder


def test_inbox_is_case_insensitive() -> None:
    assert names.normalize_mailbox_name("iNbOx") == "INBOX"
    assert names.normalize_mailbox_name("inbox/Sub") == "INBOX/Sub"
    assert names.normalize_mailbox_name("Inboxes") == "Inboxes"


def test_long_names_get_hashed_folders() -> None:
    name = "/".join(["x" * 100] * 5)
    folder = names.folder_dir(name)
    assert folder.startswith(names.LONG_DIR_PREFIX) and len(folder) < 255
    assert names.name_from_folder_dir(folder) is None  # its name comes from the metadata file


@pytest.mark.parametrize("bad", ["a\u2028b", "\ud800", "x/./y"])
def test_more_refusals(bad: str) -> None:
    with pytest.raises(InvalidName):
        names.normalize_mailbox_name(bad)


@pytest.mark.parametrize(
    "account",
    ["alice@example.org", "a/b@example.org", "%2F@x.org", ".dot@x.org", "bare", "Zoë@exämple.org"],
)
def test_account_paths_round_trip(account: str) -> None:
    domain_dir, local_dir = names.account_path_parts(account)
    assert "/" not in domain_dir + local_dir
    assert not domain_dir.startswith(".") and not local_dir.startswith(".")
    assert names.account_from_path_parts(domain_dir, local_dir) == account

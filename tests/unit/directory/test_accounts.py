from pathlib import Path

import pytest

from carteiro.directory.accounts import Directory, DirectoryError


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Directory:
    d = Directory(
        tmp_path_factory.mktemp("dir") / "directory.sqlite", static_domains=["example.test"]
    )
    d.add_domain("other.test")
    d.add_user("Alice@Example.test", "alice-pw")
    d.add_user("bob@example.test", "bob-pw")
    d.add_user("carol@other.test", "carol-pw")
    d.add_alias("postmaster@example.test", "alice@example.test")
    d.add_alias("team@example.test", "alice@example.test")
    d.add_alias("team@example.test", "bob@example.test")
    d.add_alias("ext@example.test", "someone@remote.test")
    d.add_alias("@other.test", "carol@other.test")
    return d


def test_accounts_case_insensitive(directory: Directory) -> None:
    assert directory.user_exists("ALICE@example.TEST")
    assert directory.verify_sync("aLiCe@EXAMPLE.test", "alice-pw") == "alice@example.test"


def test_only_argon2id_hashes_stored(directory: Directory) -> None:
    rows = directory._db().execute("SELECT hash FROM accounts").fetchall()
    assert rows and all(r[0].startswith("$argon2id$") for r in rows)
    assert not any("alice-pw" in r[0] for r in rows)


def test_wrong_password_and_unknown_user(directory: Directory) -> None:
    assert directory.verify_sync("alice@example.test", "nope") is None
    assert directory.verify_sync("nobody@example.test", "alice-pw") is None
    assert directory.verify_sync("not an address", "x") is None


async def test_verify_async(directory: Directory) -> None:
    assert await directory.verify("bob@example.test", "bob-pw") == "bob@example.test"


def test_cache_dropped_on_password_change(tmp_path: Path) -> None:
    d = Directory(tmp_path / "d.sqlite", static_domains=["example.test"])
    d.add_user("u@example.test", "old")
    assert d.verify_sync("u@example.test", "old")
    assert "u@example.test" in d._cache
    d.set_password("u@example.test", "new")
    assert d.verify_sync("u@example.test", "old") is None
    assert d.verify_sync("u@example.test", "new") == "u@example.test"


def test_password_change_seen_by_other_instance(tmp_path: Path) -> None:
    """A running server (one Directory) sees `carteiro user passwd` (another) at once."""
    server = Directory(tmp_path / "d.sqlite", static_domains=["example.test"])
    cli = Directory(tmp_path / "d.sqlite", static_domains=["example.test"])
    cli.add_user("u@example.test", "old")
    assert server.verify_sync("u@example.test", "old")
    cli.set_password("u@example.test", "new")
    assert server.verify_sync("u@example.test", "old") is None
    cli.del_user("u@example.test")
    assert server.verify_sync("u@example.test", "new") is None


def test_cache_expires(tmp_path: Path) -> None:
    t = [0.0]
    d = Directory(tmp_path / "d.sqlite", static_domains=["example.test"], clock=lambda: t[0])
    d.add_user("u@example.test", "pw")
    d.verify_sync("u@example.test", "pw")
    d.cache_ttl = 10
    t[0] = 1000
    assert d.verify_sync("u@example.test", "pw") == "u@example.test"


def test_add_user_refuses_foreign_domain_and_duplicates(directory: Directory) -> None:
    with pytest.raises(DirectoryError, match="not one of our domains"):
        directory.add_user("x@remote.test", "pw")
    with pytest.raises(DirectoryError, match="exists"):
        directory.add_user("ALICE@example.test", "pw")


def test_resolve_account_alias_plus_catchall(directory: Directory) -> None:
    r = directory.resolve("Alice@example.test")
    assert r is not None and r.local_accounts == (("alice@example.test", ""),)
    r = directory.resolve("alice+lists@example.test")
    assert r is not None and r.local_accounts == (("alice@example.test", "lists"),)
    r = directory.resolve("postmaster@example.test")
    assert r is not None and r.local_accounts == (("alice@example.test", ""),)
    r = directory.resolve("team@example.test")
    assert r is not None and {a for a, _ in r.local_accounts} == {
        "alice@example.test",
        "bob@example.test",
    }
    r = directory.resolve("anything@other.test")
    assert r is not None and r.local_accounts == (("carol@other.test", ""),)
    r = directory.resolve("ext@example.test")
    assert r is not None and r.remote == ("someone@remote.test",) and not r.local_accounts
    assert directory.resolve("nobody@example.test") is None
    r = directory.resolve("x@remote.test")
    assert r is not None and r.remote == ("x@remote.test",)


def test_alias_loop_terminates(tmp_path: Path) -> None:
    d = Directory(tmp_path / "d.sqlite", static_domains=["example.test"])
    d.add_user("real@example.test", "pw")
    d.add_alias("a@example.test", "b@example.test")
    d.add_alias("b@example.test", "a@example.test")
    d.add_alias("b@example.test", "real@example.test")
    r = d.resolve("a@example.test")
    assert r is not None and r.local_accounts == (("real@example.test", ""),)


def test_aliases_of(directory: Directory) -> None:
    assert set(directory.aliases_of("alice@example.test")) == {
        "postmaster@example.test",
        "team@example.test",
    }


def test_static_domain_cannot_be_deleted(directory: Directory) -> None:
    with pytest.raises(DirectoryError, match=r"carteiro\.toml"):
        directory.del_domain("example.test")
    with pytest.raises(DirectoryError, match="account"):
        directory.del_domain("other.test")
    assert directory.domains() == ["example.test", "other.test"]

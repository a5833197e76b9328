"""Held domains (ETRN/ATRN): never local, one ATRN account each, listed and removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from carteiro.directory.accounts import Directory, DirectoryError


def test_held_domains(tmp_path: Path) -> None:
    d = Directory(tmp_path / "dir.sqlite", static_domains=["example.test"])
    try:
        d.add_user("alice@example.test", "pw")
        d.add_held_domain("Branch.Test", "alice@example.test")
        d.add_held_domain("other.test")
        assert d.held_domains() == {"branch.test": "alice@example.test", "other.test": ""}
        assert d.is_held_domain("BRANCH.test") and not d.is_local_domain("branch.test")
        with pytest.raises(DirectoryError):
            d.add_held_domain("example.test")  # local
        with pytest.raises(DirectoryError):
            d.add_held_domain("x.test", "nobody@example.test")  # no such account
        with pytest.raises(DirectoryError):
            d.add_domain("branch.test")  # held: not local at the same time
        assert d.del_held_domain("other.test") and not d.del_held_domain("other.test")
    finally:
        d.close()

"""Backends under test: every conformance test runs against each of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from carteiro.store.api import MailStore
from carteiro.store.memory import MemoryMailStore

BACKENDS = ["memory", "sqlite_maildir"]


async def make_store(kind: str, data_dir: Path) -> MailStore:
    if kind == "memory":
        return MemoryMailStore()
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    return SqliteMaildirStore(data_dir)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MailStore]:
    s = await make_store(request.param, tmp_path / "data")
    try:
        yield s
    finally:
        await s.close()

"""Shared fixtures. End-to-end tests start real servers through carteiro.testing.server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local zone (of this process and of servers it starts) is UTC+05:30, no DST."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()

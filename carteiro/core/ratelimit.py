"""Counting events per key over a sliding minute (messages or recipients per client address or
per account), in O(1) memory per key and with a bound on the keys kept.

The sliding window is estimated from the current and the previous fixed window (the previous
one's count weighted by how much of it still overlaps), as nginx and Cloudflare limit rates: exact
enough for abuse limits, and no per-event list a flood could grow. Time comes from `clock`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_KEYS = 100_000


class RateLimiter:
    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._counts: dict[str, tuple[int, int, int]] = {}  # key -> (window no., current, previous)

    def _state(self, key: str, now: float) -> tuple[int, int, int]:
        n = int(now // self.window)
        w, cur, prev = self._counts.get(key, (n, 0, 0))
        if w == n:
            return n, cur, prev
        if w == n - 1:
            return n, 0, cur
        return n, 0, 0

    def rate(self, key: str) -> float:
        """Events in the last window (estimated)."""
        now = self.clock()
        n, cur, prev = self._state(key, now)
        elapsed = (now - n * self.window) / self.window
        return cur + prev * (1.0 - elapsed)

    def allow(self, key: str, count: int = 1) -> bool:
        """Count `count` events for `key` unless that would pass the limit (then count none)."""
        if self.limit <= 0:
            return True
        now = self.clock()
        n, cur, prev = self._state(key, now)
        elapsed = (now - n * self.window) / self.window
        if cur + count + prev * (1.0 - elapsed) > self.limit:
            self._counts[key] = (n, cur, prev)
            return False
        if key not in self._counts and len(self._counts) >= self.max_keys:
            self._prune(n)
        self._counts[key] = (n, cur + count, prev)
        return True

    def _prune(self, n: int) -> None:
        for key in [k for k, (w, _c, _p) in self._counts.items() if w < n - 1]:
            del self._counts[key]
        if len(self._counts) >= self.max_keys:
            # all recent: forget the oldest half (insertion order) rather than grow
            for key in list(self._counts)[: self.max_keys // 2]:
                del self._counts[key]

"""Failed-login throttling per client IP, shared by SMTP AUTH, IMAP LOGIN and POP3 PASS.

Each failure costs the client a delay; after `max_failures` within `window` seconds the IP is refused
(temporarily) for `block_time`. Memory is bounded: old entries are pruned. Time is injectable.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class AuthThrottle:
    MAX_TRACKED = 100_000

    def __init__(
        self,
        failure_delay: float = 1.0,
        max_failures: int = 10,
        window: float = 600.0,
        block_time: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_delay = failure_delay
        self.max_failures = max_failures
        self.window = window
        self.block_time = block_time
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    def blocked(self, ip: str) -> bool:
        """True while `ip` must be refused (temporary failure: 454 4.7.0 / NO [UNAVAILABLE] / -ERR [SYS/TEMP])."""
        until = self._blocked.get(ip)
        if until is None:
            return False
        if self.clock() >= until:
            del self._blocked[ip]
            self._failures.pop(ip, None)
            return False
        return True

    def failure(self, ip: str) -> float:
        """Record a failed attempt; returns how long the session should wait before answering."""
        now = self.clock()
        q = self._failures.get(ip)
        if q is None:
            if len(self._failures) >= self.MAX_TRACKED:
                self._prune(now)
            q = self._failures[ip] = deque()
        q.append(now)
        while q and q[0] < now - self.window:
            q.popleft()
        if len(q) >= self.max_failures:
            self._blocked[ip] = now + self.block_time
        return self.failure_delay * min(len(q), 5)

    def success(self, ip: str) -> None:
        self._failures.pop(ip, None)

    def _prune(self, now: float) -> None:
        for ip in [ip for ip, q in self._failures.items() if not q or q[-1] < now - self.window]:
            del self._failures[ip]
        if len(self._failures) >= self.MAX_TRACKED:
            self._failures.clear()

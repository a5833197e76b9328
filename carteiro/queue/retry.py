"""Retry timing for deferred recipients: the backoff schedule, expiry and the delay warning. Pure.

A schedule is a list of delays in seconds: after the n-th failed attempt the next one waits
schedule[n-1] (the last entry repeats), with +-10% jitter so a queue that failed together does not
retry in lock-step. Nothing here reads the clock: callers pass `now`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SCHEDULE: tuple[float, ...] = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
JITTER = 0.1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    max_age: float = 5 * 86400.0  # give up (bounce) this long after arrival
    delay_warning: float = 4 * 3600.0  # RFC 3461 NOTIFY=DELAY notice after this long; 0 = never

    def __post_init__(self) -> None:
        if not self.schedule or any(d <= 0 for d in self.schedule):
            raise ValueError("retry schedule needs at least one positive delay")

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (1-based)."""
        base = self.schedule[min(max(attempts, 1), len(self.schedule)) - 1]
        if rng is None:
            return base
        return base * (1.0 + rng.uniform(-JITTER, JITTER))

    def expires_at(self, arrival: float) -> float:
        return arrival + self.max_age

    def expired(self, arrival: float, now: float) -> bool:
        return now >= self.expires_at(arrival)

    def next_attempt(
        self, arrival: float, attempts: int, now: float, rng: random.Random | None = None
    ) -> float | None:
        """When to try again after a temporary failure, or None when it is time to give up.

        The last try is made at the expiry time itself, so a recipient is never bounced for
        age before the full `max_age` has been tried.
        """
        if self.expired(arrival, now):
            return None
        return min(now + self.delay(attempts, rng), self.expires_at(arrival))

    def warn_at(self, arrival: float) -> float | None:
        """When the delay notice is due, or None when warnings are off."""
        if self.delay_warning <= 0 or self.delay_warning >= self.max_age:
            return None
        return arrival + self.delay_warning


def policy_from(schedule: Sequence[float], max_age: float, delay_warning: float) -> RetryPolicy:
    return RetryPolicy(tuple(float(d) for d in schedule), float(max_age), float(delay_warning))

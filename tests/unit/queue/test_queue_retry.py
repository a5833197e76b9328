"""Backoff schedule, expiry and the delay warning."""

from __future__ import annotations

import random

import pytest

from carteiro.queue.retry import DEFAULT_SCHEDULE, RetryPolicy, policy_from


def test_default_schedule_grows_from_minutes_to_hours_and_gives_up_after_5_days() -> None:
    p = RetryPolicy()
    assert p.schedule == DEFAULT_SCHEDULE
    delays = [p.delay(n) for n in range(1, 10)]
    assert delays[0] == 60.0
    assert delays == sorted(delays)
    assert delays[-1] == 4 * 3600.0  # the last entry repeats
    assert p.max_age == 5 * 86400.0
    assert p.delay_warning == 4 * 3600.0


def test_jitter_stays_within_ten_percent() -> None:
    p = RetryPolicy(schedule=(100.0, 1000.0))
    rng = random.Random(1)
    values = [p.delay(2, rng) for _ in range(500)]
    assert min(values) >= 900.0 and max(values) <= 1100.0
    assert len(set(values)) > 100


def test_next_attempt_never_passes_expiry_and_then_gives_up() -> None:
    p = RetryPolicy(schedule=(600.0,), max_age=1000.0)
    assert p.next_attempt(arrival=0.0, attempts=1, now=0.0) == 600.0
    assert p.next_attempt(arrival=0.0, attempts=2, now=600.0) == 1000.0  # the last try at expiry
    assert p.next_attempt(arrival=0.0, attempts=3, now=1000.0) is None


def test_delay_warning_time() -> None:
    assert RetryPolicy(delay_warning=3600.0).warn_at(10.0) == 3610.0
    assert RetryPolicy(delay_warning=0).warn_at(10.0) is None
    assert RetryPolicy(max_age=100.0, delay_warning=200.0).warn_at(0.0) is None


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(schedule=())
    with pytest.raises(ValueError):
        policy_from([60, 0], 100, 10)
    assert policy_from([1, 2], 3, 4) == RetryPolicy((1.0, 2.0), 3.0, 4.0)

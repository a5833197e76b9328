import asyncio

import pytest

from carteiro.directory.throttle import (
    AuthThrottle,
    Refused,
    Reservation,
    account_key,
    address_key,
)

A, B = "alice@example.test", "bob@example.test"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(clock: Clock, **kw: object) -> AuthThrottle:
    kw = {"failure_delay": 0.5, "max_failures": 3, "window": 60, "block_time": 100} | kw
    return AuthThrottle(clock=clock, **kw)  # type: ignore[arg-type]


def slot(th: AuthThrottle, ip: str, user: str) -> Reservation:
    got = th.try_reserve(address_key(ip), account_key(user))
    assert isinstance(got, Reservation), got
    return got


def fail(th: AuthThrottle, ip: str, user: str) -> float:
    r = slot(th, ip, user)
    try:
        return r.failure()
    finally:
        r.release()


def succeed(th: AuthThrottle, ip: str, user: str) -> None:
    r = slot(th, ip, user)
    r.success(account_key(user))
    r.release()


def outcome(th: AuthThrottle, ip: str, user: str) -> object:
    """What a guess meets: "verified" (and then it fails), a refusal, or "wait"."""
    got = th.try_reserve(address_key(ip), account_key(user))
    if isinstance(got, Reservation):
        got.failure()
        got.release()
        return "verified"
    return got if isinstance(got, Refused) else "wait"


def test_blocks_after_max_failures_then_expires() -> None:
    clock = Clock()
    th = make(clock)
    assert fail(th, "1.2.3.4", A) == 0.5
    assert fail(th, "1.2.3.4", A) == 1.0
    assert not th.blocked("1.2.3.4")
    fail(th, "1.2.3.4", A)
    assert th.blocked("1.2.3.4")
    assert outcome(th, "1.2.3.4", A) is Refused.BLOCKED
    assert not th.blocked("5.6.7.8")
    clock.t += 101
    assert not th.blocked("1.2.3.4")
    assert fail(th, "1.2.3.4", A) == 0.5  # the block served its time: a clean slate


def test_old_failures_fall_out_of_window() -> None:
    clock = Clock()
    th = make(clock)
    fail(th, "ip", A)
    fail(th, "ip", A)
    clock.t += 61
    fail(th, "ip", A)
    assert not th.blocked("ip")


def test_an_attempt_in_flight_counts_as_a_failure_until_it_succeeds() -> None:
    clock = Clock()
    th = make(clock, max_in_flight_per_ip=10, max_in_flight_per_account=10)
    held = [slot(th, "ip", A) for _ in range(3)]
    # Three checks in progress could be three failures: a fourth must wait for one of them.
    assert outcome(th, "ip", A) == "wait"
    held[0].success(A)
    held[0].release()
    assert outcome(th, "ip", A) == "verified"  # its place was given back
    for r in held[1:]:
        r.failure()
        r.release()
    assert outcome(th, "ip", A) is Refused.BLOCKED


def test_parallel_guesses_never_exceed_max_failures() -> None:
    clock = Clock()
    th = make(clock, max_failures=10, max_in_flight_per_ip=4, max_in_flight_per_account=100)
    verified = 0
    for _ in range(40):
        held = []
        while isinstance(got := th.try_reserve("ip", A), Reservation):
            held.append(got)
        verified += len(held)
        assert len(held) <= 4
        for r in held:
            r.failure()
            r.release()
        if got is Refused.BLOCKED:
            break
    assert verified == 10
    assert th.blocked("ip")


def test_release_without_outcome_counts_as_failure() -> None:
    clock = Clock()
    th = make(clock)
    for _ in range(3):
        slot(th, "ip", A).release()  # e.g. the client hung up during the check
    assert th.blocked("ip")


def test_success_clears_only_its_own_pair() -> None:
    """Logging into one's own account does not wipe failures against someone else's."""
    clock = Clock()
    th = make(clock, max_failures=4)
    for _ in range(3):
        fail(th, "ip", A)
    succeed(th, "ip", B)
    fail(th, "ip", A)
    assert th.blocked("ip")


def test_success_clears_the_pair_and_the_account() -> None:
    clock = Clock()
    th = make(
        clock, max_failures=4, account_free_failures=0, account_delay=1.0, account_max_delay=1e3
    )
    fail(th, "ip", A)
    fail(th, "ip", A)
    fail(th, "other", A)
    succeed(th, "ip", A)
    fail(th, "ip", A)
    fail(th, "ip", A)
    fail(th, "ip", A)
    assert not th.blocked("ip")  # the two before the success were forgiven
    fail(th, "other", A)
    fail(th, "other", A)
    fail(th, "other", A)
    assert th.blocked("other")  # another address's failures are its own
    r = slot(th, "third", A)
    # the account's count restarted at the success: 3 failures from "ip" + 3 from "other" since
    assert r.delay == 1.0 * 2**6
    r.release()


def test_failures_against_one_account_from_many_addresses_slow_it_down() -> None:
    """Per account: delays that double up to a ceiling, never a hard lockout."""
    clock = Clock()
    th = make(clock, account_free_failures=2, account_delay=1.0, account_max_delay=15.0)
    delays = []
    for n in range(8):
        r = slot(th, f"10.0.0.{n}", A)  # each address fails once: never blocked
        delays.append(r.delay)
        r.failure()
        r.release()
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    # Another account, from the same addresses, is not slowed down.
    assert slot(th, "10.0.0.1", B).delay == 0.0
    clock.t += 61
    assert slot(th, "10.0.0.9", A).delay == 0.0  # out of the window


def test_concurrent_checks_are_capped_per_account_across_addresses() -> None:
    clock = Clock()
    th = make(clock, max_in_flight_per_account=2)
    r1, r2 = slot(th, "10.0.0.1", A), slot(th, "10.0.0.2", A)
    assert outcome(th, "10.0.0.3", A) == "wait"
    assert outcome(th, "10.0.0.3", B) == "verified"
    r1.failure()
    r1.release()
    assert outcome(th, "10.0.0.3", A) == "verified"
    r2.release()


def test_concurrent_checks_are_capped_per_address() -> None:
    clock = Clock()
    th = make(clock, max_failures=10, max_in_flight_per_ip=2)
    held = [slot(th, "ip", A), slot(th, "ip", B)]
    assert outcome(th, "ip", "carol@example.test") == "wait"
    assert outcome(th, "ip2", "carol@example.test") == "verified"
    for r in held:
        r.release()


def test_an_address_that_logged_in_before_skips_the_account_penalty() -> None:
    """A user's usual device is not slowed down (nor held back) by an attack on the account."""
    clock = Clock()
    th = make(clock, account_free_failures=1, account_delay=2.0, max_in_flight_per_account=1)
    succeed(th, "home", A)
    attacker = slot(th, "10.0.0.1", A)  # holds the account's only slot
    assert attacker.delay == 0.0
    attacker.failure()
    r = slot(th, "home", A)  # neither held back by the cap nor delayed (others wait 2 s now)
    assert r.delay == 0.0
    r.failure()  # even a typo at home
    r.release()
    assert outcome(th, "10.0.0.2", A) == "wait"
    attacker.release()
    assert slot(th, "10.0.0.2", A).delay == 4.0
    clock.t += th.known_ttl + 1
    assert outcome(th, "home", A) == "wait"  # trust expired: an address like any other


def test_unknown_and_known_names_are_counted_alike() -> None:
    """No enumeration: the throttle keys on the name as typed, whether or not it exists."""
    clock = Clock()
    th = make(clock, account_free_failures=1, account_delay=1.0)
    for who in (A, "nobody@example.test"):
        fail(th, "1.1.1.1", who)
        fail(th, "2.2.2.2", who)
    assert slot(th, "3.3.3.3", A).delay == slot(th, "4.4.4.4", "Nobody@Example.TEST").delay == 2.0
    assert account_key("Alice@EXAMPLE.test") == A


def test_failures_without_a_password_check_count_for_the_address_only() -> None:
    clock = Clock()
    th = make(clock)
    assert th.record_failure("ip") == 0.5
    assert not th._accounts
    th.record_failure("ip")
    th.record_failure("ip")
    assert th.blocked("ip")


def test_ipv6_counts_per_64() -> None:
    clock = Clock()
    th = make(clock)
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8::ffff:3"):
        fail(th, host, A)
    assert th.blocked("2001:db8::9")
    assert not th.blocked("2001:db8:0:1::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_memory_bounded_in_both_dimensions() -> None:
    clock = Clock()
    th = make(clock, max_failures=1000)
    th.MAX_TRACKED = 100
    for i in range(1000):
        fail(th, f"10.0.{i // 256}.{i % 256}", f"user{i}@example.test")
        succeed(th, f"10.1.{i // 256}.{i % 256}", f"user{i}@example.test")
    assert len(th._addresses) <= 100
    assert len(th._accounts) <= 100
    assert len(th._known) <= 100


def test_entries_in_use_survive_pruning() -> None:
    clock = Clock()
    th = make(clock, max_failures=1000)
    th.MAX_TRACKED = 10
    held = slot(th, "held", A)
    for i in range(50):
        fail(th, f"10.0.0.{i}", f"u{i}@example.test")
    assert "held" in th._addresses and A in th._accounts
    held.failure()
    held.release()
    assert th._addresses["held"].in_flight == 0


async def test_reserve_waits_for_a_slot_then_gives_up() -> None:
    th = AuthThrottle(failure_delay=0.0, max_in_flight_per_ip=1, slot_wait=0.2)
    first = await th.reserve("ip", A)
    assert isinstance(first, Reservation)
    assert await th.reserve("ip", A) is Refused.BUSY  # nobody gave the slot back in time

    async def finish_soon() -> None:
        await asyncio.sleep(0.05)
        first.failure()
        first.release()

    task = asyncio.create_task(finish_soon())
    second = await th.reserve("ip", A)
    await task
    assert isinstance(second, Reservation)
    second.release()


async def test_reserve_waits_out_the_account_delay_holding_the_slot() -> None:
    slept: list[float] = []
    gate = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await gate.wait()

    th = AuthThrottle(
        failure_delay=0.0, account_free_failures=1, account_delay=3.0, sleep=sleep, slot_wait=5
    )
    got = await th.reserve("ip", A)
    assert slept == []  # no failure against the account yet: no delay
    assert isinstance(got, Reservation)
    got.failure()
    got.release()
    task = asyncio.create_task(th.reserve("ip2", A))
    while not slept:
        await asyncio.sleep(0)
    assert slept == [3.0]
    assert th._accounts[A].in_flight == 1  # held while waiting
    task.cancel()  # the client went away during the delay: still a failure, slot given back
    with pytest.raises(asyncio.CancelledError):
        await task
    assert th._accounts[A].in_flight == 0
    assert len(th._accounts[A].failures) == 2

"""Login throttling shared by SMTP AUTH, IMAP LOGIN/AUTHENTICATE and POP3 PASS/AUTH.

An attempt reserves a slot before its password is checked and counts as a failure until it
succeeds, so parallel guesses cannot outrun the count. Counters are kept per client address and
per account, apart. Memory is bounded; time is injectable. It never sees a password.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from carteiro.core.address import AddressError, canonical


class Refused(enum.Enum):
    """Why an attempt was not let through to the password check. Both are temporary failures:
    SMTP 454 4.7.0 (RFC 4954 6), IMAP NO [UNAVAILABLE] (RFC 5530 3), POP3 -ERR [SYS/TEMP]
    (RFC 3206 4). The value is the reason given to the client."""

    BLOCKED = "Too many failed logins from your address; try again later"
    BUSY = "Too many logins in progress; try again later"

    @property
    def text(self) -> str:
        return self.value


def address_key(ip: str) -> str:
    """The unit counted per client: an IPv4 address, or an IPv6 /64 (one subscriber usually gets
    a whole /64, so counting single IPv6 addresses would give an attacker 2**64 fresh counters)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def account_key(user: str) -> str:
    """The account as typed, canonicalised the way the directory looks it up. Unknown names get
    counters exactly like real ones: the throttle must not tell them apart (no enumeration)."""
    try:
        return canonical(user)
    except AddressError:
        return user.strip().lower()[:320]


@dataclass(eq=False)
class _Gate:
    """Checks in progress for one key, and the attempts waiting for one of them to finish."""

    in_flight: int = 0  # slots held (from reserve to release)
    pending: int = 0  # reservations not yet resolved: each counts as a failure meanwhile
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def busy(self) -> bool:
        return bool(self.in_flight or self.pending or self.waiters)

    def wake(self) -> None:
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)
        self.waiters.clear()


@dataclass(eq=False)
class _Address(_Gate):
    # failure times per account key: a success clears only its own account's entry
    failures: dict[str, deque[float]] = field(default_factory=dict)
    blocked_until: float = 0.0


@dataclass(eq=False)
class _Account(_Gate):
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=1024))


_G = TypeVar("_G", _Address, _Account)


class AuthThrottle:
    """Throttles password guessing along two dimensions, kept apart.

    Per client address (an IPv4 address or an IPv6 /64): at most `max_in_flight_per_ip` checks at
    a time, and after `max_failures` failures within `window` seconds the address is refused for
    `block_time`, even with the right password. This is Postfix's anvil
    (smtpd_client_auth_rate_limit) and Dovecot's per-IP auth penalty made strict: an address is
    cheap for an attacker to give up but not to multiply, and a user who mistypes ten times is
    told to come back later, not locked out for good.

    Per account (as typed; unknown names are counted like real ones): at most
    `max_in_flight_per_account` checks at a time, and after `account_free_failures` failures
    within `window`, each further check waits `account_delay` seconds, doubling per failure, up
    to `account_max_delay` (15 s, Dovecot's AUTH_PENALTY_MAX_SECS), before it runs. There is no
    hard lockout per account: neither Dovecot nor Postfix has one, because whoever knows a user's
    address could then lock them out at will. Delays and the concurrency cap bound the guessing
    rate against one account from any number of addresses (2 slots, 15 s each: under 500
    guesses an hour, against millions for a bare Argon2id check), while the user still gets in.
    An address that logged into the account within `known_ttl` skips the account's delay and
    cap (an attacker cannot have done that without the password), so a user's usual devices are
    not slowed down by an attack on their account; the address limits still hold for it.

    Every attempt reserves a slot first (`reserve`), and counts as a failure until it succeeds:
    no more than `max_failures` guesses from an address can ever reach the password check, however
    many run in parallel. An attempt that cannot get a slot waits up to `slot_wait` seconds, then
    is refused (`Refused.BUSY`). A success clears the failures of its own (address, account)
    pair and of its account, never failures from that address against other accounts.
    """

    MAX_TRACKED = 100_000  # per dimension; the least recently used idle entries go first

    def __init__(
        self,
        failure_delay: float = 1.0,
        max_failures: int = 10,
        window: float = 600.0,
        block_time: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_in_flight_per_ip: int = 4,
        max_in_flight_per_account: int = 2,
        account_free_failures: int = 5,
        account_delay: float = 1.0,
        account_max_delay: float = 15.0,
        slot_wait: float = 20.0,
        known_ttl: float = 7 * 86400.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.failure_delay = failure_delay
        self.max_failures = max_failures
        self.window = window
        self.block_time = block_time
        self.clock = clock
        self.max_in_flight_per_ip = max_in_flight_per_ip
        self.max_in_flight_per_account = max_in_flight_per_account
        self.account_free_failures = account_free_failures
        self.account_delay = account_delay
        self.account_max_delay = account_max_delay
        self.slot_wait = slot_wait
        self.known_ttl = known_ttl
        self.sleep = sleep
        self._addresses: dict[str, _Address] = {}
        self._accounts: dict[str, _Account] = {}
        self._known: dict[tuple[str, str], float] = {}  # (address, account) -> trusted until

    # ---- the API the sessions use --------------------------------------------------------------

    def blocked(self, ip: str) -> bool:
        """True while `ip` must be refused whatever it sends (lets SMTP refuse AUTH up front)."""
        a = self._addresses.get(address_key(ip))
        return a is not None and self._blocked(a, self.clock())

    async def reserve(self, ip: str, user: str) -> Reservation | Refused:
        """A slot for one password check of `user` from `ip`, after any delay the account is
        due; or why not. The caller must `release()` the reservation in a `finally`."""
        ip_key, acct_key = address_key(ip), account_key(user)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.slot_wait
        while True:
            got = self.try_reserve(ip_key, acct_key)
            if not isinstance(got, _Gate):
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Refused.BUSY
            fut: asyncio.Future[None] = loop.create_future()
            got.waiters.append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                return Refused.BUSY
            finally:
                if fut in got.waiters:
                    got.waiters.remove(fut)
        if isinstance(got, Reservation) and got.delay > 0:
            try:
                await self.sleep(got.delay)
            except BaseException:
                got.release()  # cancelled while waiting: still counted as a failure
                raise
        return got

    def try_reserve(self, ip_key: str, acct_key: str) -> Reservation | Refused | _Gate:
        """`reserve` without waiting: the reservation, a refusal, or the gate to wait on."""
        now = self.clock()
        a = self._entry(self._addresses, ip_key, _Address, now)
        if self._blocked(a, now):
            return Refused.BLOCKED
        failures = self._address_failures(a, now)
        if failures >= self.max_failures:
            a.blocked_until = now + self.block_time
            return Refused.BLOCKED
        if a.in_flight >= self.max_in_flight_per_ip or failures + a.pending >= self.max_failures:
            return a  # one in progress may yet succeed and give its place back
        known = self._known.get((ip_key, acct_key), 0.0) > now
        acc = self._entry(self._accounts, acct_key, _Account, now)
        if not known and acc.in_flight >= self.max_in_flight_per_account:
            return acc
        delay = (
            0.0 if known else self._account_delay(self._account_failures(acc, now) + acc.pending)
        )
        a.in_flight += 1
        a.pending += 1
        acc.in_flight += 1
        acc.pending += 1
        return Reservation(self, ip_key, acct_key, a, acc, delay)

    def record_failure(self, ip: str) -> float:
        """A failure decided without a password check (a malformed exchange, acting as another
        user): counted against the address only, since it guessed no account's password.
        Returns how long to wait before answering."""
        now = self.clock()
        a = self._entry(self._addresses, address_key(ip), _Address, now)
        if self._blocked(a, now):
            return self._answer_delay(self.max_failures)
        return self._fail(a, "", None, now)

    # ---- outcomes (called through Reservation) -------------------------------------------------

    def _resolve(self, r: Reservation, account: str | None) -> float:
        now = self.clock()
        r.address.pending -= 1
        r.account.pending -= 1
        delay = 0.0
        if account is None:
            delay = self._fail(r.address, r.account_key, r.account, now)
        else:
            keys = {r.account_key, account_key(account)}
            for key in keys:
                r.address.failures.pop(key, None)
                acc = self._accounts.get(key)
                if acc is not None:
                    acc.failures.clear()
                if len(self._known) >= self.MAX_TRACKED:
                    self._prune_known(now)
                self._known[(r.address_key, key)] = now + self.known_ttl
        r.address.wake()
        r.account.wake()
        return delay

    def _release(self, r: Reservation) -> None:
        r.address.in_flight -= 1
        r.account.in_flight -= 1
        r.address.wake()
        r.account.wake()

    def _fail(self, a: _Address, acct_key: str, acc: _Account | None, now: float) -> float:
        a.failures.setdefault(acct_key, deque()).append(now)
        if acc is not None:
            acc.failures.append(now)
        total = self._address_failures(a, now)
        if total >= self.max_failures:
            a.blocked_until = now + self.block_time
        return self._answer_delay(total)

    # ---- counting ------------------------------------------------------------------------------

    def _answer_delay(self, failures: int) -> float:
        return self.failure_delay * min(failures, 5)

    def _account_delay(self, failures: int) -> float:
        excess = failures - self.account_free_failures
        if excess < 0:
            return 0.0
        return min(self.account_delay * 2.0 ** min(excess, 32), self.account_max_delay)

    def _blocked(self, a: _Address, now: float) -> bool:
        if not a.blocked_until:
            return False
        if now < a.blocked_until:
            return True
        a.blocked_until = 0.0
        a.failures.clear()  # the block served its time: a clean slate
        return False

    def _address_failures(self, a: _Address, now: float) -> int:
        cutoff = now - self.window
        total = 0
        for key in list(a.failures):
            q = a.failures[key]
            while q and q[0] < cutoff:
                q.popleft()
            if q:
                total += len(q)
            else:
                del a.failures[key]
        return total

    def _account_failures(self, acc: _Account, now: float) -> int:
        cutoff = now - self.window
        while acc.failures and acc.failures[0] < cutoff:
            acc.failures.popleft()
        return len(acc.failures)

    # ---- bounded memory ------------------------------------------------------------------------

    def _entry(self, table: dict[str, _G], key: str, kind: type[_G], now: float) -> _G:
        entry = table.pop(key, None)  # re-inserted last: the dict's order is least recent first
        if entry is None:
            if len(table) >= self.MAX_TRACKED:
                self._prune(table, now)
            entry = kind()
        table[key] = entry
        return entry

    def _idle(self, entry: _Address | _Account, now: float) -> bool:
        if entry.busy():
            return False  # a session holds it (or waits on it): never drop it from under them
        if isinstance(entry, _Address):
            return not self._blocked(entry, now) and self._address_failures(entry, now) == 0
        return self._account_failures(entry, now) == 0

    def _prune(self, table: dict[str, _G], now: float) -> None:
        for key in [k for k, e in table.items() if self._idle(e, now)]:
            del table[key]
        # Still full of live entries (a flood of addresses or names): drop the least recently
        # used that no session holds, down to 90 %, rather than grow without bound.
        excess = len(table) - self.MAX_TRACKED * 9 // 10
        if excess > 0:
            for key in [k for k, e in table.items() if not e.busy()][:excess]:
                del table[key]

    def _prune_known(self, now: float) -> None:
        for pair in [p for p, until in self._known.items() if until <= now]:
            del self._known[pair]
        excess = len(self._known) - self.MAX_TRACKED * 9 // 10
        for pair in list(self._known)[: max(excess, 0)]:
            del self._known[pair]


class Reservation:
    """One password check's slot. Resolve it with `success(account)` or `failure()`, and always
    `release()` it in a `finally`; released unresolved (an error, a dropped connection) it counts
    as a failure, so abandoning attempts gains an attacker nothing."""

    def __init__(
        self,
        throttle: AuthThrottle,
        address_key: str,
        account_key: str,
        address: _Address,
        account: _Account,
        delay: float,
    ) -> None:
        self._throttle = throttle
        self.address_key = address_key
        self.account_key = account_key
        self.address = address
        self.account = account
        self.delay = delay  # the account's penalty, waited out by `reserve` before returning
        self._resolved = False
        self._released = False

    def success(self, account: str) -> None:
        """The password was right for `account` (the directory's canonical name)."""
        if not self._resolved:
            self._resolved = True
            self._throttle._resolve(self, account)

    def failure(self) -> float:
        """The credentials were wrong; returns how long to wait before answering (the slot is
        best held until then: `release()` after the wait)."""
        if self._resolved:
            return 0.0
        self._resolved = True
        return self._throttle._resolve(self, None)

    def release(self) -> None:
        if self._released:
            return
        self.failure()
        self._released = True
        self._throttle._release(self)

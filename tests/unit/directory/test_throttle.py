from carteiro.directory.throttle import AuthThrottle


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_blocks_after_max_failures_then_expires() -> None:
    clock = Clock()
    th = AuthThrottle(failure_delay=0.5, max_failures=3, window=60, block_time=100, clock=clock)
    assert th.failure("1.2.3.4") == 0.5
    assert th.failure("1.2.3.4") == 1.0
    assert not th.blocked("1.2.3.4")
    th.failure("1.2.3.4")
    assert th.blocked("1.2.3.4")
    assert not th.blocked("5.6.7.8")
    clock.t += 101
    assert not th.blocked("1.2.3.4")


def test_old_failures_fall_out_of_window() -> None:
    clock = Clock()
    th = AuthThrottle(max_failures=3, window=60, clock=clock)
    th.failure("ip")
    th.failure("ip")
    clock.t += 61
    th.failure("ip")
    assert not th.blocked("ip")


def test_success_resets() -> None:
    th = AuthThrottle(max_failures=2)
    th.failure("ip")
    th.success("ip")
    th.failure("ip")
    assert not th.blocked("ip")


def test_memory_bounded() -> None:
    th = AuthThrottle()
    th.MAX_TRACKED = 100
    for i in range(1000):
        th.failure(f"10.0.{i // 256}.{i % 256}")
    assert len(th._failures) <= 100

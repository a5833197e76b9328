"""The [auth] keys of the login throttle (docs/configuration.md, carteiro/directory/throttle.py)."""

import pytest

from carteiro.config import ConfigError, loads


def test_throttle_keys_load() -> None:
    cfg = loads(
        "[auth]\nmax_in_flight_per_ip = 8\nmax_in_flight_per_account = 3\n"
        "account_free_failures = 0\naccount_delay = 0.5\naccount_max_delay = 30.0\n"
        "slot_wait = 5.0\n"
    )
    a = cfg.auth
    assert (a.max_in_flight_per_ip, a.max_in_flight_per_account) == (8, 3)
    assert (a.account_free_failures, a.account_delay, a.account_max_delay) == (0, 0.5, 30.0)
    assert a.slot_wait == 5.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("max_in_flight_per_ip = 0", "auth.max_in_flight_per_ip: must be greater than 0"),
        ("max_in_flight_per_account = 0", "auth.max_in_flight_per_account: must be greater"),
        ("account_free_failures = -1", "auth.account_free_failures: must not be negative"),
        ("account_delay = -1.0", "auth.account_delay: must not be negative"),
        ("slot_wait = -1.0", "auth.slot_wait: must not be negative"),
    ],
)
def test_bad_throttle_values_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        loads(f"[auth]\n{text}\n")


def test_trusted_networks_default_empty_and_validated() -> None:
    assert loads("").auth.trusted_networks == []  # like Dovecot: nobody speaks for others
    cfg = loads('[auth]\ntrusted_networks = ["10.1.0.0/16", "2001:db8::/32", "192.0.2.7"]')
    assert cfg.auth.trusted_networks == ["10.1.0.0/16", "2001:db8::/32", "192.0.2.7"]
    with pytest.raises(ConfigError) as e:
        loads('[auth]\ntrusted_networks = ["10.0.0.0/8", "webmail.example"]')
    assert "auth.trusted_networks[1]" in str(e.value)

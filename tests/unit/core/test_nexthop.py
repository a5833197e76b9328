"""`[transport]` next hops: SMTP host:port, and LMTP over TCP or a Unix socket."""

from __future__ import annotations

import pytest

from carteiro.core.nexthop import NextHop, parse_nexthop


def test_forms() -> None:
    assert parse_nexthop("relay.test:2525") == NextHop("smtp", "relay.test", 2525)
    assert parse_nexthop("relay.test") == NextHop("smtp", "relay.test", 25)
    assert parse_nexthop("smtp:[2001:db8::1]:26") == NextHop("smtp", "2001:db8::1", 26)
    assert parse_nexthop("lmtp:127.0.0.1:8024") == NextHop("lmtp", "127.0.0.1", 8024)
    assert parse_nexthop("lmtp:mailman.test") == NextHop("lmtp", "mailman.test", 24)
    assert parse_nexthop("lmtp:unix:/run/mailman/lmtp") == NextHop("lmtp", path="/run/mailman/lmtp")
    assert parse_nexthop("lmtp:unix:/x").key == "lmtp:unix:/x"


@pytest.mark.parametrize("bad", ["lmtp:unix:relative", "lmtp::24", "host:99999", ":25"])
def test_bad(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_nexthop(bad)


def test_transport_lookup_and_lmtp_domains() -> None:
    from carteiro.core.nexthop import is_lmtp_domain, transport_entry, transport_table

    table = transport_table(
        {"Lists.Test.": "lmtp:127.0.0.1:8024", ".ml.test": "lmtp:unix:/x", "o.test": "h:26"}
    )
    assert transport_entry(table, "lists.test") == "lmtp:127.0.0.1:8024"
    assert transport_entry(table, "a.b.ml.test") == "lmtp:unix:/x"
    assert transport_entry(table, "ml.test") is None  # ".parent" is its subdomains only
    assert is_lmtp_domain(table, "LISTS.test.") and is_lmtp_domain(table, "x.ml.test")
    assert not is_lmtp_domain(table, "o.test") and not is_lmtp_domain(table, "z.test")


def test_lmtp_transport_for_a_local_domain_is_refused(tmp_path: object) -> None:
    from carteiro.config import ConfigError, loads

    text = 'domains = ["example.test", "lists.test"]\n[transport]\n"lists.test" = "lmtp:h:24"\n'
    with pytest.raises(ConfigError, match=r"lists\.test is in domains"):
        loads(text)
    loads(text.replace('"lists.test"]', '"other.test"]'))


def test_address_entries_with_plus_detail() -> None:
    from carteiro.core.nexthop import address_entry, is_lmtp_address, transport_table

    table = transport_table(
        {"Dev@Example.Test": "lmtp:127.0.0.1:8024", "dev-bounces@example.test": "lmtp:unix:/m"}
    )
    assert address_entry(table, "dev@EXAMPLE.test") == "lmtp:127.0.0.1:8024"
    assert address_entry(table, "dev-bounces+bob=b.test@example.test") == "lmtp:unix:/m"
    assert address_entry(table, "dev+x@example.test") == "lmtp:127.0.0.1:8024"
    assert address_entry(table, "alice@example.test") is None
    assert address_entry(table, "example.test") is None
    assert is_lmtp_address(table, "dev@example.test")
    assert not is_lmtp_address(table, "devx@example.test")


@pytest.mark.parametrize("key", ["@example.test", "a b@example.test"])
def test_bad_transport_keys(key: str) -> None:
    from carteiro.config import ConfigError, loads

    with pytest.raises(ConfigError, match="a key is"):
        loads(f'[transport]\n"{key}" = "lmtp:h:24"\n')

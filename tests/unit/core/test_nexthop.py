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

"""The RFC 7208 SPF test suite (openspf.org release 2014.04, as pyspf 2.0.14 ships it; BSD
licence in tests/data/spf/rfc7208-tests.LICENSE) run against our check_host: every scenario's
zone served by a resolver with our Resolver interface, every test's identities and address
through carteiro.mailauth.spf, the result compared with the one (or one of those) the suite
allows, and the exp= explanation where the suite names one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from carteiro.mailauth import spf
from carteiro.mailauth.lookup import Answer

SUITE = Path(__file__).parents[2] / "data" / "spf" / "rfc7208-tests.yml"


class SuiteResolver:
    """A scenario's zonedata with the suite driver's rules (pyspf's test/testspf.py): a name
    that is not there is NXDOMAIN (a name under "error." times out), TIMEOUT as an entry times
    out the name for any type not answered before it, TIMEOUT as a value times out that type,
    SPF records stand in for TXT when a name has no TXT, NONE means no record, CNAMEs are
    followed."""

    def __init__(self, zonedata: dict[str, list[Any]]) -> None:
        self.zone: dict[str, list[Any]] = {}
        for name, entries in zonedata.items():
            out: list[Any] = []
            txt = [e for e in entries if isinstance(e, dict) and "TXT" in e]
            for e in entries:
                if not isinstance(e, dict):
                    out.append(e)  # "TIMEOUT"
                    continue
                for rtype, value in e.items():
                    if rtype == "SPF":
                        if txt:
                            continue
                        rtype = "TXT"
                    if value == "NONE" or value == ["NONE"]:
                        continue
                    out.append((rtype, value))
            self.zone[name.lower().rstrip(".")] = out

    async def lookup(self, name: str, rdtype: str, depth: int = 0) -> Answer:
        name = name.lower().rstrip(".")
        entries = self.zone.get(name)
        if entries is None:
            if name.startswith("error."):
                return Answer("temp", (), "DNS timeout")
            return Answer("nxdomain", (), f"{name}: no such domain")
        values: list[object] = []
        for e in entries:
            if e == "TIMEOUT":
                if not values:
                    return Answer("temp", (), "DNS timeout")
                continue
            rtype, value = e
            if value == "TIMEOUT":
                if rtype == rdtype:
                    return Answer("temp", (), "DNS timeout")
                continue
            if rtype == "CNAME" and rdtype != "CNAME" and depth < 8:
                target = await self.lookup(str(value), rdtype, depth + 1)
                if target.temporary:
                    return target
                values.extend(target.values)
            elif rtype == rdtype:
                values.append(_value(rtype, value))
        return Answer("ok", tuple(values)) if values else Answer("nodata", (), "no record")


def _value(rtype: str, value: Any) -> object:
    if rtype == "TXT":
        strings = [value] if isinstance(value, str) else list(value)
        return tuple(s.encode("utf-8") for s in strings)
    if rtype == "MX":
        return (int(value[0]), str(value[1]).rstrip("."))
    return str(value).rstrip(".")


def cases() -> list[Any]:
    out = []
    with SUITE.open("rb") as f:
        for scenario in yaml.safe_load_all(f):
            for name, test in scenario["tests"].items():
                out.append(pytest.param(scenario["zonedata"], test, id=name))
    return out


CASES = cases()


def test_the_suite_is_all_there() -> None:
    assert len(CASES) > 100


@pytest.mark.parametrize(("zonedata", "test"), CASES)
async def test_rfc7208_suite(zonedata: dict[str, list[Any]], test: dict[str, Any]) -> None:
    resolver = SuiteResolver(zonedata)
    got = await spf.check_host(
        resolver, str(test["host"]), str(test.get("mailfrom") or ""), str(test.get("helo", ""))
    )
    allowed = test["result"] if isinstance(test["result"], list) else [test["result"]]
    assert got.result in allowed, (test.get("spec"), got)
    explanation = test.get("explanation")
    if explanation is not None and explanation != "DEFAULT" and got.result == "fail":
        assert got.explanation == explanation

"""DKIM signing keys: RSA and Ed25519 side by side (RFC 8463 dual signatures), rotation
(pending -> active -> retiring -> retired) seen by a running signer, the records dns-records
prints, and the `carteiro dkim` commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from carteiro import cli
from carteiro.mailauth import dkim_keys
from carteiro.mailauth.dkim import DKIMSigner, ensure_dkim_key, key_path
from carteiro.mailauth.dkim_verify import verify
from carteiro.mailauth.dns_records import format_zone, records_for
from carteiro.testing.dns import StaticResolver

MESSAGE = (
    b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: keys\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <k1@a.test>\r\n\r\nHello.\r\n"
)


def zone_of(data: Path, domain: str = "a.test") -> StaticResolver:
    """Every published key of `domain`, as its DNS would serve them."""
    text = ""
    for e in dkim_keys.entries(data, domain, "carteiro"):
        value = dkim_keys.txt_record(key_path(data, domain, e.selector))
        chunks = " ".join(f'"{value[i : i + 200]}"' for i in range(0, len(value), 200))
        text += f"{e.selector}._domainkey.{domain}. 60 IN TXT {chunks}\n"
    return StaticResolver(text)


async def test_new_domain_signs_with_rsa_and_ed25519(tmp_path: Path) -> None:
    items = dkim_keys.ensure_defaults(tmp_path, "a.test", "carteiro")
    assert [(e.selector, e.algorithm, e.state) for e in items] == [
        ("carteiro", "rsa", "active"),
        ("carteiro-ed", "ed25519", "active"),
    ]
    signed = DKIMSigner(tmp_path, ["a.test"], "carteiro")(MESSAGE) + MESSAGE
    results = await verify(zone_of(tmp_path), signed)
    assert [(s.algorithm, s.selector, s.result) for s in results] == [
        ("rsa-sha256", "carteiro", "pass"),
        ("ed25519-sha256", "carteiro-ed", "pass"),
    ]
    assert dkim_keys.txt_record(key_path(tmp_path, "a.test", "carteiro-ed")).startswith(
        "v=DKIM1; k=ed25519; p="
    )


async def test_existing_install_gets_ed25519_pending(tmp_path: Path) -> None:
    ensure_dkim_key(tmp_path, "a.test", "carteiro")  # an older carteiro made the RSA key only
    items = dkim_keys.ensure_defaults(tmp_path, "a.test", "carteiro")
    assert [e.state for e in items] == ["active", "pending"]
    signed = DKIMSigner(tmp_path, ["a.test"], "carteiro")(MESSAGE)
    assert signed.count(b"DKIM-Signature:") == 1


async def test_rotation_is_seen_by_a_running_signer(tmp_path: Path) -> None:
    dkim_keys.ensure_defaults(tmp_path, "a.test", "carteiro")
    signer = DKIMSigner(tmp_path, ["a.test"], "carteiro")
    signer.RECHECK = 0.0
    assert b"s=carteiro;" in signer(MESSAGE)
    new = dkim_keys.rotate(tmp_path, "a.test", "rsa", "carteiro", now=1_700_000_000)
    assert (new.selector, new.state) == ("c20231114r", "pending")
    assert b"s=c20231114r" not in signer(MESSAGE)  # not before its record is published
    dkim_keys.activate(tmp_path, "a.test", new.selector, "carteiro")
    fields = signer(MESSAGE)
    assert b"s=c20231114r" in fields and b"s=carteiro;" not in fields
    states = {e.selector: e.state for e in dkim_keys.entries(tmp_path, "a.test", "carteiro")}
    assert states == {"carteiro": "retiring", "carteiro-ed": "active", "c20231114r": "active"}
    zone = format_zone(records_for("a.test", "mx.a.test", tmp_path, "carteiro"), "mx.a.test")
    assert "carteiro._domainkey.a.test." in zone and "c20231114r._domainkey.a.test." in zone
    assert "carteiro dkim retire a.test carteiro" in zone
    results = await verify(zone_of(tmp_path), fields + MESSAGE)
    assert [s.result for s in results] == ["pass", "pass"]
    with pytest.raises(dkim_keys.KeyError_):
        dkim_keys.retire(tmp_path, "a.test", "c20231114r", "carteiro")  # it signs
    dkim_keys.retire(tmp_path, "a.test", "carteiro", "carteiro")
    assert not key_path(tmp_path, "a.test", "carteiro").exists()
    zone = format_zone(records_for("a.test", "mx.a.test", tmp_path, "carteiro"), "mx.a.test")
    assert "\ncarteiro._domainkey" not in zone


def test_dkim_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert cli.main(["init", "--data", data, "--domain", "a.test"]) == 0
    capsys.readouterr()
    assert cli.main(["dkim", "rotate", "a.test", "--algorithm", "ed25519", "--selector", "ed2",
                     "--data", data]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert 'ed2._domainkey.a.test. 3600 IN TXT "v=DKIM1; k=ed25519; p=' in out
    assert "carteiro dkim activate a.test ed2" in out
    assert cli.main(["dkim", "activate", "a.test", "ed2", "--data", data]) == 0
    assert "carteiro-ed is retiring" in capsys.readouterr().out
    assert cli.main(["dkim", "list", "--data", data]) == 0
    listing = capsys.readouterr().out
    assert "ed2" in listing and "retiring" in listing and "active" in listing
    assert cli.main(["dkim", "retire", "a.test", "ed2", "--data", data]) == 1
    assert "activate its successor first" in capsys.readouterr().err
    assert cli.main(["dkim", "retire", "a.test", "carteiro-ed", "--data", data]) == 0
    assert "remove its record" in capsys.readouterr().out
    assert cli.main(["dns-records", "--data", data]) == 0
    printed = capsys.readouterr().out
    assert "ed2._domainkey.a.test." in printed and "carteiro-ed._domainkey" not in printed
    # both algorithms' records: the RSA key and the Ed25519 one that replaced carteiro-ed
    assert "carteiro._domainkey.a.test." in printed and "k=rsa" in printed
    assert "k=ed25519" in printed

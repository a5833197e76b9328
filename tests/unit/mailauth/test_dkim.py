"""DKIM keys, signing (verified with dkimpy against the published record), DNS records."""

from __future__ import annotations

import stat
from pathlib import Path

import dkim

from carteiro.mailauth.dkim import DKIMSigner, ensure_dkim_key, from_domain, key_path, txt_record
from carteiro.mailauth.dns_records import format_zone, records_for

MESSAGE = (
    b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: signed\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <s1@a.test>\r\n\r\nHello, Bob.\r\n"
)


def dns_for(data_dir: Path, domain: str, selector: str = "carteiro"):  # type: ignore[no-untyped-def]
    record = txt_record(key_path(data_dir, domain, selector)).encode()

    def get_txt(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{selector}._domainkey.{domain}.".encode() else None

    return get_txt


def test_key_is_made_once_and_private(tmp_path: Path) -> None:
    p = ensure_dkim_key(tmp_path, "a.test", "carteiro")
    assert p == tmp_path / "dkim" / "a.test.carteiro.key"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    first = p.read_bytes()
    assert b"BEGIN RSA PRIVATE KEY" in first
    assert ensure_dkim_key(tmp_path, "a.test", "carteiro").read_bytes() == first
    assert txt_record(p).startswith("v=DKIM1; k=rsa; p=MII")


def test_signature_verifies_against_the_published_key(tmp_path: Path) -> None:
    ensure_dkim_key(tmp_path, "a.test", "carteiro")
    signer = DKIMSigner(tmp_path, ["a.test"], "carteiro")
    header = signer(MESSAGE)
    assert header.startswith(b"DKIM-Signature: ")
    assert b"d=a.test" in header and b"s=carteiro" in header and b"c=relaxed/relaxed" in header
    assert dkim.verify(header + MESSAGE, dnsfunc=dns_for(tmp_path, "a.test"))
    # tampering breaks it
    assert not dkim.verify(
        header + MESSAGE.replace(b"Hello", b"Jello"), dnsfunc=dns_for(tmp_path, "a.test")
    )


def test_subdomain_author_signs_with_the_parent_key(tmp_path: Path) -> None:
    ensure_dkim_key(tmp_path, "a.test", "carteiro")
    signer = DKIMSigner(tmp_path, lambda d: d == "a.test", "carteiro")
    msg = MESSAGE.replace(b"alice@a.test", b"MAILER-DAEMON@mx.a.test")
    header = signer(msg)
    assert b"d=a.test" in header
    assert dkim.verify(header + msg, dnsfunc=dns_for(tmp_path, "a.test"))


def test_no_key_or_foreign_domain_means_no_signature(tmp_path: Path) -> None:
    signer = DKIMSigner(tmp_path, ["a.test", "c.test"], "carteiro")
    assert signer(MESSAGE) == b""  # a.test has no key yet
    ensure_dkim_key(tmp_path, "a.test", "carteiro")
    other = MESSAGE.replace(b"alice@a.test", b"eve@evil.test")
    assert DKIMSigner(tmp_path, ["a.test"], "carteiro")(other) == b""
    assert DKIMSigner(tmp_path, ["a.test"], "carteiro")(b"Subject: no from\r\n\r\nx\r\n") == b""


def test_from_domain() -> None:
    assert from_domain(MESSAGE) == "a.test"
    assert from_domain(b'From: "X, Y" <x@Sub.Example.TEST>\r\n\r\n') == "sub.example.test"
    assert from_domain(b"To: a@b\r\n\r\n") is None


def test_dns_records(tmp_path: Path) -> None:
    ensure_dkim_key(tmp_path, "a.test", "carteiro")
    recs = records_for("a.test", "mail.a.test", tmp_path, "carteiro")
    by_type = {(r.name, r.type): r.value for r in recs}
    assert by_type[("a.test.", "MX")] == "10 mail.a.test."
    assert by_type[("a.test.", "TXT")] == '"v=spf1 mx -all"'
    dkim_value = by_type[("carteiro._domainkey.a.test.", "TXT")]
    # long TXT values are split in strings of at most 255 characters
    strings = [s.strip('"') for s in dkim_value.split('" "')]
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == txt_record(key_path(tmp_path, "a.test", "carteiro"))
    assert by_type[("_dmarc.a.test.", "TXT")].startswith('"v=DMARC1; p=')
    zone = format_zone(recs, "mail.a.test")
    assert "a.test.  " in zone and "IN MX  10 mail.a.test." in zone


def test_signature_is_dkimpy_own_byte_for_byte(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The signer's RSA step is OpenSSL's (OpenSSLRSA); PKCS#1 v1.5 is deterministic, so the
    field must be exactly the one dkimpy's pure-Python signer makes with the same key and time."""
    from carteiro.mailauth.dkim import EXTRA_SIGNED_FIELDS

    path = ensure_dkim_key(tmp_path, "a.test", "carteiro")
    monkeypatch.setattr(dkim.time, "time", lambda: 1700000000.5)
    ours = DKIMSigner(tmp_path, ["a.test"], "carteiro")(MESSAGE)
    d = dkim.DKIM(MESSAGE, signature_algorithm=b"rsa-sha256", linesep=b"\r\n")
    d.should_sign.update(EXTRA_SIGNED_FIELDS)
    pure = d.sign(b"carteiro", b"a.test", path.read_bytes(), canonicalize=(b"relaxed", b"relaxed"))
    assert ours == pure
    assert b"t=1700000000;" in ours

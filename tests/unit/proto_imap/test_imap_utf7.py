"""Modified UTF-7 mailbox names (RFC 3501 5.1.3)."""

from __future__ import annotations

import pytest

from carteiro.proto.imap import utf7


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("INBOX", "INBOX"),
        ("", ""),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("&", "&-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 5.1.3
        ("Entwürfe", "Entw&APw-rfe"),
        ("Éléments envoyés", "&AMk-l&AOk-ments envoy&AOk-s"),
        ("☺", "&Jjo-"),
        ("😀", "&2D3eAA-"),  # a surrogate pair
        ("a\tb", "a&AAk-b"),
        ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
    ],
)
def test_round_trip_known_values(text: str, wire: str) -> None:
    assert utf7.encode(text) == wire
    assert utf7.decode(wire) == text
    assert utf7.decode(wire.encode()) == text


@pytest.mark.parametrize(
    "wire",
    [
        "&Jjo",  # unterminated
        "Tom&Jerry",  # bare & not followed by a valid run
        "&Jjo!-",  # base64 alphabet only
        "&ZeVnLIqe",  # no shift back
        "&AGE-",  # "a" must not be encoded
        "&Jjo-&Jjo-",  # adjacent runs must be one run
        "&2D0-",  # lone high surrogate
        "&3gA-",  # lone low surrogate
        "&AA-",  # partial character
        "&Jjp-",  # non-zero padding bits
        "&U/BTFw-",  # "/" is "," in modified base64
        "caf\xe9",  # 8-bit
        "a\x01b",  # control character
        "&AOk=-",  # padding
    ],
)
def test_malformed_names_are_errors(wire: str) -> None:
    with pytest.raises(utf7.UTF7Error):
        utf7.decode(wire)
    assert not utf7.is_valid(wire)


def test_encode_lone_surrogate_is_an_error() -> None:
    with pytest.raises(utf7.UTF7Error):
        utf7.encode("\ud800")

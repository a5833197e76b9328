import pytest

from carteiro.core.address import AddressError, canonical, parse_address, split_detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alice@Example.TEST", "alice@example.test"),
        ("bob@example.test.", "bob@example.test"),
        ('"john doe"@example.test', '"john doe"@example.test'),
        ("josé@exämple.test", "josé@exämple.test"),
        ("x@xn--exmple-cua.test", "x@exämple.test"),
        ("a@[127.0.0.1]", "a@[127.0.0.1]"),
    ],
)
def test_canonical(text: str, expected: str) -> None:
    assert canonical(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nodomain",
        "@example.test",
        "a@",
        "a b@example.test",
        "a@-bad.test",
        "a\x00@x.test",
        "a@ex ample.test",
        "x" * 65 + "@example.test",
        "a..b@example.test",
        ".a@example.test",
    ],
)
def test_rejected(text: str) -> None:
    with pytest.raises(AddressError):
        parse_address(text)


def test_utf8_refused_without_smtputf8() -> None:
    with pytest.raises(AddressError):
        parse_address("josé@example.test", allow_utf8=False)


def test_split_detail() -> None:
    assert split_detail("alice+lists") == ("alice", "lists")
    assert split_detail("alice") == ("alice", "")
    assert split_detail("+x") == ("+x", "")

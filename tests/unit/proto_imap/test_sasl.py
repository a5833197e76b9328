"""SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) server machines."""

from __future__ import annotations

import base64

import pytest

from carteiro.proto import sasl
from carteiro.proto.sasl import Challenge, Credentials, Failure, FailureKind, Success


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_plain_with_initial_response() -> None:
    s = sasl.server("plain")
    assert s is not None
    step = s.start(b"\x00tim\x00tanstaaftanstaaf")
    assert step == Success(Credentials("tim", "tanstaaftanstaaf"))
    assert s.done


def test_plain_without_initial_response() -> None:
    s = sasl.server("PLAIN")
    assert s is not None
    assert s.start() == Challenge(b"")
    assert s.respond(b64(b"tim\x00tim\x00secret")) == Success(Credentials("tim", "secret"))


def test_plain_wire_initial_response_for_smtp() -> None:
    s = sasl.server("PLAIN")
    assert s is not None
    # RFC 4616 4 example
    assert s.start_wire(b64(b"Kurt\x00Ursel\x00kurt").decode()) == Failure(
        "Acting as another user is not allowed", FailureKind.REFUSED
    )
    s = sasl.server("PLAIN", allow_proxy=True)
    assert s is not None
    step = s.start_wire(b64(b"Kurt\x00Ursel\x00kurt"))
    assert step == Success(Credentials("Ursel", "kurt", "Kurt"))
    assert isinstance(step, Success) and step.credentials.identity == "Kurt"


def test_plain_authzid_equal_to_authcid_is_not_proxying() -> None:
    s = sasl.server("PLAIN")
    assert s is not None
    assert s.start(b"Tim\x00tim\x00pw") == Success(Credentials("tim", "pw"))


@pytest.mark.parametrize(
    "message",
    [
        b"tim\x00secret",  # one NUL
        b"\x00tim\x00sec\x00ret",  # three NULs
        b"\x00\x00secret",  # empty authcid
        b"\x00tim\x00",  # empty password
        b"\x00t\xffm\x00secret",  # not UTF-8
        b"",
        b"\x00" + b"u" * 2000 + b"\x00pw",
    ],
)
def test_plain_malformed(message: bytes) -> None:
    s = sasl.server("PLAIN")
    assert s is not None
    step = s.start(message)
    assert isinstance(step, Failure) and step.kind is FailureKind.INVALID


def test_empty_initial_response_equals() -> None:
    s = sasl.server("PLAIN")
    assert s is not None
    step = s.start_wire("=")
    assert isinstance(step, Failure) and step.kind is FailureKind.INVALID
    login = sasl.server("LOGIN")
    assert login is not None
    assert login.start_wire("=") == Challenge(b"Username:")


def test_cancel_and_bad_base64() -> None:
    s = sasl.server("PLAIN")
    assert s is not None
    s.start()
    assert s.respond(b"*") == Failure("Authentication cancelled", FailureKind.CANCELLED)
    assert s.done
    s = sasl.server("PLAIN")
    assert s is not None
    s.start()
    step = s.respond(b"not base64!")
    assert isinstance(step, Failure) and step.kind is FailureKind.ENCODING
    s = sasl.server("PLAIN")
    assert s is not None
    s.start()
    step = s.respond(b"AGZvbwBiYXI")  # missing padding
    assert isinstance(step, Failure) and step.kind is FailureKind.ENCODING


def test_login_mechanism() -> None:
    s = sasl.server("LOGIN")
    assert s is not None
    assert s.start() == Challenge(b"Username:")
    assert s.respond(b64(b"tim")) == Challenge(b"Password:")
    assert s.respond(b64("pässword".encode())) == Success(Credentials("tim", "pässword"))


def test_login_with_initial_user_name() -> None:
    s = sasl.server("LOGIN")
    assert s is not None
    assert s.start_wire(b64(b"tim")) == Challenge(b"Password:")
    assert s.respond(b64(b"pw") + b"\r\n") == Success(Credentials("tim", "pw"))


def test_login_rejects_empty_and_nul() -> None:
    s = sasl.server("LOGIN")
    assert s is not None
    s.start()
    step = s.respond(b"")
    assert isinstance(step, Failure) and step.kind is FailureKind.INVALID
    s = sasl.server("LOGIN")
    assert s is not None
    s.start()
    s.respond(b64(b"tim"))
    step = s.respond(b64(b"a\x00b"))
    assert isinstance(step, Failure) and step.kind is FailureKind.INVALID


def test_misuse_is_a_bug() -> None:
    s = sasl.server("LOGIN")
    assert s is not None
    with pytest.raises(RuntimeError):
        s.respond(b"")
    s.start()
    with pytest.raises(RuntimeError):
        s.start()


def test_unknown_mechanism_and_helpers() -> None:
    assert sasl.server("CRAM-MD5") is None
    assert sasl.MECHANISMS == ("PLAIN", "LOGIN")
    assert sasl.encode_challenge(b"Password:") == b"UGFzc3dvcmQ6"
    assert sasl.decode_response("UGFzc3dvcmQ6") == b"Password:"
    assert sasl.decode_response("") == b""


def test_password_not_in_repr() -> None:
    assert "secret" not in repr(Credentials("tim", "secret"))

"""Every named reply's enhanced status code is of its reply's class (RFC 3463 2: 2.X.X success,
4.X.X transient, 5.X.X permanent; a client acting on either must reach the same verdict)."""

from __future__ import annotations

from carteiro.proto.smtp import replies as R


def test_enhanced_code_class_matches_reply_class() -> None:
    named = {k: v for k, v in vars(R).items() if isinstance(v, R.Reply)}
    assert len(named) > 40
    wrong = {
        k: (v.code, v.status)
        for k, v in named.items()
        if v.status and v.status[0] != str(v.code)[0]
    }
    assert wrong == {}

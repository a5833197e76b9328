"""The author's domain the DKIM signer signs for: the quick header scan gives the same answer as
the full RFC 5322 parse (email's parser and getaddresses) on every shape, simple or not."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.mailauth.dkim import from_domain


def parsed_from_domain(message: bytes) -> str | None:
    """The reference: what from_domain answered before it had a quick path."""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")
    head = message if end < 0 else message[: end + 2]
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    values = msg.get_all("From") or []
    for _name, addr in email.utils.getaddresses([str(v) for v in values]):
        if "@" in addr:
            return addr.rpartition("@")[2].strip().rstrip(".").lower() or None
    return None


CASES = [
    b"From: a@Example.ORG\r\n\r\nbody",
    b"From: Alice <a@example.org>\r\nTo: b@x.test\r\n\r\n",
    b"Received: from x\r\n\tby y\r\nfrom: Alice Q. Public <a@Sub.Example.org.>\r\n\r\n",
    b'From: "Doe, John" <j@example.org>\r\n\r\n',
    b"From: (comment) a@example.org\r\n\r\n",
    b"From: undisclosed\r\nFrom: b@second.test\r\n\r\n",
    b"From: a@one.test, b@two.test\r\n\r\n",
    b"From: group: a@g.test;\r\n\r\n",
    b"From :a@spaced.test\r\n\r\n",
    b"From a@mbox.test Mon Jan 1\r\nFrom: b@real.test\r\n\r\n",
    b"Subject: no from\r\n\r\n",
    b"From: Alice\r\n <a@folded.test>\r\n\r\n",
    b"From: <a@angle.test>\n\nLF only",
    b"From: a@x.test\r\nnot a header line\r\nFrom: b@y.test\r\n\r\n",
    b"From: =?utf-8?q?Al=C3=ADce?= <a@encoded.test>\r\n\r\n",
    "From: Álice <a@utf8.test>\r\n\r\n".encode(),
    b"From: a@\r\n\r\n",
    b"From: @x.test\r\n\r\n",
    b"From: a@b@c.test\r\n\r\n",
    b"From: <a@x.test> trailing\r\n\r\n",
    b"From: a@x.test\r\n",  # no body separator at all
    b"From:a@nospace.test\r\n\r\n",
    b"FROM: A@UPPER.TEST\r\n\r\n",
    b"From: a@[127.0.0.1]\r\n\r\n",
    b"From: \r\n\r\n",
    b"From: a@x.test\r\n\r\nFrom: b@inbody.test\r\n",
]


@pytest.mark.parametrize("message", CASES)
def test_same_as_the_full_parse(message: bytes) -> None:
    assert from_domain(message) == parsed_from_domain(message)


FIELD_TEXT = st.lists(
    st.sampled_from([*"aZx1.@@<>\" ,;:()\\[]\t-=?'é", "\r\n ", "\r\n\t", "\r", "a@x.test"]),
    max_size=30,
).map("".join)


@settings(max_examples=1500, deadline=None)
@given(
    before=st.lists(
        st.sampled_from(["To: x@y.test", "Subject: hi", " folded", "Bad line"]), max_size=3
    ),
    name=st.sampled_from(["From", "from", "FROM", "From ", "Fro"]),
    value=FIELD_TEXT,
    sep=st.sampled_from(["\r\n", "\n"]),
)
def test_same_as_the_full_parse_on_random_fields(
    before: list[str], name: str, value: str, sep: str
) -> None:
    lines = [*before, f"{name}:{value}", "X: y"]
    message = (sep.join(lines) + sep + sep + "body").encode()
    assert from_domain(message) == parsed_from_domain(message)

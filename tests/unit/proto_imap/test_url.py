"""IMAP URL parsing (RFC 5092 message URLs): any input gives a value or UrlError, never another
exception; a URL built from parts reads back as those parts."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from carteiro.proto.imap.url import MessageUrl, UrlError, parse_message_url


@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused(text: str) -> None:
    try:
        u = parse_message_url(text)
    except UrlError:
        return
    assert isinstance(u, MessageUrl) and u.uid > 0


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
    st.integers(1, 2**32 - 1),
    st.integers(1, 2**32 - 1),
)
def test_round_trip(name: str, uidvalidity: int, uid: int) -> None:
    enc = quote(name.encode("utf-8"), safe="")
    u = parse_message_url(f"/{enc};UIDVALIDITY={uidvalidity}/;UID={uid}/;SECTION=1.2.MIME")
    assert (u.mailbox, u.uidvalidity, u.uid) == (name, uidvalidity, uid)
    assert u.section is not None and u.section.part == (1, 2)

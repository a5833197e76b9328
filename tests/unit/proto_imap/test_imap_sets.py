"""Sequence sets (RFC 9051 9 sequence-set; RFC 5182 "$"): parse, resolve without expanding, render."""

from __future__ import annotations

import pytest

from carteiro.proto.imap.sets import STAR, SequenceSet, SequenceSetError, render_numbers

S = SequenceSet.parse


def test_parse_forms() -> None:
    assert S("1").ranges == ((1, 1),)
    assert S("2:4,7,9:*").ranges == ((2, 4), (7, 7), (9, STAR))
    assert S("*").ranges == ((STAR, STAR),)
    assert S("*:4").ranges == ((STAR, 4),)
    assert S("4294967295").ranges == ((4294967295, 4294967295),)
    assert S("$").saved
    assert S(b"1:2") == S("1:2")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "1:0",
        "01",
        "1,",
        ",1",
        "1::2",
        "1:2:3",
        "a",
        "1 2",
        "4294967296",
        "$,1",
        "$:1",
        "1" * 30,
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(SequenceSetError):
        S(text)


def test_saved_not_allowed_when_asked() -> None:
    with pytest.raises(SequenceSetError):
        SequenceSet.parse("$", allow_saved=False)


def test_ranges_in_any_order_and_overlaps() -> None:
    # RFC 9051 9: "4:2" is 2:4; duplicates and overlaps merge
    assert S("4:2,3,10:8,9").resolve(100) == (
        (2, 4),
        (8, 10),
    )
    assert S("5:7,1:3,4").resolve(100) == ((1, 7),)


def test_star_resolves_to_largest() -> None:
    assert S("1:*").resolve(10) == ((1, 10),)
    # RFC 9051 6.4.9: "UID 559:*" includes the largest UID even if it is below 559
    assert S("559:*").resolve(500) == ((500, 559),)
    assert S("*").resolve(7) == ((7, 7),)


def test_filter_uses_bisection_not_expansion() -> None:
    uids = list(range(1, 200_001, 2))  # 100,000 odd UIDs
    assert SequenceSet.parse("1:4294967295").filter(uids) == uids
    assert S("10:20").filter(uids) == [11, 13, 15, 17, 19]
    assert S("*").filter(uids) == [199_999]
    assert S("300000:*").filter(uids) == [199_999]
    assert S("2,4").filter(uids) == []
    assert S("1:*").filter([]) == []


def test_indices_give_message_sequence_numbers() -> None:
    uids = [3, 5, 8, 13, 21]
    assert [i + 1 for i in S("5:13").indices(uids)] == [2, 3, 4]
    assert S("*").indices(uids) == [4]


def test_contains_count_iter() -> None:
    s = S("2:4,9,20:*")
    assert s.contains(3, 25) and not s.contains(5, 25) and s.contains(25, 25)
    assert s.count(25) == 3 + 1 + 6
    assert list(s.iter_numbers(22)) == [2, 3, 4, 9, 20, 21, 22]
    assert s.max_number() == 20
    assert s.uses_star and not S("1:5").uses_star


def test_saved_must_be_substituted() -> None:
    with pytest.raises(SequenceSetError):
        S("$").resolve(5)


def test_render() -> None:
    assert render_numbers([1, 2, 3, 4, 5, 7, 9, 10, 11, 12]) == "1:5,7,9:12"
    assert render_numbers([12, 11, 3, 1, 2]) == "1:3,11:12"
    assert render_numbers([5, 6, 1, 2], sort=False) == "5:6,1:2"
    assert render_numbers([]) == ""
    assert str(S("2:4,7,9:*")) == "2:4,7,9:*"
    assert str(SequenceSet.from_numbers([3, 1, 2, 10])) == "1:3,10"
    assert str(S("$")) == "$"
    with pytest.raises(SequenceSetError):
        render_numbers([0])


def test_equality_and_hash() -> None:
    assert S("1:3") == SequenceSet([(1, 3)])
    assert len({S("1:3"), SequenceSet([(1, 3)])}) == 1
    assert S("1:3") != S("3:1")

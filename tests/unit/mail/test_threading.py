"""THREAD REFERENCES and ORDEREDSUBJECT (RFC 5256 2.2, 3) on hand-made message sets: missing
parents (dummies), loops, duplicate ids, subject merging, and a thread as deep as a mailbox; and
on random ones, the same answers as a frozen reference implementation."""

from __future__ import annotations

import threading_reference as reference
from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.mail.sorting import Item
from carteiro.mail.threading import ordered_subject, references
from carteiro.mime.sortkeys import SortFields, base_subject
from carteiro.servers.imap.sort import render


def item(seq: int, subject: str, mid: str = "", refs: str = "", date: float | None = None) -> Item:
    base, reply = base_subject(subject)
    f = SortFields(base, reply, "", "", "", "", "", date, mid, tuple(refs.split()))
    return Item(seq, seq, 100, float(seq), f)


def threads(roots: list) -> str:  # type: ignore[type-arg]
    return "".join("(" + render(r, False) + ")" for r in roots)


def test_missing_parent_keeps_siblings_together_under_a_dummy() -> None:
    # 2 and 3 answer <p> which is not in the mailbox: a dummy root holds both (not promoted:
    # it has two children); 4 answers <p> through <q>, also missing
    got = references(
        [
            item(1, "other", "<o>"),
            item(2, "Re: topic", "<a>", "<p>"),
            item(3, "Re: topic", "<b>", "<p>"),
            item(4, "Re: topic", "<c>", "<p> <q>"),
        ]
    )
    assert threads(got) == "(1)((2)(3)(4))"


def test_a_lone_child_of_a_dummy_takes_its_place() -> None:
    assert threads(references([item(1, "x", "<a>", "<gone>")])) == "(1)"


def test_loops_and_duplicate_ids() -> None:
    got = references(
        [
            item(1, "a", "<a>", "<b>"),
            item(2, "b", "<b>", "<a>"),  # would close a loop: <b> stays the parent of <a>
            item(3, "c", "<a>"),  # duplicate id: a message of its own
            item(4, "d", "<d>", "<d>"),  # refers to itself
        ]
    )
    assert threads(got) == "(2 1)(3)(4)"


def test_subject_merging() -> None:
    got = references(
        [
            item(1, "Re: hello", "<r1>"),  # replies whose parent is unknown by id
            item(2, "hello", "<h>"),
            item(3, "Re: hello", "<r2>"),
            item(4, "bye", "<b1>"),
            item(5, "bye", "<b2>"),  # two non-replies: a dummy holds both
        ]
    )
    assert threads(got) == "(2 (1)(3))((4)(5))"


def test_ordered_subject() -> None:
    got = ordered_subject(
        [item(1, "b"), item(2, "Re: a"), item(3, "a"), item(4, "B (fwd)"), item(5, "c")]
    )
    assert threads(got) == "(1 4)(2 3)(5)"


def test_a_thread_as_deep_as_the_mailbox() -> None:
    n = 20_000  # far beyond Python's recursion limit
    items = [item(1, "s", "<m1>")] + [
        item(i, "Re: s", f"<m{i}>", f"<m{i - 1}>") for i in range(2, n + 1)
    ]
    out = threads(references(items))
    assert out == "(" + " ".join(str(i) for i in range(1, n + 1)) + ")"
    items.append(item(n + 1, "Re: s", "<x>", "<m5>"))  # a branch deep down
    out = threads(references(items))
    assert out.startswith("(1 2 3 4 5 (6 7") and out.endswith(f"{n})({n + 1}))")


SUBJECTS = ["a", "Re: a", "A (fwd)", "[fwd: a]", "b", "Re: b", "", "Fwd: Re: c", "c"]
IDS = [f"<{c}>" for c in "abcdefgh"]

message_st = st.tuples(
    st.sampled_from(SUBJECTS),
    st.sampled_from(["", *IDS]),  # "" no Message-ID; ids repeat: duplicates
    st.lists(st.sampled_from(IDS), max_size=4),  # loops, self-references, missing parents
    st.sampled_from([None, 1.0, 2.0, 3.0]),  # ties and no Date (INTERNALDATE)
)


@settings(max_examples=400, deadline=None)
@given(st.lists(message_st, max_size=25))
def test_the_same_threads_as_the_reference(
    messages: list[tuple[str, str, list[str], float | None]],
) -> None:
    """Answer for answer what the frozen reference (threading_reference.py) gives."""
    items = [
        item(i, s, mid, " ".join(refs), date) for i, (s, mid, refs, date) in enumerate(messages, 1)
    ]
    for algo, ref in (
        (references, reference.references),
        (ordered_subject, reference.ordered_subject),
    ):
        want = "".join("(" + reference.render(r, False) + ")" for r in ref(items))
        assert threads(algo(items)) == want

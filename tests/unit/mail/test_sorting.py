"""A kept SORT order (`Ordered`) changed by arrivals and expunges is the order a fresh SORT of
the remaining messages gives, for any criteria, and restricted to any subset it is that subset's
SORT (which is how one kept order answers a SORT of any search)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.mail.sorting import (
    FIELD_KEYS,
    Criterion,
    Item,
    Ordered,
    key_of,
    sort_items,
)
from carteiro.mime.sortkeys import SortFields


def item(uid: int, subject: str, sender: str, size: int, date: float | None) -> Item:
    fields = SortFields(subject, False, sender, "", "", sender.upper(), "", date, "", ())
    return Item(uid, uid, size, float(uid % 4), fields)


fields_st = st.tuples(
    st.sampled_from(["", "a", "B", "b", "Éclair", "eclair", "ß"]),
    st.sampled_from(["", "x", "Y", "y"]),
    st.integers(0, 3),
    st.sampled_from([None, 0.0, 1.0, 2.5]),
)
criteria_st = st.lists(
    st.builds(Criterion, st.sampled_from(sorted(FIELD_KEYS)), st.booleans()),
    min_size=1,
    max_size=3,
)


def fresh(items: list[Item], criteria: list[Criterion]) -> list[int]:
    return [it.uid for it in sort_items(items, criteria)]


def build(items: list[Item], criteria: list[Criterion]) -> Ordered:
    key = key_of(criteria)
    items = sorted(items, key=lambda it: it.uid)
    return Ordered.build(
        criteria,
        [it.uid for it in items],
        [key(it.fields, it.size, it.arrival) for it in items],
    )


@settings(max_examples=300, deadline=None)
@given(
    fields=st.lists(fields_st, min_size=0, max_size=40),
    criteria=criteria_st,
    data=st.data(),
)
def test_a_kept_order_changed_is_a_fresh_sort(
    fields: list[tuple[str, str, int, float | None]],
    criteria: list[Criterion],
    data: st.DataObject,
) -> None:
    items = {uid: item(uid, *f) for uid, f in enumerate(fields, start=1)}
    uids = sorted(items)
    first = data.draw(st.sets(st.sampled_from(uids))) if uids else set()
    order = build([items[u] for u in first], criteria)
    assert list(order.uids) == fresh([items[u] for u in sorted(first)], criteria)
    gone = data.draw(st.sets(st.sampled_from(sorted(first)))) if first else set()
    key = key_of(criteria)
    changed = order.changed(
        [
            (u, key(items[u].fields, items[u].size, items[u].arrival))
            for u in uids
            if u not in first
        ],
        gone,
    )
    now = [u for u in uids if u not in gone]
    assert list(changed.uids) == fresh([items[u] for u in now], criteria)
    assert list(order.uids) == fresh([items[u] for u in sorted(first)], criteria)  # unchanged
    # any subset: the kept order restricted to it
    subset = data.draw(st.sets(st.sampled_from(now))) if now else set()
    assert [u for u in changed.uids if u in subset] == fresh(
        [items[u] for u in now if u in subset], criteria
    )


def test_ties_keep_mailbox_order_in_both_directions() -> None:
    items = [item(uid, "same", "x", 1, 1.0) for uid in (3, 5, 9)]
    for rev in (False, True):
        crit = [Criterion("SUBJECT", rev)]
        order = build(items[:2], crit)
        key = key_of(crit)
        it = items[2]
        assert list(order.changed([(9, key(it.fields, it.size, it.arrival))], ()).uids) == [
            3,
            5,
            9,
        ]

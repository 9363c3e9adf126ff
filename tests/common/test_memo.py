"""BoundedMemo: bounded, and at the limit only the oldest entry goes (never everything at once)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.memo import BoundedMemo


def test_the_oldest_entry_makes_room_for_a_new_one():
    memo: BoundedMemo[str, int] = BoundedMemo(3)
    for i, key in enumerate("abc"):
        memo.put(key, i)
    memo.put("d", 3)
    assert len(memo) == 3
    assert memo.get("a") is None and [memo.get(k) for k in "bcd"] == [1, 2, 3]
    memo.put("b", 10)  # an existing key is replaced in place: nothing evicted
    assert len(memo) == 3 and memo.get("b") == 10 and memo.get("c") == 2


@given(st.integers(1, 20), st.lists(st.integers(0, 40), max_size=200))
def test_it_holds_exactly_the_latest_distinct_keys_up_to_its_limit(limit, keys):
    memo: BoundedMemo[int, int] = BoundedMemo(limit)
    inserted: list[int] = []  # first-insertion order of the keys still held, as a model
    for key in keys:
        memo.put(key, key)
        if key not in inserted:
            inserted.append(key)
            inserted = inserted[-limit:]
    assert len(memo) == len(inserted) <= limit
    assert all(memo.get(k) == k for k in inserted)
    assert all(memo.get(k) is None for k in set(keys) - set(inserted))


def test_a_memo_holds_at_least_one_entry():
    with pytest.raises(ValueError):
        BoundedMemo(0)

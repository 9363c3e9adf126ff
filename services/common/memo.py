"""A bounded in-process memory: at the limit the oldest entry makes room for the new one.

The verify hot path remembers per QR what it worked out (services.verify_svc). At a checkpoint nearly
every scan is a new QR, so such a memory is always full: clearing it all at the limit freed 10,000
entries (about 100,000 objects) in one go, a pause of tens of milliseconds in every process every few
seconds under load. Evicting one entry per insertion spreads that cost evenly, O(1) each
(OrderedDict.popitem(last=False))."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("a memo holds at least one entry")
        self._limit = limit
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Remembers `value` (replacing an entry of the same key in place); evicts the oldest at the limit."""
        entries = self._entries
        if key not in entries and len(entries) >= self._limit:
            entries.popitem(last=False)
        entries[key] = value

    def __len__(self) -> int:
        return len(self._entries)

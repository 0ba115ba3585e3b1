"""Keys seen within a time window, in memory and bounded: what is new, and what is a repeat."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class Recent:
    """Remembers keys for `window` seconds, at most `capacity` of them (the oldest go first)."""

    def __init__(self, window: float, capacity: int) -> None:
        self._window = window
        self._capacity = capacity
        # key → when it was first seen; oldest first.
        self._seen: OrderedDict[Hashable, float] = OrderedDict()

    def first(self, key: Hashable, now: float) -> bool:
        """True, and the key is remembered, unless it was seen within the window."""
        seen = self._seen
        while seen and (
            len(seen) >= self._capacity or next(iter(seen.values())) <= now - self._window
        ):
            seen.popitem(last=False)
        if key in seen:
            return False
        seen[key] = now
        return True

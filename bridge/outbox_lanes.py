"""What the outbox dispatcher holds in memory: lanes, the two streams, the bulk rows' feed."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from storage import Job

# Rate keys with this prefix have no limit: they let a handler hold every row carrying one at
# once (`Held`), e.g. all rows of a paused broadcast. They are not the platform's keys.
HOLD_PREFIX = "hold:"


def platform_keys(keys: Sequence[str]) -> Sequence[str]:
    """A row's rate keys without its hold keys (they run from the account's to the
    recipient's, see Connector.rate_keys)."""
    if not any(k.startswith(HOLD_PREFIX) for k in keys):
        return keys
    return [k for k in keys if not k.startswith(HOLD_PREFIX)]


def account_of(job: Job) -> str:
    """The account a bulk row is sent from: its first platform rate key."""
    keys = platform_keys(job.rate_keys)
    return keys[0] if keys else ""


@dataclass(slots=True)
class Lane:
    """Rows of one lane, sent one after another in id order."""

    jobs: deque[Job]
    name: str
    group: str = ""
    busy: bool = False
    waited: bool = False


@dataclass(slots=True)
class Stream:
    """Conversation traffic or bulk rows: lanes, schedule and task slots of one kind."""

    bulk: bool
    window: int
    concurrency: int
    reserve: float
    lanes: dict[str, Lane] = field(default_factory=dict)
    # (when, seq, is_key, name): a lane to try at `when`, or a rate key whose parked lanes to try.
    heap: list[tuple[float, int, bool, str]] = field(default_factory=list)
    # Lanes waiting for a rate key's tokens, in the order they found it empty; `armed`: the keys
    # that have their entry in `heap`. One entry per key, instead of one per waiting lane that
    # would all wake together for one token.
    parked: dict[str, deque[str]] = field(default_factory=dict)
    armed: set[str] = field(default_factory=set)
    running: int = 0
    loaded: int = 0
    cursor: int = 0
    more: bool = True  # the last read filled its chunk: read on
    seen: int = -1  # `Dispatcher._notified` when the last read started
    polled: float = -math.inf  # when the last read (of new rows) ran


class BulkFeed:
    """Which pending bulk rows to hold: up to `quota` per account, each with its own cursor.

    A broadcast to several accounts mixes their rows. With one window in id order, a slow
    account's rows would fill it and hold a fast account to the slow one's pace. Here every row
    of an account up to its cursor is held or finished; a read runs from a cursor through the
    rows in id order, and an account that is full skips the rest of its rows in that read (its
    cursor stays before the first it skipped), to be read again from its cursor once it has room.
    Every row up to `frontier` has been seen by some read.
    """

    def __init__(self, quota: int) -> None:
        self.quota = quota
        self.frontier = 0
        self.cursor: dict[str, int] = {}
        self.held: dict[str, int] = {}

    def lagging(self) -> int | None:
        """Where to read again for an account that skipped rows and has room now, if any."""
        low: int | None = None
        for group, cursor in self.cursor.items():
            if cursor < self.frontier and self.held[group] <= self.quota // 2:
                low = cursor if low is None else min(low, cursor)
        return low

    def room_at_frontier(self) -> bool:
        """Whether new rows may be held: an account is up to date and has room, or none is known."""
        if not self.cursor:
            return True
        return any(
            cursor >= self.frontier and self.held[group] < self.quota
            for group, cursor in self.cursor.items()
        )

    def take(self, rows: Sequence[Job], start: int, complete: bool) -> list[Job]:
        """The rows of a read after `start` to hold; `complete`: it reached the last pending row."""
        before = self.frontier
        blocked: set[str] = set()
        taken: list[Job] = []
        for job in rows:
            group = account_of(job)
            cursor = self.cursor.get(group)
            if cursor is None:
                # Every row up to the frontier was seen: none of this account lies before this one.
                cursor = self.cursor[group] = job.id - 1
                self.held[group] = 0
            if cursor < start or job.id <= cursor:
                continue  # the read does not reach back to its cursor, or the row is held already
            if group in blocked or self.held[group] >= self.quota:
                blocked.add(group)
                continue
            self.cursor[group] = job.id
            self.held[group] += 1
            taken.append(job)
        end = rows[-1].id if rows else start
        if complete:
            end = max(end, before)
        for group, cursor in self.cursor.items():
            if group not in blocked and start <= cursor < end:
                self.cursor[group] = end
        self.frontier = max(before, end)
        return taken

    def done(self, group: str, count: int) -> None:
        """Rows of an account left the window."""
        self.held[group] -= count

    # With leases (several processes) rows are read from the start each time, minus those
    # any live process holds: no cursors, only each account's share of the window.

    def full(self) -> list[str]:
        """Accounts whose share of the window is full."""
        return [group for group, held in self.held.items() if held >= self.quota]

    def has_room(self) -> bool:
        """Whether some account (known or not) may hold more rows."""
        return not self.held or any(held < self.quota for held in self.held.values())

    def pick(self, rows: Sequence[Job]) -> list[Job]:
        """The rows to hold, up to each account's share; counted as held."""
        taken: list[Job] = []
        for job in rows:
            group = account_of(job)
            held = self.held.get(group, 0)
            if held < self.quota:
                self.held[group] = held + 1
                taken.append(job)
        return taken

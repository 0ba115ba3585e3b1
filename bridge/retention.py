"""Periodic clean-up of what the bridge no longer needs to keep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial

from storage import Database, Tx

log = logging.getLogger(__name__)
DAY = 86_400.0
EVERY = 3600.0  # seconds between sweeps
BATCH = 1000  # rows looked at per transaction: short transactions, the writer is not held up


def _empty_batch(tx: Tx, *, before: float, after_id: int) -> tuple[int, int] | None:
    return tx.retention.empty_done_payloads(before=before, after_id=after_id, limit=BATCH)


class PayloadRetention:
    """Empties the payload of outbox rows done for longer than `keep_days` (the texts, chat
    ids and names they carried); the rows stay, their ids must never come back."""

    def __init__(
        self,
        db: Database,
        keep_days: float,
        *,
        clock: Callable[[], float] = time.time,
        every: float = EVERY,
    ) -> None:
        self._db = db
        self.keep_days = keep_days
        self._clock = clock
        self._every = every
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> int:
        """One pass over the done rows (in batches, id order); returns how many payloads were
        emptied."""
        before = self._clock() - self.keep_days * DAY
        after, emptied = 0, 0
        while True:
            done = await self._db.write_tx(partial(_empty_batch, before=before, after_id=after))
            if done is None:
                return emptied
            after, emptied = done[0], emptied + done[1]

    async def start(self) -> None:
        """Sweep now and then every hour."""
        self._task = asyncio.create_task(self._run(), name="outbox-retention")

    async def stop(self) -> None:
        """Stop sweeping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                emptied = await self.sweep()
                if emptied:
                    log.info("emptied the payloads of %s finished outbox rows", emptied)
            except Exception:
                log.warning(
                    "emptying finished outbox rows failed; trying again later", exc_info=True
                )
            await asyncio.sleep(self._every)

"""What every outbox handler of the pipeline's rows shares."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.errors import PermanentError
from bridge.pipeline.directory import Directory
from storage import Completion, Job


class Handler:
    """Shared defaults: no coalescing, and a failure is recorded with its reason."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def coalesce(self, head: Job, following: Sequence[Job]) -> int:
        """How many of the rows following `head` it carries out too: none."""
        return 0

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        """Record the rows as failed for good, with the reason."""
        return Completion([j.id for j in jobs], failed_reason=str(error))

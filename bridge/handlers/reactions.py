"""Outbox handler that shows a customer's reactions on the posts of the message they are on."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.errors import TransientError
from bridge.handlers.base import Handler
from bridge.jobs import StaffReactJob
from bridge.types import ReactionChange, StaffMessageRef
from storage import Completion, Job, Tx

# A line in the thread names the message reacted to by its start.
ON_MAX = 80


class ShowReaction(Handler):
    """Add or take away a customer's reactions on a message's posts in a thread: the mirror
    of their own message, or the agent's message (and its echo on another surface)."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        shown = StaffReactJob.from_job(job)
        surface = self.directory.surface(shown.surface)
        message_id = shown.message

        def read(tx: Tx) -> tuple[list[StaffMessageRef], str]:
            message = tx.message(message_id)
            refs = [
                ref
                for kind in ("origin", "mirror")
                for s, ref in tx.refs_of(message_id, kind)
                if s == surface.name
            ]
            return refs, message.text if message is not None else ""

        refs, text = await self.directory.db.read_tx(read)
        if not refs:
            return Completion([job.id])  # not shown in this thread (kept out, or erased)
        thread = await self.directory.thread(shown.conversation, surface.name)
        if thread is None:
            raise TransientError("the conversation's thread is not open yet")
        change = ReactionChange(
            author=shown.author,
            added=shown.added,
            removed=shown.removed,
            customer=shown.customer,
            on=text if len(text) <= ON_MAX else text[: ON_MAX - 1].rstrip() + "…",
            marker=str(job.id),
            again=job.attempts > 0,
        )
        # A surface adds a reaction twice as once and takes away what is not there as done, and
        # looks for its line in the thread before posting it again, so a row carried out again
        # after a crash changes nothing.
        for ref in dict.fromkeys(refs):
            await surface.react(thread, ref, change)
        return Completion([job.id])

"""Outbox handlers that show something in a staff thread: open it, mirror customer messages
and their edits, refresh the contact card, mark delivery statuses, post notices, and tell one
staff member something privately."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.errors import PermanentError, TooLarge, TransientError
from bridge.handlers.base import Handler
from bridge.jobs import (
    JobKind,
    StaffCardJob,
    StaffEditJob,
    StaffMarkJob,
    StaffNoticeJob,
    StaffOpenJob,
    StaffPostJob,
    StaffTellJob,
)
from bridge.mirror import post_in_pieces
from bridge.pipeline.attachments import attachment
from bridge.protocols import StaffSurface
from bridge.types import (
    ConversationId,
    MessageId,
    MirrorPost,
    StaffMessageRef,
    StaffUserId,
    SurfaceName,
    ThreadRef,
)
from storage import Completion, Job, MessageRecord, NewJob, Tx, quote_key

log = logging.getLogger(__name__)


def mirror_text(text: str, attachments: Sequence[Mapping[str, Any]]) -> str:
    """What a customer message shows in the thread when it has no text of its own."""
    if text or not attachments:
        return text
    return ", ".join(f"[{a.get('filename') or a['kind']}]" for a in attachments)


class OpenThread(Handler):
    """Open a conversation's thread, with its contact card as the root."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        opening = StaffOpenJob.from_job(job)
        conv, channel = opening.conversation, opening.channel
        surface = self.directory.surface(opening.surface)
        existing = await self.directory.thread(conv, surface.name)
        if existing is not None:
            return Completion([job.id])
        if job.attempts:
            # Attempted before a crash or a timeout: the root may be in the channel already.
            found = await surface.find_thread(channel, str(job.id))
            if found is not None:
                self.directory.remember_thread(conv, surface.name, found)
                return Completion([job.id], threads=[(conv, surface.name, found)])
        card = await self.directory.card(conv, surface)
        if card is None:
            return Completion([job.id], failed_reason="the conversation no longer exists")
        thread = await surface.open_thread(card, channel, marker=str(job.id))
        self.directory.remember_thread(conv, surface.name, thread)
        return Completion([job.id], threads=[(conv, surface.name, thread)])


class Mirror(Handler):
    """Customer messages into the thread: joined while a backlog waits, within the platform's
    size limit; a text past it is posted in pieces; a loss is told in the thread."""

    def coalesce(self, head: Job, following: Sequence[Job]) -> int:
        first = StaffPostJob.from_job(head)
        if first.files or first.quote or first.answers or head.attempts:
            return 0  # a file, or a reply with its quote, is shown on its own
        surface = self.directory.surface(first.surface)
        limit = self.directory.settings.slack.coalesce_max - 1
        author = first.author
        # Joined only while the post stays under the platform's size limit: past it (Slack's
        # 40,000 characters, a Matrix event's 64 KiB) the whole post is refused. Sizes add up
        # text by text (escaping and JSON encoding go character by character), so each
        # message is measured once rather than the whole joined post again for every one.
        empty = surface.post_size(MirrorPost(author=author, text=""))
        size = surface.post_size(MirrorPost(author=author, text=post_text(first)))
        count = 0
        for job in following[:limit]:
            if job.kind != JobKind.STAFF_POST:
                break
            post = StaffPostJob.from_job(job)
            if post.files or post.quote or post.answers or job.attempts:
                break
            if post.origin or first.origin:
                break  # a staff member's words stay under their own name
            size += surface.post_size(MirrorPost(author=author, text="\n" + post_text(post)))
            size -= empty
            if size > surface.post_limit:
                break
            count += 1
        return count

    async def run(self, jobs: Sequence[Job]) -> Completion:
        head = jobs[0]
        first = StaffPostJob.from_job(head)
        conv = first.conversation
        surface = self.directory.surface(first.surface)
        thread = await self.directory.thread(conv, surface.name)
        opened: list[tuple[ConversationId, SurfaceName, ThreadRef]] = []
        if thread is None:
            # No open job went ahead in this lane: the conversation's first messages were not
            # shown (a rule kept them out, or the contact was blocked). Open it now.
            card = await self.directory.card(conv, surface)
            if card is None:
                return Completion(
                    [j.id for j in jobs], failed_reason="the conversation no longer exists"
                )
            channel = self.directory.route(surface.name, card.platform, card.account or "")
            marker = f"open-c{conv}"
            earlier = await surface.find_thread(channel, marker) if head.attempts else None
            thread = earlier or await surface.open_thread(card, channel, marker=marker)
            self.directory.remember_thread(conv, surface.name, thread)
            opened.append((conv, surface.name, thread))
        if head.attempts:
            # This row was attempted before a crash or a timeout: it may be in the thread already.
            found = await surface.find_post(thread, str(head.id))
            if found is not None:
                log.info("outbox %s was already posted as %s; not posting again", head.id, found)
                return Completion(
                    [head.id],
                    threads=opened,
                    refs=[(surface.name, found, "mirror", first.message)],
                )
        posts = [first, *(StaffPostJob.from_job(j) for j in jobs[1:])]
        post = await self._post_of(jobs, posts)
        if len(jobs) > 1:
            try:
                ref = await surface.post(thread, post)
            except TooLarge as exc:
                # The platform counts differently: show each message on its own, cut smaller.
                log.info("outbox staff.post %s refused as too large (%s); one by one", head.id, exc)
                return await self._one_by_one(surface, thread, jobs, opened)
            return Completion(
                [j.id for j in jobs],
                threads=opened,
                refs=[(surface.name, ref, "mirror", shown.message) for shown in posts],
            )
        resume = head.attempts > 0
        ref = await post_in_pieces(surface, thread, post, surface.post_limit, resume=resume)
        return Completion(
            [head.id], threads=opened, refs=[(surface.name, ref, "mirror", first.message)]
        )

    async def _post_of(self, jobs: Sequence[Job], posts: Sequence[StaffPostJob]) -> MirrorPost:
        """One post showing `jobs` (several only when text alone), whose payloads are `posts`."""
        first = posts[0]
        files = []
        for f in first.files:
            if first.origin:  # a file staff attached on the other surface
                files.append(await self.directory.surface(first.origin).fetch(attachment(f)))
                continue
            connector = self.directory.connector(first.platform or "", first.account or "")
            files.append(await connector.fetch(attachment(f)))
        text = "\n".join(post_text(shown) for shown in posts)
        if files and not first.text:
            text = ""
        chat = first.chat
        reply_to = await self._answered(first) if first.answers is not None else None
        return MirrorPost(
            author=first.author,
            text=text,
            files=tuple(files),
            marker=",".join(str(j.id) for j in jobs),
            customer=f"{first.platform}_{chat}" if chat and not first.origin else None,
            quote=first.quote,
            reply_to=reply_to,
        )

    async def _answered(self, post: StaffPostJob) -> StaffMessageRef | None:
        """The post in this thread of the message `post` answers (the customer's mirrored
        message, or the agent's own message or its echo), if it is shown there."""
        answered, surface = post.answers, post.surface

        def read(tx: Tx) -> StaffMessageRef | None:
            assert answered is not None
            for kind in ("origin", "mirror"):
                for s, ref in tx.refs_of(answered, kind):
                    if s == surface:
                        return ref
            return None

        return await self.directory.db.read_tx(read)

    async def _one_by_one(
        self,
        surface: StaffSurface,
        thread: ThreadRef,
        jobs: Sequence[Job],
        opened: list[tuple[ConversationId, SurfaceName, ThreadRef]],
    ) -> Completion:
        """Each of `jobs` in its own post(s); the ones that still fail are told in the thread."""
        refs: list[tuple[SurfaceName, StaffMessageRef, str, MessageId]] = []
        lost: list[Job] = []
        reason = ""
        for job in jobs:
            shown = StaffPostJob.from_job(job)
            post = await self._post_of([job], [shown])
            try:
                ref = await post_in_pieces(surface, thread, post, surface.post_limit, resume=False)
            except PermanentError as exc:
                lost.append(job)
                reason = exc.reason
                log.warning("outbox staff.post %s failed for good: %s", job.id, exc)
                continue
            refs.append((surface.name, ref, "mirror", shown.message))
        if len(lost) == len(jobs):
            raise PermanentError("mirror_failed", reason)
        lost_ids = [j.id for j in lost]

        def record_lost(tx: Tx) -> list[NewJob]:
            tx.finish(lost_ids, time.time(), f"not shown: {reason}"[:500])
            return []

        return Completion(
            [j.id for j in jobs],
            threads=opened,
            refs=refs,
            jobs=[self._lost_notice(lost, reason)] if lost else [],
            also=[record_lost] if lost else [],
        )

    def _lost_notice(self, lost: Sequence[Job], reason: str) -> NewJob:
        """The thread's notice that `lost` messages could not be shown there, and why."""
        head = lost[0]
        first = StaffPostJob.from_job(head)
        who = first.author or "the customer"
        count = len(lost)
        text = (
            f"{count} message{'s' if count != 1 else ''} from {who} could not be shown here:"
            f" {reason}"
        )
        return self.directory.notice_job(first.conversation, first.surface, f"lost:{head.id}", text)

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        return Completion(
            [j.id for j in jobs],
            failed_reason=str(error),
            jobs=[self._lost_notice(jobs, error.reason)],
        )


def post_text(post: StaffPostJob) -> str:
    """What a mirror row shows in the thread as text: with the customer's formatting."""
    return mirror_text(post.styled or post.text, post.files)


def shown_text(
    messages: Sequence[MessageRecord], styled: Mapping[MessageId, str] | None = None
) -> str:
    """What a mirror post of stored messages shows as text, one line per message (`styled`:
    the formatted text of those whose formatting is known)."""
    known = styled or {}
    return "\n".join(mirror_text(known.get(m.id) or m.text, m.attachments) for m in messages)


class CardRefresh(Handler):
    """Redraw the contact card at the root of a thread."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        refresh = StaffCardJob.from_job(job)
        conv = refresh.conversation
        surface = self.directory.surface(refresh.surface)
        thread = await self.directory.thread(conv, surface.name)
        card = await self.directory.card(conv, surface)
        if thread is not None and card is not None:
            await surface.update_root(thread, card)
        return Completion([job.id])


class MirrorEdit(Handler):
    """Show a customer's edit in the thread, in place where it fits."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        edit = StaffEditJob.from_job(job)
        surface = self.directory.surface(edit.surface)
        message_id = edit.message

        def read(tx: Tx) -> list[tuple[StaffMessageRef, list[MessageRecord], str | None]]:
            found = []
            for s, ref in tx.refs_of(message_id, "mirror"):
                if s == surface.name:
                    shown = tx.messages_behind(surface.name, ref)
                    # A reply is posted on its own: its quote is shown again above the edit.
                    quote = tx.kv_get(quote_key(shown[0].id)) if len(shown) == 1 else None
                    found.append((ref, shown, quote))
            return found

        posts = await self.directory.db.read_tx(read)
        # Only the edited message's formatting travels with the edit; the others of a joined
        # post show as stored.
        styled = {message_id: edit.styled} if edit.styled else {}
        for n, (ref, shown, quote) in enumerate(posts):
            if not shown:
                continue
            edited = any(m.edited for m in shown)
            text = shown_text(shown, styled)
            post = MirrorPost(author=shown[0].author or "", text=text, edited=edited, quote=quote)
            if surface.post_size(post) <= surface.post_limit:
                try:
                    await surface.edit_post(ref, post)
                    continue
                except TooLarge:
                    pass
            # Too long to show in place (joined with other messages, or grown by the edit, past
            # the platform's size limit): the edited message follows in the thread instead.
            thread = await self.directory.thread(shown[0].conversation_id, surface.name)
            mine = [m for m in shown if m.id == message_id] or shown
            again = MirrorPost(
                author=post.author,
                text="(edited) " + shown_text(mine, styled),
                marker=f"edit{job.id}-{n}",
                quote=quote,
            )
            if thread is not None:
                await post_in_pieces(
                    surface, thread, again, surface.post_limit, resume=job.attempts > 0
                )
        return Completion([job.id])


class StatusMark(Handler):
    """Show a delivery status on a staff message."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        mark = StaffMarkJob.from_job(job)
        surface = self.directory.surface(mark.surface)
        await surface.mark(StaffMessageRef(mark.ref), mark.status)
        return Completion([job.id])


class Notice(Handler):
    """Post a notice from the bridge in a conversation's thread."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        notice = StaffNoticeJob.from_job(job)
        surface = self.directory.surface(notice.surface)
        thread = await self.directory.thread(notice.conversation, surface.name)
        if thread is None:
            raise TransientError("the conversation's thread is not open yet")
        await surface.notice(thread, notice.text)
        return Completion([job.id])


class Tell(Handler):
    """Tell one staff member something only they see."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        tell = StaffTellJob.from_job(job)
        surface = self.directory.surface(tell.surface)
        await surface.tell(
            ThreadRef(tell.thread),
            StaffUserId(tell.user) if tell.user else None,
            StaffMessageRef(tell.ref),
            tell.text,
        )
        return Completion([job.id])

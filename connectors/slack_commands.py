"""Commands on Slack: `!word` in a thread, slash commands, the buttons of a contact card and
submitted forms; each becomes a Request for `commands` and its Reply goes back where it was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from slack_sdk.web.async_client import AsyncWebClient

from bridge.errors import PermanentError
from bridge.protocols import CommandRunner
from bridge.staffio import Reply, Request
from bridge.types import StaffMessage, StaffMessageRef, StaffUserId, ThreadRef
from connectors.slack_blocks import (
    NotOurForm,
    form_block,
    form_view,
    mrkdwn,
    reply_blocks,
    submitted,
)
from connectors.slack_events import SLACK, split_ref, string_at
from connectors.slack_teams import Origin, command_origin, interaction_origin
from connectors.slack_text import command_text
from connectors.staff import Names, SeenIds, says_something

log = logging.getLogger(__name__)

# Slack shows the person an error unless a slash command is answered within 3 seconds; work
# that takes longer answers "working on it" and follows up through the response_url.
SLASH_ANSWER_WITHIN = 2.5
SEEN_COMMANDS = 2048
# Where the thread commands already run are kept: Slack delivers an event again when its
# answer was slow, and may do so after a restart.
SEEN_KEY = "thread_commands"


class Stranger(Protocol):
    """Whether a request's author is not of a workspace the bridge serves."""

    async def __call__(self, user: str | None, *origins: Origin) -> bool:
        """True for an author who has role none."""
        ...


class SlackCommands:
    """Runs what staff ask of the bridge on Slack and answers them there."""

    def __init__(
        self,
        client: AsyncWebClient,
        commands: CommandRunner,
        names: Names,
        stranger: Stranger,
        seen: SeenIds,
    ) -> None:
        self.client = client
        self._commands = commands
        self._names = names
        self._stranger = stranger
        self._seen = seen
        self._late: set[asyncio.Task[None]] = set()

    async def finish(self) -> None:
        """Let slow slash commands answer (briefly); cancel what is still running then."""
        if self._late:
            _, pending = await asyncio.wait(set(self._late), timeout=5)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def in_thread(self, message: StaffMessage, line: str) -> None:
        """Run a `!word` typed in a thread (`line` without its `!`) and answer in the thread."""
        if not await self._seen.first(message.ref):
            return
        channel, _ = split_ref(message.thread)
        request = Request(
            surface=SLACK,
            user=message.author,
            user_name=await self._names.of(message.author),
            text=line,
            channel=channel,
            thread=message.thread,
            ref=message.ref,
            stranger=message.stranger,
            private_answers=True,  # chat.postEphemeral in the thread
        )
        reply = await self._commands(request)
        await self._answer_in_thread(message.thread, reply, message.author)

    async def on_slash(
        self,
        ack: Callable[..., Awaitable[Any]],
        command: dict[str, Any],
        respond: Callable[..., Awaitable[Any]],
    ) -> None:
        """A slash command: run it and answer (only the caller sees it unless it is public)."""
        name = str(command.get("command", "")).lstrip("/")
        user = StaffUserId(str(command.get("user_id", "")))
        request = Request(
            surface=SLACK,
            user=user,
            user_name=await self._names.of(user) or command.get("user_name"),
            # Slack escapes &, < and > in the text and sends links as <https://…>; mentions
            # arrive as <@U123|name>.
            text=f"{name} {command_text(str(command.get('text', '')))}".strip(),
            channel=command.get("channel_id"),
            stranger=await self._stranger(user, command_origin(command)),
            private_answers=True,  # an ephemeral answer
        )
        trigger = str(command.get("trigger_id") or "") or None
        work = asyncio.ensure_future(self._slash_answer(request, trigger))
        done, _ = await asyncio.wait({work}, timeout=SLASH_ANSWER_WITHIN)
        if work in done:
            await ack(**work.result())
            return
        await ack(response_type="ephemeral", text=f"Working on `/{mrkdwn(name)}`…")
        late = asyncio.ensure_future(self._respond_later(work, respond))
        self._late.add(late)
        late.add_done_callback(self._late.discard)

    async def _slash_answer(self, request: Request, trigger: str | None = None) -> dict[str, Any]:
        reply = await self._commands(request)
        if reply.form is not None and trigger:
            try:
                await self.client.views_open(
                    trigger_id=trigger, view=form_view(reply.form, request.channel)
                )
            except Exception as exc:  # an expired trigger, say: answer with the text instead
                log.info("Slack: the form could not be opened: %r", exc)
            else:
                return {}
        if reply.private:
            reply = await self._file_to_dm(request.user, reply)
        text, blocks = reply_blocks(reply)
        if reply.file is not None and request.channel and not reply.private:
            problem = await self._share_file(request.channel, None, reply)
            if problem:
                text, blocks = reply_blocks(
                    Reply(
                        ok=False,
                        title=reply.title,
                        lines=(*reply.lines, problem),
                        fields=reply.fields,
                    )
                )
        kind = "in_channel" if reply.public else "ephemeral"
        return {"response_type": kind, "text": text, "blocks": blocks}

    async def _respond_later(
        self, work: asyncio.Future[dict[str, Any]], respond: Callable[..., Awaitable[Any]]
    ) -> None:
        try:
            answer = await work
            if not answer:  # a form opened instead: nothing to say, so the placeholder goes
                await respond(delete_original=True)
            else:
                await respond(replace_original=True, **answer)
        except Exception:
            log.exception("Slack: a slow slash command could not be answered")

    async def on_action(
        self, ack: Callable[..., Awaitable[Any]], body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        """A button on a contact card: run its thread action as the person who pressed it."""
        await ack()
        channel = string_at(body, "container", "channel_id") or string_at(body, "channel", "id")
        ts = string_at(body, "container", "message_ts") or string_at(body, "message", "ts")
        user = StaffUserId(string_at(body, "user", "id"))
        if not channel or not ts or not user:
            return
        thread = ThreadRef(f"{channel}/{ts}")
        request = Request(
            surface=SLACK,
            user=user,
            user_name=await self._names.of(user),
            text=string_at(action, "value"),
            channel=channel,
            thread=thread,
            ref=StaffMessageRef(f"{channel}/action:{string_at(action, 'action_ts')}"),
            stranger=await self._stranger(user, interaction_origin(body)),
            private_answers=True,
        )
        reply = await self._commands(request)
        await self._answer_in_thread(thread, reply, user, private_failure=True)

    async def on_form(
        self, ack: Callable[..., Awaitable[Any]], body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        """A submitted form: run the command line it stands for; problems stay in the form."""
        try:
            line, channel, blocks = submitted(view)
        except NotOurForm as exc:
            log.warning("Slack view submission ignored: %s", exc)
            await ack()
            return
        user = StaffUserId(str((body.get("user") or {}).get("id", "")))
        request = Request(
            surface=SLACK,
            user=user,
            user_name=await self._names.of(user),
            text=line,
            channel=channel,
            stranger=await self._stranger(user, interaction_origin(body)),
            private_answers=True,  # the outcome is told with chat.postEphemeral
        )
        reply = await self._commands(request)
        if not reply.ok:
            await ack(
                response_action="errors",
                errors={form_block(reply.text, blocks): reply.text[:1000]},
            )
            return
        await ack()
        if reply.private:
            reply = await self._file_to_dm(user, reply)
        if channel:
            text, reply_view = reply_blocks(reply)
            try:
                await self.client.chat_postEphemeral(
                    channel=channel, user=user, text=text, blocks=reply_view
                )
            except Exception:
                log.info("Slack: could not tell %s the form's outcome in %s", user, channel)

    async def _answer_in_thread(
        self, thread: ThreadRef, reply: Reply, user: str, *, private_failure: bool = False
    ) -> None:
        """Post a command's reply in the thread; a refused button press, and every private
        reply, only to the person who asked (its file in a direct message)."""
        if not says_something(reply):
            return  # e.g. a note or a template: the command's own message says it all
        channel, thread_ts = split_ref(thread)
        if reply.private:
            private_failure = True
            reply = await self._file_to_dm(user, reply)
        elif reply.file is not None:
            problem = await self._share_file(channel, thread_ts, reply)
            if not problem:
                return
            reply = Reply(ok=False, title=reply.title, lines=(*reply.lines, problem))
        text, blocks = reply_blocks(reply)
        try:
            if private_failure and (reply.private or not reply.ok):
                await self.client.chat_postEphemeral(
                    channel=channel, user=user, thread_ts=thread_ts, text=text, blocks=blocks
                )
            else:
                await self.client.chat_postMessage(
                    channel=channel, thread_ts=thread_ts, text=text, blocks=blocks
                )
        except Exception:
            log.exception("Slack: a command's answer could not be posted in %s", thread)

    async def _upload(self, reply: Reply, channel: str, thread_ts: str | None = None) -> None:
        """Upload a reply's file, its title and lines as the comment (files.uploadV2)."""
        assert reply.file is not None
        comment, _ = reply_blocks(Reply(title=reply.title, lines=reply.lines))
        name = reply.file.filename
        await self.client.files_upload_v2(
            file_uploads=[{"content": reply.file.data, "filename": name, "title": name}],
            channel=channel,
            thread_ts=thread_ts,
            initial_comment=comment,
        )

    async def _share_file(self, channel: str, thread_ts: str | None, reply: Reply) -> str | None:
        """Upload a reply's file into the channel (or thread); the problem in words, if any."""
        assert reply.file is not None
        try:
            await self._upload(reply, channel, thread_ts)
        except Exception as exc:
            log.warning("Slack: could not share %s in %s: %r", reply.file.filename, channel, exc)
            return (
                f"The file {reply.file.filename} could not be posted here; invite the bridge's"
                " app to this channel, or run the command in the bridge's channel."
            )
        return None

    async def _file_to_dm(self, user: str, reply: Reply) -> Reply:
        """A private reply's file, uploaded into the caller's direct messages with the bot
        (conversations.open, scope im:write): an ephemeral answer cannot carry a file, and the
        channel or thread would show it to everyone. The reply without it, saying where it went."""
        if reply.file is None:
            return reply
        try:
            opened = await self.client.conversations_open(users=user)
            dm = str((opened.get("channel") or {}).get("id") or "")
            if not dm:
                raise PermanentError("no_channel", "conversations.open named no channel")
            await self._upload(reply, dm)
        except Exception as exc:
            log.warning("Slack: could not send a private file to %s: %r", user, exc)
            told = (
                "The file could not be sent to you in a direct message, and it is not shared"
                " anywhere else; the bridge's app needs the im:write scope."
            )
            return replace(reply, ok=False, file=None, lines=(*reply.lines, told))
        told = "The file is in your direct messages with the bridge."
        return replace(reply, file=None, lines=(*reply.lines, told))

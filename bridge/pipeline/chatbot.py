"""What the bridge answers by itself: consent words and channel keywords (whole messages that
(un)subscribe the sender), the chatbot rules' book, and the automatic replies they cause."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bridge.config import Settings
from bridge.pipeline.answers import AnswerBatch
from bridge.pipeline.directory import Directory
from bridge.pipeline.policy import Policy
from bridge.rules import Matcher
from bridge.types import (
    AccountId,
    ChatId,
    ContactId,
    ConversationId,
    InboundMessage,
    Platform,
)
from bridge.webhooks import SCOPE_CHANNELS, WebhookEvents
from storage import NewJob, Tx
from storage.subscriptions import BlockRecord, ChannelRecord, fold

# Consent words and keywords are whole messages; longer texts are never looked up.
KEYWORD_MAX = 64
KEYWORD_CACHE_S = 5.0


# Rules are read again at most this often, so a change made by another process is seen soon.
RULES_CACHE_S = 5.0


class RuleBook:
    """The compiled rules, rebuilt when they change (or every few seconds)."""

    def __init__(self, settings: Settings) -> None:
        self.zone = ZoneInfo(settings.rules.timezone)
        self._cache: tuple[float, tuple[Any, ...], Matcher] | None = None

    def matcher(self, tx: Tx) -> Matcher:
        """The matcher of the stored rules."""
        cached = self._cache
        if cached is not None and time.monotonic() - cached[0] < RULES_CACHE_S:
            return cached[2]
        # Building 1,000 rules takes a good part of a second: only when they changed.
        version = tx.rules.version()
        if cached is not None and cached[1] == version:
            self._cache = (time.monotonic(), version, cached[2])
            return cached[2]
        matcher = Matcher.build(tx.rules.all_rules(), self.zone)
        self._cache = (time.monotonic(), version, matcher)
        return matcher

    def changed(self) -> None:
        """A command changed the rules: build again on the next message."""
        self._cache = None


class Chatbot:
    """Consent words, channel keywords and the rules: what they cause, as outbox rows."""

    def __init__(
        self,
        directory: Directory,
        policy: Policy,
        webhooks: WebhookEvents,
        rulebook: RuleBook,
        clock: Callable[[], datetime],
    ) -> None:
        self.directory = directory
        self.policy = policy
        self.webhooks = webhooks
        self.rulebook = rulebook
        self.clock = clock
        self._keyword_cache: (
            tuple[
                float,
                dict[str, str],
                dict[str, ChannelRecord],
                dict[str, ChannelRecord],
            ]
            | None
        ) = None

    def keywords(
        self,
        tx: Tx,
        platform: Platform,
        account: AccountId,
        fresh: Sequence[InboundMessage],
        contact_of: Mapping[str, ContactId],
        conv_of: Mapping[ContactId, ConversationId],
        blocked: set[ContactId],
        now: datetime,
        answers: AnswerBatch,
    ) -> set[str]:
        """Consent words and channel keywords: whole messages that (un)subscribe the sender;
        their rows and confirmations go to `answers`. Returns the external ids of the
        messages that were such a word."""
        handled: set[str] = set()
        short = [m for m in fresh if m.start_payload or (m.text and len(m.text) <= KEYWORD_MAX)]
        if not short:
            return handled
        words, join, leave = self.keyword_tables(tx)
        for m in short:
            cid = contact_of[m.chat_id]
            said = fold(m.start_payload or m.text)
            first, _, rest = said.partition(" ")
            answer: str | None = None
            if words.get(said) == "stop" or (words.get(first) == "stop" and rest in join):
                channel = join.get(rest) if words.get(said) != "stop" else None
                ended = tx.subscriptions.leave(cid, "STOP", now, channel.id if channel else None)
                if ended and channel is None:
                    answers.extend(self.channels_event(tx, cid, m, ended, opted_in=False))
                if ended:
                    answer = (
                        (
                            channel.leave_reply
                            or f"You have left {channel.name}."
                            f" Send {channel.join_keyword} to join again."
                        )
                        if channel
                        else "You are unsubscribed and will get no more newsletters."
                        " Send START to subscribe again."
                    )
            elif words.get(said) == "start":
                back = tx.subscriptions.rejoin_after_stop(cid, now)
                if back:
                    answers.extend(self.channels_event(tx, cid, m, back, opted_in=True))
                    answer = "Welcome back: you are subscribed again."
            elif said in join and cid not in blocked:
                channel = join[said]
                if tx.subscriptions.join(channel.id, cid, f"keyword {channel.join_keyword}", now):
                    leave_word = channel.leave_keyword or "STOP"
                    answer = channel.join_reply or (
                        f"You have joined {channel.name}. Send {leave_word} to leave."
                    )
            elif said in leave:
                channel = leave[said]
                if tx.subscriptions.leave(cid, f"keyword {channel.leave_keyword}", now, channel.id):
                    answer = channel.leave_reply or f"You have left {channel.name}."
            if said in words or said in join or said in leave or rest in join:
                handled.add(m.external_id)
            if answer is not None and cid not in blocked:
                answers.answer(m.chat_id, cid, conv_of[cid], answer, m.external_id)
        return handled

    def channels_event(
        self, tx: Tx, cid: ContactId, m: InboundMessage, channels: list[int], *, opted_in: bool
    ) -> list[NewJob]:
        """contact.opted_in/out for a STOP or START that ended or restored every channel."""
        return self.webhooks.opted(
            tx,
            cid,
            opted_in=opted_in,
            scope=SCOPE_CHANNELS,
            source=f"replied {m.text.strip().upper()[:20]}",
            cause=f"msg:{m.external_id}",
            channels=channels,
        )

    def keyword_tables(
        self, tx: Tx
    ) -> tuple[
        dict[str, str],
        dict[str, ChannelRecord],
        dict[str, ChannelRecord],
    ]:
        """Consent words and channel keywords, read at most every few seconds."""
        cached = self._keyword_cache
        if cached is not None and time.monotonic() - cached[0] < KEYWORD_CACHE_S:
            return cached[1], cached[2], cached[3]
        words = tx.subscriptions.consent_words()
        join, leave = tx.subscriptions.channels_by_keyword()
        self._keyword_cache = (time.monotonic(), words, join, leave)
        return words, join, leave

    def keywords_changed(self) -> None:
        """Read consent words and channel keywords again (a command changed them)."""
        self._keyword_cache = None

    def rules_changed(self) -> None:
        """Build the chatbot rules again (a command changed them)."""
        self.rulebook.changed()

    def answers(
        self,
        tx: Tx,
        platform: Platform,
        account: AccountId,
        contacts: Collection[ContactId] = (),
        blocks: Mapping[ContactId, BlockRecord] | None = None,
    ) -> AnswerBatch:
        """A batch of automatic answers to `contacts` (read together on the first answer;
        `blocks`: their blacklist entries, when read already)."""
        return AnswerBatch(tx, self.directory, platform, account, self.clock(), contacts, blocks)

    def auto_reply(
        self,
        tx: Tx,
        platform: Platform,
        account: AccountId,
        chat_id: ChatId,
        contact_id: ContactId,
        conv_id: ConversationId,
        text: str,
        cause: str,
        *,
        files: Sequence[Mapping[str, Any]] = (),
        notice: str | None = "",
    ) -> list[NewJob]:
        """One message the bridge sends by itself (a bot's answer), shown to staff as a
        notice: `notice`, by default "Sent automatically: <text>"; None for none."""
        batch = self.answers(tx, platform, account)
        batch.answer(chat_id, contact_id, conv_id, text, cause, files=files, notice=notice)
        return batch.flush()

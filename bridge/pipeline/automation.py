"""Chatbot rules at work: which rules fire for a batch of inbound messages, and the outbox rows
of their actions.

The matching itself is `bridge.rules` (pure); this module adds what needs the database (the
per-contact limits, channels, contact remarks). The forwards (mail, web services, SMS) are
carried out by `bridge.handlers.rule_forwards`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bridge.jobs import RuleHttpJob, RuleMailJob, RuleSmsJob
from bridge.pipeline.answers import AnswerBatch
from bridge.pipeline.chatbot import Chatbot
from bridge.redact import short_url
from bridge.rules import Incoming, fill, fill_url
from bridge.types import (
    AccountId,
    Action,
    ChatId,
    ContactId,
    ConversationId,
    InboundMessage,
    Platform,
    Rule,
)
from storage import Tx
from storage.queries import NewJob
from storage.subscriptions import ChannelRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One stored inbound message, with who sent it and where it belongs."""

    message: InboundMessage
    message_id: int
    contact_id: ContactId
    conversation_id: ConversationId


def placeholder_values(
    arrival: Arrival, remark: str | None, zone: ZoneInfo, info_code: str | None = None
) -> dict[str, str]:
    """Every placeholder's value for one message ({MSG}, {NICKNAME}, …)."""
    m = arrival.message
    at = m.sent_at.astimezone(UTC)
    kinds = [a.kind.value for a in m.attachments]
    return {
        "ID": str(arrival.message_id),
        "MSGID": str(m.external_id),
        "MSG": m.text,
        "CONTACTID": str(arrival.contact_id),
        "CONTACTREMARK": remark or "",
        "MSISDN": str(m.chat_id),
        "NICKNAME": m.profile.display_name,
        "TIMESTAMP": at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
        "UTC": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "MEDIATYPE": kinds[0] if kinds else "text",
        "INFOCODE": info_code or "",
    }


def fires(rule: Rule, last: datetime | None, now: datetime) -> bool:
    """Whether a rule's per-contact limit lets it fire again."""
    if rule.limit == "always" or last is None:
        return True
    if rule.limit == "once":
        return False
    return now - last >= timedelta(seconds=rule.limit_seconds or 0)


def describe(action: Action) -> str:
    """What an action did, in words for the thread."""
    match action.kind:
        case "autoAnswer":
            return "answered automatically"
        case "autoAnswerMedia":
            return "answered with a file"
        case "mailForward":
            return f"forwarded by mail to {action.target}"
        case "webserviceForward":
            return f"forwarded to {short_url(action.target or '')}"
        case "httpBotFwd":
            return f"asked the bot at {short_url(action.target or '')}"
        case "smsFwd":
            return f"forwarded by SMS to {action.target}"
        case "addToChannel":
            return f"added to channel {action.target}"
        case "removeFromChannel":
            return f"removed from channel {action.target}"
        case "i18nStop":
            return "unsubscribed (stop word)"
        case _:
            return "kept out of the thread"


@dataclass(frozen=True, slots=True)
class _Lookups:
    """What the fired rules' actions read, read once for the batch."""

    remarks: dict[int, str]
    file_names: dict[int, str]
    channels: dict[str, ChannelRecord]


def apply_rules(
    bot: Chatbot,
    tx: Tx,
    platform: Platform,
    account: AccountId,
    arrivals: Sequence[Arrival],
    now: datetime,
    answers: AnswerBatch,
) -> set[int]:
    """Fire the rules that match; the rows of their actions go to `answers` (the answers
    themselves stored together with the batch's). Returns which messages (by index in
    `arrivals`) a doNothing rule kept out of the thread."""
    if not arrivals:
        return set()
    matcher = bot.rulebook.matcher(tx)
    if matcher.size == 0:
        return set()
    candidates: list[tuple[int, list[Rule], list[Rule]]] = []
    for index, arrival in enumerate(arrivals):
        found = matcher.match(Incoming(text=arrival.message.text, platform=platform, at=now))
        if found.rules or found.rest:
            candidates.append((index, found.rules, found.rest))
    if not candidates:
        return set()
    pairs = [
        (rule.id, arrivals[index].contact_id)
        for index, rules, rest in candidates
        for rule in (*rules, *rest)
    ]
    last = tx.rules.last_firings(pairs)
    fired: list[tuple[int, Rule]] = []
    for index, rules, rest in candidates:
        cid = arrivals[index].contact_id

        def ready(rule: Rule, cid: ContactId = cid) -> bool:
            return fires(rule, last.get((rule.id, cid)), now)

        chosen = [r for r in rules if ready(r)] or [r for r in rest if ready(r)]
        for rule in chosen:
            last[(rule.id, cid)] = now  # twice in one batch counts as twice
            fired.append((index, rule))
    lookups = _lookups(tx, [(arrivals[index].contact_id, rule) for index, rule in fired])
    swallowed: set[int] = set()
    values: dict[int, dict[str, str]] = {}  # per message, whichever rules fired for it
    for index, rule in fired:
        arrival = arrivals[index]
        if index not in values:
            remark = lookups.remarks.get(arrival.contact_id)
            values[index] = placeholder_values(arrival, remark, bot.rulebook.zone)
        act = _Act(bot, tx, platform, account, arrival, index, now, values[index], answers)
        act.run(rule, lookups, swallowed)
    tx.rules.record_firings([(rule.id, arrivals[i].contact_id, now) for i, rule in fired])
    return swallowed


def _lookups(tx: Tx, fired: Sequence[tuple[ContactId, Rule]]) -> _Lookups:
    """Remarks, file names and channels the fired rules' actions need, one read each."""
    remark_of: set[int] = set()
    media: set[int] = set()
    channels: set[str] = set()
    for cid, rule in fired:
        for a in rule.actions:
            if "{CONTACTREMARK}" in f"{a.text or ''}{a.subject or ''}{a.target or ''}":
                remark_of.add(cid)
            if a.kind == "autoAnswerMedia" and a.media_id is not None:
                media.add(a.media_id)
            if a.kind in ("addToChannel", "removeFromChannel"):
                channels.add(a.target or "")
    return _Lookups(
        remarks=tx.rules.remarks_of(remark_of) if remark_of else {},
        file_names=tx.rules.file_names(media) if media else {},
        channels=tx.subscriptions.channels_by_names(channels) if channels else {},
    )


@dataclass(frozen=True, slots=True)
class _Act:
    """One fired rule's actions for one message."""

    bot: Chatbot
    tx: Tx
    platform: Platform
    account: AccountId
    arrival: Arrival
    index: int
    now: datetime
    values: Mapping[str, str]
    answers: AnswerBatch

    def run(self, rule: Rule, lookups: _Lookups, swallowed: set[int]) -> None:
        """Carry out the rule's actions in order, then tell the thread what they did."""
        bot, arrival, platform, account = self.bot, self.arrival, self.platform, self.account
        m = arrival.message
        conv, cid = arrival.conversation_id, arrival.contact_id
        cause = f"rule{rule.id}:{platform}:{account}:{m.external_id}"
        values = self.values
        done: list[str] = []
        for number, action in enumerate(rule.actions):
            key = f"{cause}:{number}"
            kind = action.kind
            if kind == "doNothing":
                swallowed.add(self.index)
                done.append(describe(action))
            elif kind in ("autoAnswer", "autoAnswerMedia"):
                self._auto_answer(action, key, lookups, done)
            elif kind in ("mailForward", "webserviceForward", "httpBotFwd", "smsFwd"):
                forward = _forward(bot, platform, account, arrival, rule, action, key, values)
                if forward is None:
                    done.append("could not forward by SMS: SMS is not configured")
                    continue
                self.answers.extend([forward])
                done.append(describe(action))
            elif kind in ("addToChannel", "removeFromChannel"):
                done.append(self._channel(rule, action, lookups))
            elif kind == "i18nStop":
                if self.tx.subscriptions.leave(cid, "STOP", self.now, None):
                    self.answers.answer(
                        m.chat_id,
                        cid,
                        conv,
                        "You are unsubscribed and will get no more newsletters."
                        " Send START to subscribe again.",
                        key,
                        notice=None,
                    )
                done.append(describe(action))
        if self.index not in swallowed:
            text = f"Rule '{rule.name}': " + ", ".join(done)
            self.answers.extend(
                bot.directory.notice_job(conv, s, f"rule:{cause}", text)
                for s in bot.directory.surfaces
            )

    def _channel(self, rule: Rule, action: Action, lookups: _Lookups) -> str:
        """addToChannel and removeFromChannel; what was done, in words."""
        channel = lookups.channels.get((action.target or "").casefold())
        cid = self.arrival.contact_id
        if channel is None:
            return f"found no channel {action.target}"
        if action.kind == "addToChannel":
            self.tx.subscriptions.join(channel.id, cid, f"rule {rule.name}", self.now)
        else:
            self.tx.subscriptions.leave(cid, f"rule {rule.name}", self.now, channel.id)
        return describe(action)

    def _auto_answer(self, action: Action, key: str, lookups: _Lookups, done: list[str]) -> None:
        """autoAnswer and autoAnswerMedia: the answer; what was done goes to `done`."""
        m = self.arrival.message
        kind = action.kind
        files = []
        if kind == "autoAnswerMedia" and action.media_id is not None:
            files = [
                {
                    "rule_file": action.media_id,
                    "kind": "document",
                    "ref": f"rule_file:{action.media_id}",
                    "filename": lookups.file_names.get(action.media_id, "file"),
                }
            ]
        text = fill(action.text or "", self.values)
        sent = self.answers.answer(
            m.chat_id,
            self.arrival.contact_id,
            self.arrival.conversation_id,
            text,
            key,
            files=files,
            notice=None,
        )
        if not sent:
            done.append("could not answer (the customer may not be messaged)")
        elif kind == "autoAnswer":
            done.append(f"answered automatically: {text}")
        else:
            done.append(f"answered with {files[0]['filename'] if files else 'a file'}")


def _forward(
    bot: Chatbot,
    platform: Platform,
    account: AccountId,
    arrival: Arrival,
    rule: Rule,
    action: Action,
    key: str,
    values: Mapping[str, str],
) -> NewJob | None:
    """The row of a forward by mail, to a web service or bot, or by SMS; None when an SMS
    forward has no SMS account to go through."""
    conv, cid = arrival.conversation_id, arrival.contact_id
    kind = action.kind
    if kind == "mailForward":
        mail = RuleMailJob(
            to=fill(action.target or "", values),
            subject=fill(action.subject or "Message from {NICKNAME}", values),
            body=fill(action.text or "{NICKNAME} ({MSISDN}): {MSG}", values),
            conversation=conv,
            rule=rule.name,
        )
        return mail.new_job(key)
    if kind in ("webserviceForward", "httpBotFwd"):
        post = RuleHttpJob(
            url=fill_url(action.target or "", values),
            body=_http_body(rule, arrival, platform, account, values),
            answer=kind == "httpBotFwd",
            conversation=conv,
            contact=cid,
            platform=platform,
            account=account,
            chat=arrival.message.chat_id,
            rule=rule.name,
            cause=key,
        )
        return post.new_job()
    sms = next((c for (pl, _), c in bot.directory.connectors.items() if pl == "sms"), None)
    if sms is None:
        return None
    number = action.target or ""
    forward = RuleSmsJob(
        number=number,
        account=sms.account,
        text=fill(action.text or "{NICKNAME} ({MSISDN}) on " + platform + ": {MSG}", values),
        conversation=conv,
        rule=rule.name,
    )
    return forward.new_job(key, sms.rate_keys(ChatId(number)))


def _http_body(
    rule: Rule,
    arrival: Arrival,
    platform: Platform,
    account: AccountId,
    values: Mapping[str, str],
) -> dict[str, Any]:
    m = arrival.message
    return {
        "rule": rule.name,
        "id": arrival.message_id,
        "msgid": m.external_id,
        "platform": platform,
        "account": account,
        "contact": {
            "id": arrival.contact_id,
            "name": m.profile.display_name,
            "username": m.profile.username,
            "address": m.chat_id,
            "remark": values.get("CONTACTREMARK") or None,
        },
        "conversation": arrival.conversation_id,
        "text": m.text,
        "media_type": values["MEDIATYPE"],
        "attachments": [
            {"kind": a.kind.value, "filename": a.filename, "mime_type": a.mime_type}
            for a in m.attachments
        ],
        "timestamp": values["UTC"],
    }

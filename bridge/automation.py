"""Chatbot rules at work: which rules fire for a batch of inbound messages, the outbox rows of
their actions, and the handlers that carry out forwards (mail, web services, SMS).

The matching itself is `bridge.rules` (pure); this module adds what needs the database (the
per-contact limits, channels, contact remarks) and the outside world (SMTP, HTTP).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import aiohttp
import aiosmtplib
from sqlalchemy.engine import Connection

from bridge.config import MailSettings, Settings
from bridge.errors import AddressRefused, PermanentError, TooLarge, TransientError, Unreachable
from bridge.mail import OutgoingMail, build_mail
from bridge.redact import short_url
from bridge.rules import Action, Incoming, Matcher, Rule, fill, fill_url
from bridge.security import (
    BOT_ANSWER_CAP,
    FILE_CAP,
    MAX_REDIRECTS,
    OutboundGuard,
    file_name,
    read_capped,
)
from bridge.types import (
    AccountId,
    ChatId,
    ContactId,
    ConversationId,
    FileData,
    InboundMessage,
    MediaKind,
    OutboundMessage,
    Platform,
)
from storage import Tx, rules_store, subscriptions
from storage.queries import Completion, Job, NewJob

if TYPE_CHECKING:
    from bridge.pipeline import Pipeline
    from bridge.pipeline.chatbot import Chatbot

log = logging.getLogger(__name__)

# Rules are read again at most this often, so a change made by another process is seen soon.
RULES_CACHE_S = 5.0
# An httpBotFwd answer longer than this is cut (a bot should answer like a person would).
BOT_ANSWER_MAX = 4000
BOT_MEDIA_MAX = FILE_CAP


class RuleBook:
    """The compiled rules, rebuilt when they change (or every few seconds)."""

    def __init__(self, settings: Settings) -> None:
        self.zone = ZoneInfo(settings.rules.timezone)
        self._cache: tuple[float, Matcher] | None = None

    def matcher(self, conn: Connection) -> Matcher:
        """The matcher of the stored rules."""
        cached = self._cache
        if cached is not None and time.monotonic() - cached[0] < RULES_CACHE_S:
            return cached[1]
        matcher = Matcher.build(rules_store.all_rules(conn), self.zone)
        self._cache = (time.monotonic(), matcher)
        return matcher

    def changed(self) -> None:
        """A command changed the rules: build again on the next message."""
        self._cache = None


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


def apply_rules(
    bot: Chatbot,
    tx: Tx,
    platform: Platform,
    account: AccountId,
    arrivals: Sequence[Arrival],
    now: datetime,
) -> tuple[list[NewJob], set[int]]:
    """Fire the rules that match; the jobs of their actions, and which messages (by index in
    `arrivals`) a doNothing rule kept out of the thread."""
    if not arrivals:
        return [], set()
    matcher = bot.rulebook.matcher(tx.conn)
    if matcher.size == 0:
        return [], set()
    candidates: list[tuple[int, list[Rule], list[Rule]]] = []
    for index, arrival in enumerate(arrivals):
        found = matcher.match(Incoming(text=arrival.message.text, platform=platform, at=now))
        if found.rules or found.rest:
            candidates.append((index, found.rules, found.rest))
    if not candidates:
        return [], set()
    pairs = [
        (rule.id, arrivals[index].contact_id)
        for index, rules, rest in candidates
        for rule in (*rules, *rest)
    ]
    last = rules_store.last_firings(tx.conn, pairs)
    jobs: list[NewJob] = []
    swallowed: set[int] = set()
    fired_now: list[tuple[int, int, datetime]] = []
    for index, rules, rest in candidates:
        arrival = arrivals[index]
        cid = arrival.contact_id

        def ready(rule: Rule, cid: ContactId = cid) -> bool:
            return fires(rule, last.get((rule.id, cid)), now)

        chosen = [r for r in rules if ready(r)] or [r for r in rest if ready(r)]
        for rule in chosen:
            last[(rule.id, cid)] = now  # twice in one batch counts as twice
            fired_now.append((rule.id, cid, now))
            jobs.extend(_actions(bot, tx, platform, account, arrival, rule, now, swallowed, index))
    rules_store.record_firings(tx.conn, fired_now)
    return jobs, swallowed


def _actions(
    bot: Chatbot,
    tx: Tx,
    platform: Platform,
    account: AccountId,
    arrival: Arrival,
    rule: Rule,
    now: datetime,
    swallowed: set[int],
    index: int,
) -> list[NewJob]:
    m = arrival.message
    conv, cid = arrival.conversation_id, arrival.contact_id
    cause = f"rule{rule.id}:{platform}:{account}:{m.external_id}"
    needs_remark = any(
        "{CONTACTREMARK}" in f"{a.text or ''}{a.subject or ''}{a.target or ''}"
        for a in rule.actions
    )
    remark = rules_store.remark_of(tx.conn, cid) if needs_remark else None
    values = placeholder_values(arrival, remark, bot.rulebook.zone)
    jobs: list[NewJob] = []
    done: list[str] = []
    for number, action in enumerate(rule.actions):
        key = f"{cause}:{number}"
        kind = action.kind
        if kind == "doNothing":
            swallowed.add(index)
            done.append(describe(action))
        elif kind in ("autoAnswer", "autoAnswerMedia"):
            files = []
            if kind == "autoAnswerMedia" and action.media_id is not None:
                names = rules_store.file_names(tx.conn, [action.media_id])
                files = [
                    {
                        "rule_file": action.media_id,
                        "kind": "document",
                        "ref": f"rule_file:{action.media_id}",
                        "filename": names.get(action.media_id, "file"),
                    }
                ]
            text = fill(action.text or "", values)
            sent = bot.auto_reply(
                tx,
                platform,
                account,
                m.chat_id,
                cid,
                conv,
                text,
                key,
                files=files,
                notice=None,
            )
            jobs.extend(sent)
            if not sent:
                done.append("could not answer (the customer may not be messaged)")
            elif kind == "autoAnswer":
                done.append(f"answered automatically: {text}")
            else:
                done.append(f"answered with {files[0]['filename'] if files else 'a file'}")
        elif kind == "mailForward":
            jobs.append(
                NewJob(
                    kind="rule.mail",
                    idem_key=f"mail:{key}",
                    lane=f"rulemail:{conv}",
                    rate_keys=("mail",),
                    payload={
                        "to": fill(action.target or "", values),
                        "subject": fill(action.subject or "Message from {NICKNAME}", values),
                        "body": fill(action.text or "{NICKNAME} ({MSISDN}): {MSG}", values),
                        "conv": conv,
                        "rule": rule.name,
                    },
                )
            )
            done.append(describe(action))
        elif kind in ("webserviceForward", "httpBotFwd"):
            jobs.append(
                NewJob(
                    kind="rule.http",
                    idem_key=f"http:{key}",
                    lane=f"rulehttp:{conv}",
                    payload={
                        "url": fill_url(action.target or "", values),
                        "body": _http_body(rule, arrival, platform, account, values),
                        "answer": kind == "httpBotFwd",
                        "conv": conv,
                        "contact": cid,
                        "platform": platform,
                        "account": account,
                        "chat": m.chat_id,
                        "rule": rule.name,
                        "cause": key,
                    },
                )
            )
            done.append(describe(action))
        elif kind == "smsFwd":
            sms = next((c for (pl, _), c in bot.directory.connectors.items() if pl == "sms"), None)
            if sms is None:
                done.append("could not forward by SMS: SMS is not configured")
                continue
            to = action.target or ""
            jobs.append(
                NewJob(
                    kind="rule.sms",
                    idem_key=f"sms:{key}",
                    lane=f"rulesms:{conv}",
                    rate_keys=sms.rate_keys(ChatId(to)),
                    payload={
                        "number": to,
                        "account": sms.account,
                        "text": fill(
                            action.text or "{NICKNAME} ({MSISDN}) on " + platform + ": {MSG}",
                            values,
                        ),
                        "conv": conv,
                        "rule": rule.name,
                    },
                )
            )
            done.append(describe(action))
        elif kind in ("addToChannel", "removeFromChannel"):
            channel = subscriptions.channel_by_name(tx.conn, action.target or "")
            if channel is None:
                done.append(f"found no channel {action.target}")
            elif kind == "addToChannel":
                subscriptions.join(tx.conn, channel.id, cid, f"rule {rule.name}", now)
                done.append(describe(action))
            else:
                subscriptions.leave(tx.conn, cid, f"rule {rule.name}", now, channel.id)
                done.append(describe(action))
        elif kind == "i18nStop":
            if subscriptions.leave(tx.conn, cid, "STOP", now, None):
                jobs.extend(
                    bot.auto_reply(
                        tx,
                        platform,
                        account,
                        m.chat_id,
                        cid,
                        conv,
                        "You are unsubscribed and will get no more newsletters."
                        " Send START to subscribe again.",
                        key,
                        notice=None,
                    )
                )
            done.append(describe(action))
    if index not in swallowed:
        text = f"Rule '{rule.name}': " + ", ".join(done)
        jobs.extend(
            bot.directory.notice_job(conv, s, f"rule:{cause}", text) for s in bot.directory.surfaces
        )
    return jobs


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


# -- outbox handlers --------------------------------------------------------------------------


class _RuleHandler:
    """Shared by the forwards: a permanent failure is told in the conversation's threads."""

    what = "forward"

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def coalesce(self, head: Job, following: Sequence[Job]) -> int:
        return 0

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        [job] = jobs
        text = f"Rule '{job.payload.get('rule')}': the {self.what} failed: {error.reason}"
        notices = [
            self.pipeline.directory.notice_job(job.payload["conv"], s, f"rulefail:{job.id}", text)
            for s in self.pipeline.surfaces
        ]
        return Completion([job.id], failed_reason=str(error), jobs=notices)


class MailForward(_RuleHandler):
    """Sends a rule's mail through the configured SMTP server."""

    what = "mail forward"

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        p = job.payload
        mail = self.pipeline.settings.mail
        if not mail.enabled or mail.from_address is None:
            raise PermanentError("mail_off", "mail is not configured ([mail] host, from_address)")
        built = build_mail(
            sender=mail.from_address,
            to=p["to"],
            subject=p["subject"],
            body=p["body"],
            # The same Message-ID on a retry lets a server or a reader spot a duplicate.
            message_id=f"<rule-{job.idem_key.replace(':', '.')}@support-bridge>",
        )
        await send_mail(mail, built)
        return Completion([job.id])


async def send_mail(mail: MailSettings, message: OutgoingMail) -> None:
    """Hand one mail to the SMTP server; errors mapped into the bridge's tree."""
    try:
        await aiosmtplib.send(
            message.message,
            sender=message.sender,
            recipients=list(message.recipients),
            hostname=mail.host,
            port=mail.port,
            username=mail.username,
            password=mail.password.get_secret_value() if mail.password else None,
            use_tls=mail.security == "tls",
            start_tls=mail.security == "starttls",
            timeout=mail.timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise PermanentError(
            "smtp_recipient", f"the mail server refused the address: {exc}"
        ) from None
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            raise PermanentError(
                f"smtp_{exc.code}", f"the mail server refused it: {exc.message}"
            ) from None
        raise TransientError(f"the mail server answered {exc.code} {exc.message}") from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise Unreachable(f"the mail server could not be reached: {type(exc).__name__}") from None


class HttpForward(_RuleHandler):
    """webserviceForward and httpBotFwd: POST the message as JSON; a bot's answer goes back."""

    what = "web forward"

    def __init__(self, pipeline: Pipeline, outbound: OutboundGuard) -> None:
        super().__init__(pipeline)
        self._outbound = outbound

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        p = job.payload
        timeout = aiohttp.ClientTimeout(total=self.pipeline.settings.rules.http_timeout_s)
        shown = short_url(p["url"])  # errors reach the log and the thread: no token in them
        try:
            # The guard refuses internal addresses (AddressRefused, permanent: the thread is
            # told, nothing is retried) and follows no redirect of a POST.
            async with self._outbound.request(
                "POST",
                p["url"],
                json=p["body"],
                timeout=timeout,
                headers={"Idempotency-Key": job.idem_key},
            ) as response:
                if response.status == 429 or response.status >= 500:
                    raise TransientError(f"{shown} answered {response.status}")
                if response.status >= 300:
                    raise PermanentError(
                        str(response.status),
                        f"{shown} answered {response.status}"
                        + (" (redirects are not followed)" if response.status < 400 else ""),
                    )
                answer = bool(p.get("answer"))
                raw = await read_capped(response, BOT_ANSWER_CAP) if answer else b""
                content_type = response.content_type
        except TooLarge:
            raise PermanentError(
                "too_large", f"the bot's answer is larger than {BOT_ANSWER_CAP // 1024} KB"
            ) from None
        except aiohttp.ClientError as exc:
            raise Unreachable(f"{shown} could not be reached: {type(exc).__name__}") from None
        except TimeoutError:
            raise Unreachable(f"{shown} did not answer in time") from None
        if not answer:
            return Completion([job.id])
        text, media = _bot_answer(raw, content_type)
        files = [await self._download(url) for url in media]
        return Completion([job.id], also=[self._reply(p, text, files)])

    async def _download(self, url: str) -> tuple[str, str, bytes]:
        timeout = aiohttp.ClientTimeout(total=60)
        shown = short_url(url)
        try:
            async with self._outbound.request(
                "GET", url, redirects=MAX_REDIRECTS, timeout=timeout
            ) as response:
                if response.status >= 300:
                    raise PermanentError(
                        str(response.status), f"the bot's file {shown} answered {response.status}"
                    )
                data = await read_capped(response, BOT_MEDIA_MAX)
                mime = response.content_type or "application/octet-stream"
                return file_name(url), mime, data
        except AddressRefused as exc:
            raise AddressRefused(exc.code, f"the bot's file: {exc.reason}") from None
        except TooLarge:
            raise PermanentError("too_large", f"the bot's file {shown} is over 16 MB") from None
        except aiohttp.ClientError as exc:
            raise Unreachable(
                f"the bot's file {shown} could not be fetched: {type(exc).__name__}"
            ) from None
        except TimeoutError:
            raise Unreachable(f"the bot's file {shown} did not arrive in time") from None

    def _reply(
        self, p: Mapping[str, Any], text: str, files: list[tuple[str, str, bytes]]
    ) -> Callable[[Tx], Sequence[NewJob]]:
        def write(tx: Tx) -> Sequence[NewJob]:
            if not text and not files:
                return []
            now = self.pipeline.clock()
            stored: list[dict[str, Any]] = []
            saved: list[int] = []
            for name, mime, data in files:
                file_id = rules_store.save_file(
                    tx.conn,
                    FileData(kind=MediaKind.DOCUMENT, filename=name, data=data, mime_type=mime),
                    f"rule {p['rule']}",
                    now,
                )
                saved.append(file_id)
                stored.append(
                    {
                        "rule_file": file_id,
                        "kind": "document",
                        "ref": f"rule_file:{file_id}",
                        "filename": name,
                    }
                )
            jobs = self.pipeline.chatbot.auto_reply(
                tx,
                Platform(p["platform"]),
                AccountId(p["account"]),
                ChatId(p["chat"]),
                ContactId(p["contact"]),
                ConversationId(p["conv"]),
                text,
                f"bot:{p['cause']}",
                files=stored,
                notice=f"Rule '{p['rule']}': the bot answered",
            )
            if not jobs:
                # Not sent (the contact is gone or may not be written to): the bot's files
                # for them are tied to no message, and nothing would ever erase them.
                rules_store.delete_files(tx.conn, saved)
            return jobs

        return write


def _bot_answer(raw: bytes, content_type: str) -> tuple[str, list[str]]:
    """A bot's answer: JSON {"text": …, "media": [url…]} (or {"answer": …}), else plain text."""
    body = raw.decode("utf-8", "replace").strip()
    if content_type == "application/json" or body.startswith("{"):
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            text = data.get("text") or data.get("answer") or ""
            media = data.get("media") or []
            urls = [
                str(item.get("url") if isinstance(item, dict) else item)
                for item in media
                if (isinstance(item, dict) and item.get("url")) or isinstance(item, str)
            ]
            return str(text)[:BOT_ANSWER_MAX], [
                u for u in urls if u.startswith(("http://", "https://"))
            ]
    return body[:BOT_ANSWER_MAX], []


class SmsForward(_RuleHandler):
    """Forwards a message as SMS to a fixed number through the first SMS account."""

    what = "SMS forward"

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        p = job.payload
        connector = self.pipeline.connector("sms", p["account"])
        await self.pipeline.deliver(
            connector,
            OutboundMessage(
                platform=Platform("sms"),
                account=AccountId(p["account"]),
                chat_id=ChatId(p["number"]),
                text=p["text"],
                idempotency_key=job.idem_key,
            ),
        )
        return Completion([job.id])


def handlers(p: Pipeline, outbound: OutboundGuard | None) -> dict[str, Any]:
    """The outbox handlers of the rule actions (web forwards only with the outbound guard)."""
    found: dict[str, Any] = {"rule.mail": MailForward(p), "rule.sms": SmsForward(p)}
    if outbound is not None:
        found["rule.http"] = HttpForward(p, outbound)
    return found

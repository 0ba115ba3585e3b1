"""Outbox handlers of the chatbot rules' forwards: mail through SMTP, JSON to a web service
or a bot (whose answer goes back to the customer), and SMS to a fixed number."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import aiohttp
import aiosmtplib

from bridge.config import MailSettings
from bridge.errors import AddressRefused, PermanentError, TooLarge, TransientError, Unreachable
from bridge.handlers.base import Handler
from bridge.jobs import JobKind, RuleHttpJob, RuleMailJob, RuleSmsJob
from bridge.mail import OutgoingMail, build_mail
from bridge.pipeline.chatbot import Chatbot
from bridge.pipeline.directory import Directory
from bridge.redact import short_url
from bridge.security import (
    BOT_ANSWER_CAP,
    FILE_CAP,
    MAX_REDIRECTS,
    OutboundGuard,
    file_name,
    read_capped,
)
from bridge.types import (
    ChatId,
    FileData,
    MediaKind,
    OutboundMessage,
    Platform,
)
from storage import Tx
from storage.queries import Completion, Job, NewJob

log = logging.getLogger(__name__)

# An httpBotFwd answer longer than this is cut (a bot should answer like a person would).
BOT_ANSWER_MAX = 4000
BOT_MEDIA_MAX = FILE_CAP


class RuleForward(Handler):
    """Shared by the forwards: a permanent failure is told in the conversation's threads."""

    what = "forward"
    payload_class: ClassVar[type[RuleMailJob] | type[RuleHttpJob] | type[RuleSmsJob]]

    def __init__(self, directory: Directory, chatbot: Chatbot) -> None:
        super().__init__(directory)
        self.chatbot = chatbot

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        [job] = jobs
        forward = self.payload_class.from_job(job)
        text = f"Rule '{forward.rule}': the {self.what} failed: {error.reason}"
        notices = [
            self.directory.notice_job(forward.conversation, surface, f"rulefail:{job.id}", text)
            for surface in self.directory.surfaces
        ]
        return Completion([job.id], failed_reason=str(error), jobs=notices)


class MailForward(RuleForward):
    """Sends a rule's mail through the configured SMTP server."""

    what = "mail forward"
    payload_class = RuleMailJob

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        forward = RuleMailJob.from_job(job)
        mail = self.directory.settings.mail
        if not mail.enabled or mail.from_address is None:
            raise PermanentError("mail_off", "mail is not configured ([mail] host, from_address)")
        built = build_mail(
            sender=mail.from_address,
            to=forward.to,
            subject=forward.subject,
            body=forward.body,
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


class HttpForward(RuleForward):
    """webserviceForward and httpBotFwd: POST the message as JSON; a bot's answer goes back."""

    what = "web forward"
    payload_class = RuleHttpJob

    def __init__(self, directory: Directory, chatbot: Chatbot, outbound: OutboundGuard) -> None:
        super().__init__(directory, chatbot)
        self._outbound = outbound

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        forward = RuleHttpJob.from_job(job)
        timeout = aiohttp.ClientTimeout(total=self.directory.settings.rules.http_timeout_s)
        shown = short_url(forward.url)  # errors reach the log and the thread: no token in them
        try:
            # The guard refuses internal addresses (AddressRefused, permanent: the thread is
            # told, nothing is retried) and follows no redirect of a POST.
            async with self._outbound.request(
                "POST",
                forward.url,
                json=forward.body,
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
                answer = forward.answer
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
        return Completion([job.id], also=[self._reply(forward, text, files)])

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
        self, forward: RuleHttpJob, text: str, files: list[tuple[str, str, bytes]]
    ) -> Callable[[Tx], Sequence[NewJob]]:
        def write(tx: Tx) -> Sequence[NewJob]:
            if not text and not files:
                return []
            now = self.chatbot.clock()
            stored: list[dict[str, Any]] = []
            saved: list[int] = []
            for name, mime, data in files:
                file_id = tx.rules.save_file(
                    FileData(kind=MediaKind.DOCUMENT, filename=name, data=data, mime_type=mime),
                    f"rule {forward.rule}",
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
            jobs = self.chatbot.auto_reply(
                tx,
                forward.platform,
                forward.account,
                forward.chat,
                forward.contact,
                forward.conversation,
                text,
                f"bot:{forward.cause}",
                files=stored,
                notice=f"Rule '{forward.rule}': the bot answered",
            )
            if not jobs:
                # Not sent (the contact is gone or may not be written to): the bot's files
                # for them are tied to no message, and nothing would ever erase them.
                tx.rules.delete_files(saved)
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


class SmsForward(RuleForward):
    """Forwards a message as SMS to a fixed number through the first SMS account."""

    what = "SMS forward"
    payload_class = RuleSmsJob

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        forward = RuleSmsJob.from_job(job)
        connector = self.directory.connector("sms", forward.account)
        await self.directory.deliver(
            connector,
            OutboundMessage(
                platform=Platform("sms"),
                account=forward.account,
                chat_id=ChatId(forward.number),
                text=forward.text,
                idempotency_key=job.idem_key,
            ),
        )
        return Completion([job.id])


def handlers(
    directory: Directory, chatbot: Chatbot, outbound: OutboundGuard | None
) -> dict[str, Any]:
    """The outbox handlers of the rule actions (web forwards only with the outbound guard)."""
    found: dict[str, Any] = {
        JobKind.RULE_MAIL: MailForward(directory, chatbot),
        JobKind.RULE_SMS: SmsForward(directory, chatbot),
    }
    if outbound is not None:
        found[JobKind.RULE_HTTP] = HttpForward(directory, chatbot, outbound)
    return found

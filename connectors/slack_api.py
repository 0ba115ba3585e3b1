"""Slack's Web API as the bridge meets it: its answers mapped into the bridge's error tree, the
hot path of chat.postMessage, and the one host a file is downloaded from with the bot token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError

from bridge.errors import (
    DeliveryError,
    PermanentError,
    RateLimited,
    TooLarge,
    TransientError,
    Unreachable,
)
from bridge.types import Attachment, FileData
from connectors.staff import carries, downloaded

log = logging.getLogger(__name__)

MARKER_EVENT = "bridge_mirror"
# Errors that mean the app is set up wrongly, not that the message is bad: keep the rows and
# retry with backoff, so fixing the setup (inviting the bot, say) lets everything through.
SETUP_ERRORS = {
    "not_in_channel",
    "channel_not_found",
    "is_archived",
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "account_inactive",
    "missing_scope",
    "ekm_access_denied",
}
DONE_ALREADY = {"already_reacted"}
GONE_ALREADY = {"message_not_found", "file_not_found", "file_deleted", "thread_not_found"}
# chat.postMessage refuses a text past 40,000 characters (msg_too_long) or cuts it. Posts stay
# under this, counted in UTF-16 code units (never fewer than Slack's characters) of the text as
# sent, escaping included: a customer's "&" is five characters there.
POST_LIMIT = 38_000
TOO_LONG = {"msg_too_long", "msg_blocks_too_long"}


# Slack serves a workspace's files from files.slack.com: the `url_private` of its file objects
# (https://api.slack.com/types/file, "Authentication"), fetched with the bot token. An
# external file (a Google Drive document, `"mode": "external"`) names its own host there, and
# the event that carries the file object can name any: the token goes to Slack's file host
# (files.<api host>, for Slack's other clouds such as slack-gov.com) and the configured API's
# own origin (a proxy, or the fake in tests), over HTTPS, and nowhere else.
SLACK_FILE_HOSTS = frozenset({"files.slack.com"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def slack_file_host_allowed(url: str, api_base: str) -> bool:
    """Whether a file URL is one Slack serves files from, so the bot token may go with it."""
    try:
        parts, api = urlsplit(url), urlsplit(api_base)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        api_port = api.port or _DEFAULT_PORTS.get(api.scheme)
    except ValueError:  # a port that is no number
        return False
    if parts.username is not None or parts.password is not None:
        return False
    host = (parts.hostname or "").rstrip(".").lower()
    api_host = (api.hostname or "").rstrip(".").lower()
    if not host:
        return False
    if (parts.scheme, host, port) == (api.scheme, api_host, api_port):
        return True
    slack_hosts = SLACK_FILE_HOSTS | {f"files.{api_host}"}
    return parts.scheme == "https" and port == 443 and host in slack_hosts


def slack_error(status: int, error: str, retry_after: str | None) -> DeliveryError:
    """The one mapping of a Slack Web API answer (HTTP status, `error`) into the error tree."""
    if status == 429 or error == "ratelimited":
        seconds = float(retry_after or 1)
        return RateLimited(seconds, f"Slack rate limit: retry after {seconds:g}s")
    if status >= 500 or error in ("internal_error", "fatal_error", "service_unavailable"):
        return TransientError(f"Slack answered {status} {error}")
    if error in SETUP_ERRORS:
        log.error("Slack refused a call because of the app's setup: %s", error)
        return TransientError(f"Slack setup problem: {error}")
    if error in TOO_LONG:
        return TooLarge(error, f"Slack refused it as too long: {error}")
    return PermanentError(error, f"Slack refused it: {error}")


def raise_for(exc: Exception) -> NoReturn:
    """Map a Slack SDK or transport error into the bridge's error tree."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        error = str(response.get("error", "unknown_error"))
        raise slack_error(response.status_code, error, response.headers.get("Retry-After")) from exc
    if isinstance(exc, aiohttp.ClientError | TimeoutError):
        raise Unreachable(f"Slack could not be reached: {exc!r}") from exc
    raise exc


def carries_marker(message: Mapping[str, Any], marker: str) -> bool:
    """Whether a message's metadata names this outbox row."""
    meta = message.get("metadata") or {}
    if meta.get("event_type") != MARKER_EVENT:
        return False
    return carries((meta.get("event_payload") or {}).get("outbox"), marker)


def marker_metadata(marker: str) -> dict[str, Any]:
    """The message metadata that names the outbox row a post was made for."""
    return {"event_type": MARKER_EVENT, "event_payload": {"outbox": marker}}


async def post_message(
    http: aiohttp.ClientSession, api_base: str, token: str, body: dict[str, Any]
) -> Mapping[str, Any]:
    """chat.postMessage on the shared session: the mirror's hot path, without the SDK's
    per-call overhead (about 150 µs of CPU a call here). Errors map like the SDK's."""
    async with http.post(
        f"{api_base}chat.postMessage",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        retry_after = response.headers.get("Retry-After")
        if response.status == 429 or response.status >= 500:
            raise slack_error(response.status, "", retry_after)
        try:
            answer: dict[str, Any] = await response.json(content_type=None)
        except ValueError as exc:
            raise TransientError("Slack answered something that is not JSON") from exc
    if not answer.get("ok"):
        raise slack_error(response.status, str(answer.get("error", "unknown_error")), retry_after)
    return answer


async def fetch_file(
    http: aiohttp.ClientSession, api_base: str, token: str, attachment: Attachment
) -> FileData:
    """Download a file an agent attached (needs the bot token): from Slack's file host
    only, and without following redirects, so the token goes nowhere else."""
    if not slack_file_host_allowed(attachment.ref, api_base):
        log.warning("Slack: a shared file is not on Slack's file host; not downloaded")
        raise PermanentError(
            "file_host",
            "the file is not on Slack's file host (files.slack.com), so the bridge did not"
            " download it with its token; share the file itself, uploaded to Slack",
        )
    try:
        async with http.get(
            attachment.ref, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False
        ) as response:
            if response.status >= 500:
                raise TransientError(f"Slack file download answered {response.status}")
            if response.status != 200:
                raise PermanentError(
                    str(response.status), "the file could not be downloaded from Slack"
                )
            data = await response.read()
    except aiohttp.ClientError as exc:
        raise Unreachable(f"Slack file download failed: {exc!r}") from exc
    return downloaded(attachment, data)

"""What Messenger's Send and Graph APIs answer: the reply's messaging type, errors in words,
profile names.

Every Graph error is turned into the bridge's error tree in `raise_for`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp

from bridge.config import MessengerPage
from bridge.errors import PermanentError, RateLimited, TransientError, WindowClosed
from bridge.types import ChatId
from connectors.wire import aware, int_or_none, json_object, opt_str, retry_after

log = logging.getLogger(__name__)


# Messenger platform policy: a page may answer freely ("RESPONSE") for 24 hours after the
# person's last message; with the HUMAN_AGENT tag a human may answer for 7 days.
RESPONSE_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
HUMAN_AGENT_TAG = "HUMAN_AGENT"

# Graph rate-limit answers carry no delay; Meta's docs advise waiting before calling again.
_DEFAULT_RETRY_AFTER = 60.0

# Graph API error codes (developers.facebook.com/docs/messenger-platform/error-codes), as
# staff should read them. Keyed by (code, subcode); (code, None) covers the other subcodes.
REASONS: dict[tuple[int, int | None], str] = {
    (10, 2018278): (
        "the customer last wrote too long ago: Messenger accepts replies for 24 hours after the"
        " customer's last message, and from a human agent for 7 days"
    ),
    (10, 2018065): (
        "the message is outside the allowed window and the page may not send it anyway"
    ),
    (10, None): "Messenger does not permit the page to send this message",
    (551, None): (
        "this person isn't available right now: they blocked the page, left Messenger or"
        " cannot receive messages from it"
    ),
    (100, 2018001): "Messenger knows no person with this id on this page",
    (100, None): "Messenger refused the request as invalid",
    (200, 2018028): (
        "the page may not message this person: they have not opted in or blocked the page,"
        " or the app lacks Messenger's pages_messaging permission"
    ),
    (200, None): "the page lacks the permission for this send",
    (190, None): "the page token was rejected (expired or revoked): renew messenger.page_token",
    (104, None): "the request carried no page token",
    (4, None): "the app made too many Graph API calls",
    (17, None): "the user's Graph API call limit was reached",
    (32, None): "the page made too many Graph API calls",
    (613, None): "the Send API call rate was exceeded",
    (80006, None): "the page sent too many Messenger messages",
    (1200, None): "Messenger had a temporary problem sending the message",
    (1, None): "Messenger had an unknown error",
    (2, None): "Messenger is temporarily unavailable",
}
_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80006})
_TRANSIENT_CODES = frozenset({1, 2, 1200})
# These stay permanent even when Graph answers them with a 5xx status.
_PERMANENT_CODES = frozenset({10, 100, 104, 190, 200, 551})


def messaging_type(last_inbound_at: datetime | None, now: datetime) -> tuple[str, str | None]:
    """The Send API's messaging_type and tag for a reply at `now`."""
    if last_inbound_at is not None and now - aware(last_inbound_at) <= RESPONSE_WINDOW:
        return "RESPONSE", None
    # Past 24 hours only tagged messages go through; HUMAN_AGENT lets a person answer for 7
    # days. Whether the 7 days have passed is left to Meta, which knows the last message best.
    return "MESSAGE_TAG", HUMAN_AGENT_TAG


def raise_for(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> NoReturn:
    """Map a Graph API error answer to the bridge's error tree."""
    raw = body.get("error")
    error: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    code = int_or_none(error.get("code"))
    subcode = int_or_none(error.get("error_subcode"))
    message = opt_str(error, "message") or f"HTTP {status}"
    if code is None:
        tag = f"HTTP {status}"
    else:
        tag = f"{code}/{subcode}" if subcode is not None else str(code)
    words = REASONS.get((code, subcode)) if code is not None else None
    if words is None and code is not None:
        words = REASONS.get((code, None))
    reason = f"{words or message} (Messenger {tag})"
    if status == 429 or code in _RATE_LIMIT_CODES:
        wait = retry_after(headers)
        # Graph's call-volume limits (4, 17, 32, 613) cover the app or the page, not one person.
        raise RateLimited(
            _DEFAULT_RETRY_AFTER if wait is None else wait,
            f"messenger: {reason}",
            per_recipient=False,
        )
    if (code, subcode) == (10, 2018278):
        raise WindowClosed(tag, reason)
    if code in _TRANSIENT_CODES or (status >= 500 and code not in _PERMANENT_CODES):
        raise TransientError(f"messenger: {reason}")
    if code is not None or 400 <= status < 500:
        raise PermanentError(tag, reason)
    raise TransientError(f"messenger: {reason}")


# ---------------------------------------------------------------------- profile names

ProfileLookup = Callable[[MessengerPage, ChatId], Awaitable[str | None]]
"""Finds the name of the person behind a PSID on a page; None when it cannot be had."""


class GraphProfiles:
    """Looks up a PSID's name with the Graph API's user profile endpoint."""

    def __init__(self, http: aiohttp.ClientSession, *, timeout: float = 2.0) -> None:
        self._http = http
        # Short: the lookup happens while Meta waits for the webhook's answer.
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __call__(self, page: MessengerPage, psid: ChatId) -> str | None:
        """`first_name last_name` of the person, or None on any failure."""
        url = f"{page.api_base.rstrip('/')}/{quote(psid, safe='')}"
        try:
            async with self._http.get(
                url,
                params={"fields": "first_name,last_name"},
                headers=auth_header(page),
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info(
                "messenger page %s: profile lookup failed: %s", page.page_id, type(exc).__name__
            )
            return None
        answer = json_object(raw)
        if status != 200 or answer is None:
            error = answer.get("error") if answer is not None else None
            code = error.get("code") if isinstance(error, Mapping) else None
            log.info("messenger page %s: no profile (HTTP %s, code %s)", page.page_id, status, code)
            return None
        names = [opt_str(answer, "first_name"), opt_str(answer, "last_name")]
        display = " ".join(name.strip() for name in names if name and name.strip())
        return display or None


def auth_header(page: MessengerPage) -> dict[str, str]:
    """The page token as a bearer header."""
    # Graph accepts the token as a bearer header as well as an access_token parameter; the
    # header keeps it out of URLs, which aiohttp may print in errors.
    return {"Authorization": f"Bearer {page.page_token.get_secret_value()}"}

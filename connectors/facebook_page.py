"""Publishing a broadcast's text on a Facebook page's feed (Graph API).

The publisher calls the Graph API with the shared HTTP session at the base URL from the
settings (tests point it at a fake) and maps its HTTP/JSON errors into the bridge's error tree
in one function, `_raise_for_graph`. The token travels in the `Authorization` header only, never
in a URL, so no logged URL or exception text can carry it. A post must not go out twice: after
an attempt whose answer was lost, `earlier` looks for it among the page's newest posts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, ClassVar, NoReturn
from urllib.parse import quote

import aiohttp

from bridge.config import FacebookPageSettings, Settings
from bridge.errors import PermanentError, RateLimited, TransientError
from bridge.publish import FACEBOOK, Post, Publisher, problem
from bridge.security import read_capped
from connectors.wire import int_or_none, json_object, opt_str, retry_after, unreachable

log = logging.getLogger(__name__)

_CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
# Graph answers a post with a few hundred bytes; more is not an answer to read whole.
_ANSWER_CAP = 1024 * 1024
# Graph's throttling answers carry no delay of their own; Meta's docs advise waiting a while.
_GRAPH_DEFAULT_WAIT = 60.0
# Graph error codes (developers.facebook.com/docs/graph-api/guides/error-handling): call
# volume (4 app, 17 user, 32 page, 613 rate, 80001 page-level business use case) is
# throttling; 190 is an invalid or expired token; 200 and 10 a missing permission.
_GRAPH_THROTTLING = frozenset({4, 17, 32, 613, 80001})
_GRAPH_TRANSIENT = frozenset({1, 2})
_GRAPH_REASONS: dict[int, str] = {
    190: "the page token was rejected (expired or revoked): renew facebook_page.page_token",
    102: "the page token's session has expired: renew facebook_page.page_token",
    104: "the request carried no page token",
    200: "the page token lacks the pages_manage_posts permission",
    10: "the page token lacks the permission to post on the page",
    100: "Facebook refused the post as invalid",
    368: "Facebook has blocked the page from posting for a while (a policy violation)",
    506: "Facebook refused it as a duplicate of a recent post",
    4: "the app made too many Graph API calls",
    17: "the Graph API call limit of the token's user was reached",
    32: "the page made too many Graph API calls",
    613: "the Graph API call rate was exceeded",
    80001: "the page made too many Graph API calls",
}


class FacebookPagePublisher:
    """Posts to a Facebook page's feed: `POST {api_base}/{page_id}/feed` with `message`."""

    target: ClassVar[str] = FACEBOOK

    def __init__(self, page: FacebookPageSettings, http: aiohttp.ClientSession) -> None:
        assert page.page_id is not None and page.page_token is not None
        self._page_id = page.page_id
        self._token = page.page_token
        self._http = http
        self._feed_url = f"{page.api_base.rstrip('/')}/{quote(page.page_id, safe='')}/feed"

    def problem(self, text: str) -> str | None:
        """Too long or empty for a page post."""
        return problem(FACEBOOK, text)

    async def publish(self, text: str) -> Post:
        """Post the text on the page; its id is `<page>_<post>`."""
        # The feed endpoint takes its parameters form-encoded, as the Graph API documents them.
        answer = await self._call("post", data={"message": text})
        post_id = opt_str(answer, "id")
        if not post_id:
            msg = "facebook answered a page post without an id"
            raise TransientError(msg)
        log.info("facebook page %s: posted %s", self._page_id, post_id)
        return self._post(post_id)

    async def earlier(self, text: str) -> Post | None:
        """The page's newest post with this very message, if one is among the last 25."""
        try:
            answer = await self._call("get", params={"fields": "id,message", "limit": "25"})
        except PermanentError as exc:
            # Reading the feed needs pages_read_engagement besides pages_manage_posts; without
            # it the post is made without looking rather than not at all.
            log.warning("facebook page %s: cannot read its posts: %s", self._page_id, exc)
            return None
        data = answer.get("data")
        for item in data if isinstance(data, list) else []:
            if isinstance(item, Mapping) and item.get("message") == text:
                post_id = opt_str(item, "id")
                if post_id:
                    return self._post(post_id)
        return None

    def _post(self, post_id: str) -> Post:
        page, sep, own = post_id.partition("_")
        url = (
            f"https://www.facebook.com/{page}/posts/{own}"
            if sep and own
            else f"https://www.facebook.com/{post_id}"
        )
        return Post(FACEBOOK, post_id, url)

    async def _call(
        self,
        method: str,
        *,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Mapping[str, Any]:
        # Graph takes the token as a bearer header as well as an access_token parameter; the
        # header keeps it out of URLs, which aiohttp may print in errors.
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        try:
            async with self._http.request(
                method.upper(),
                self._feed_url,
                data=data,
                params=params,
                headers=headers,
                timeout=_CALL_TIMEOUT,
            ) as resp:
                status = resp.status
                raw = await read_capped(resp, _ANSWER_CAP)
                answer_headers = {k.lower(): v for k, v in resp.headers.items()}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("facebook", "page post", exc) from None
        answer = json_object(raw)
        if status != 200 or answer is None or "error" in answer:
            _raise_for_graph(status, answer or {}, answer_headers)
        return answer


def _graph_wait(headers: Mapping[str, str]) -> float:
    """How long Graph asks to wait: Retry-After, else the business use case header's estimate."""
    wait = retry_after(headers)
    if wait is not None:
        return wait
    # X-Business-Use-Case-Usage: {"<id>": [{"type": "pages", …, "estimated_time_to_regain_access":
    # minutes}]}, sent with the Pages API's throttling answers.
    try:
        usage = json.loads(headers.get("x-business-use-case-usage", "{}"))
    except ValueError:
        usage = {}
    minutes = [
        int_or_none(entry.get("estimated_time_to_regain_access"))
        for entries in (usage.values() if isinstance(usage, dict) else [])
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    known = [m for m in minutes if m]
    return max(known) * 60.0 if known else _GRAPH_DEFAULT_WAIT


def _raise_for_graph(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> NoReturn:
    """Map a Graph API error answer to the bridge's error tree."""
    raw = body.get("error")
    error: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    code = int_or_none(error.get("code"))
    message = opt_str(error, "message") or f"HTTP {status}"
    tag = f"HTTP {status}" if code is None else str(code)
    words = _GRAPH_REASONS.get(code) if code is not None else None
    reason = f"{words or message} (Facebook {tag})"
    if status == 429 or code in _GRAPH_THROTTLING:
        # Throttling covers the app or the page, never one post.
        raise RateLimited(_graph_wait(headers), f"facebook: {reason}", per_recipient=False)
    if code in _GRAPH_TRANSIENT or (status >= 500 and code is None):
        raise TransientError(f"facebook: {reason}")
    if code == 506:
        raise PermanentError("duplicate", reason)
    if code is not None or 400 <= status < 500:
        raise PermanentError(tag, reason)
    raise TransientError(f"facebook: {reason}")


def build(settings: Settings, http: aiohttp.ClientSession) -> list[Publisher]:
    """The page publisher, when a page id and its token are configured."""
    if not settings.facebook_page.enabled:
        return []
    return [FacebookPagePublisher(settings.facebook_page, http)]

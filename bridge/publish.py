"""Publishing a broadcast's text as a public post: on a Facebook page and on X.

One publisher per target; each calls its platform's API with the shared HTTP session, at the
base URL from the settings (tests point it at a fake), and maps the platform's HTTP/JSON errors
into the bridge's error tree in one function: `_raise_for_graph` and `_raise_for_x`. Tokens
travel in the `Authorization` header only, never in a URL, so no logged URL or exception text
can carry them.

A post must not go out twice. The outbox row of a target carries one key per broadcast and
target; when the row is tried again after an attempt whose answer was lost (a timeout, a
restart), the publisher looks for the earlier post first (Facebook: the page's newest posts) or
takes the platform's duplicate refusal (X) as the sign that it went out.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn, Protocol
from urllib.parse import quote

import aiohttp

from bridge.config import FacebookPageSettings, Settings, XSettings
from bridge.errors import PermanentError, RateLimited, TransientError
from bridge.security import read_capped
from connectors.wire import int_or_none, json_object, opt_str, retry_after, unreachable

log = logging.getLogger(__name__)

FACEBOOK = "facebook"
X = "x"
TARGETS = (FACEBOOK, X)

_CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
# Graph and X answer a post with a few hundred bytes; more is not an answer to read whole.
API_ANSWER_CAP = 1024 * 1024

# A page post's message is at most 63,206 characters (Facebook's limit for posts).
FACEBOOK_LIMIT = 63_206
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

# X counts a post's length with the twitter-text rules (version 3): 280 "characters", where a
# code point in the ranges below weighs 1 and any other (CJK, emoji) weighs 2, and every URL
# counts as 23 (t.co wraps them all).
X_LIMIT = 280
X_URL_LENGTH = 23
_X_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
# A bare domain ("shop.example.org/sale") may or may not be taken as a link by X: it counts
# as whichever is longer, so that the count is never short.
_BARE_DOMAIN = re.compile(
    r"(?<![\w@./-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}(?:/[^\s<>\"]*)?",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?)]}'\""
# X's rate-limit windows are 15 minutes; without a reset header, wait one.
_X_DEFAULT_WAIT = 900.0
_X_DUPLICATE = "duplicate content"


@dataclass(frozen=True, slots=True)
class Post:
    """A published post: its id on the platform and a link to it."""

    target: str
    post_id: str
    url: str


class Publisher(Protocol):
    """Posts a text publicly on one target."""

    target: ClassVar[str]

    def problem(self, text: str) -> str | None:
        """Why the target would refuse this text, in words for staff; None if it fits."""
        ...

    async def publish(self, text: str) -> Post:
        """Post the text; raise the bridge's delivery errors on failure."""
        ...

    async def earlier(self, text: str) -> Post | None:
        """A post of this very text made by an attempt whose answer was lost, if it can tell."""
        ...


def labels(settings: Settings) -> dict[str, str]:
    """The targets publishing is configured for, with their names for staff."""
    found: dict[str, str] = {}
    if settings.facebook_page.enabled:
        found[FACEBOOK] = f"Facebook page {settings.facebook_page.page_id}"
    if settings.x.enabled:
        found[X] = "X"
    return found


def name(target: str) -> str:
    """A target as staff read it in progress messages."""
    return {FACEBOOK: "Facebook", X: "X"}.get(target, target)


def not_configured(target: str) -> str:
    """The sentence for a target that the settings do not turn on."""
    if target == FACEBOOK:
        return (
            "publishing to Facebook is not configured: set [facebook_page] page_id and"
            " page_token (see bridge.example.toml)"
        )
    return "publishing to X is not configured: set [x] access_token (see bridge.example.toml)"


def publishers(
    settings: Settings,
    http: aiohttp.ClientSession,
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, Publisher]:
    """One publisher per configured target."""
    found: dict[str, Publisher] = {}
    if settings.facebook_page.enabled:
        found[FACEBOOK] = FacebookPagePublisher(settings.facebook_page, http)
    if settings.x.enabled:
        found[X] = XPublisher(settings.x, http, clock=clock)
    return found


def problem(target: str, text: str) -> str | None:
    """Why `target` would refuse `text` (too long, empty), checked without any call."""
    if not text.strip():
        return "a post needs a text"
    if target == X:
        length = x_length(text)
        if length > X_LIMIT:
            return (
                f"too long for X: it counts {length} characters and X allows {X_LIMIT}"
                f" (each link counts {X_URL_LENGTH}); shorten it by {length - X_LIMIT}"
            )
    elif target == FACEBOOK and len(text) > FACEBOOK_LIMIT:
        return (
            f"too long for Facebook: {len(text)} characters, a page post holds"
            f" {FACEBOOK_LIMIT:,}"
        )
    return None


def x_length(text: str) -> int:
    """The length X counts for a post (twitter-text v3 weighting, 23 per link)."""
    normal = unicodedata.normalize("NFC", text)
    spans: list[tuple[int, int, int]] = []  # (start, end, what it counts)
    for match in _URL.finditer(normal):
        end = match.end() - (len(match.group()) - len(match.group().rstrip(_TRAILING)))
        spans.append((match.start(), end, X_URL_LENGTH))
    taken = [(s, e) for s, e, _ in spans]
    for match in _BARE_DOMAIN.finditer(normal):
        start = match.start()
        end = match.end() - (len(match.group()) - len(match.group().rstrip(_TRAILING)))
        if any(s <= start < e for s, e in taken):
            continue
        spans.append((start, end, max(X_URL_LENGTH, _weight(normal[start:end]))))
    total = 0
    position = 0
    for start, end, counted in sorted(spans):
        total += _weight(normal[position:start]) + counted
        position = end
    return total + _weight(normal[position:])


def _weight(text: str) -> int:
    return sum(1 if any(lo <= ord(c) <= hi for lo, hi in _X_LIGHT) else 2 for c in text)


# ---------------------------------------------------------------------- Facebook page


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
                raw = await read_capped(resp, API_ANSWER_CAP)
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


# ---------------------------------------------------------------------- X


class XPublisher:
    """Posts on X: `POST {api_base}/2/tweets` with `{"text": …}` as the token's user."""

    target: ClassVar[str] = X

    def __init__(
        self,
        account: XSettings,
        http: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert account.access_token is not None
        self._token = account.access_token
        self._http = http
        self._clock = clock
        self._url = f"{account.api_base.rstrip('/')}/2/tweets"

    def problem(self, text: str) -> str | None:
        """Too long (X's own count) or empty."""
        return problem(X, text)

    async def publish(self, text: str) -> Post:
        """Post the text; X answers 201 with `{"data": {"id", "text"}}`."""
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        try:
            async with self._http.post(
                self._url, json={"text": text}, headers=headers, timeout=_CALL_TIMEOUT
            ) as resp:
                status = resp.status
                raw = await read_capped(resp, API_ANSWER_CAP)
                answer_headers = {k.lower(): v for k, v in resp.headers.items()}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("x", "post", exc) from None
        answer = json_object(raw)
        if status not in (200, 201) or answer is None:
            _raise_for_x(status, answer or {}, answer_headers, self._clock())
        data = answer.get("data")
        post_id = opt_str(data, "id") if isinstance(data, Mapping) else None
        if not post_id:
            _raise_for_x(status, answer, answer_headers, self._clock())
        log.info("x: posted %s", post_id)
        return Post(X, post_id, f"https://x.com/i/web/status/{post_id}")

    async def earlier(self, text: str) -> Post | None:
        """Not looked up: X refuses a repeated text as a duplicate, which says enough."""
        return None


def _x_wait(headers: Mapping[str, str], now: float) -> float:
    """Seconds until X's exhausted limit resets (`x-rate-limit-reset` and the 24-hour ones)."""
    resets: list[float] = []
    for prefix in ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour"):
        remaining = headers.get(f"{prefix}-remaining")
        reset = headers.get(f"{prefix}-reset")
        if reset is None or (prefix != "x-rate-limit" and remaining not in ("0", None)):
            continue
        try:
            moment = float(reset)  # epoch seconds
        except ValueError:
            continue
        if math.isfinite(moment):
            resets.append(moment)
    if not resets:
        return _X_DEFAULT_WAIT
    # A second more: the reset is in whole seconds of X's clock, which is not quite ours.
    return max(1.0, max(resets) - now + 1.0)


def _raise_for_x(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str], now: float
) -> NoReturn:
    """Map an X API v2 error answer (RFC 7807 problem JSON) to the bridge's error tree."""
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    detail = (
        opt_str(body, "detail")
        or (opt_str(first, "message") if isinstance(first, Mapping) else None)
        or opt_str(body, "title")
        or f"HTTP {status}"
    )
    tag = f"X {status}"
    if status == 429:
        wait = _x_wait(headers, now)
        raise RateLimited(wait, f"x: rate limited, retry after {wait:.0f}s", per_recipient=False)
    if status == 401:
        raise PermanentError(
            "401",
            f"X refused the access token (expired or revoked): renew x.access_token ({tag})",
        )
    if status == 403 and _X_DUPLICATE in detail.lower():
        raise PermanentError("duplicate", f"X refuses a duplicate of a recent post ({tag})")
    if status == 403:
        raise PermanentError("403", f"X does not allow this post: {detail} ({tag})")
    if status >= 500:
        raise TransientError(f"x: {detail} ({tag})")
    if 400 <= status < 500:
        raise PermanentError(str(status), f"X refused the post: {detail} ({tag})")
    raise TransientError(f"x: an answer without a post id ({tag})")

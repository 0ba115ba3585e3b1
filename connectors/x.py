"""Publishing a broadcast's text as a post on X (API v2).

The publisher calls X with the shared HTTP session at the base URL from the settings (tests
point it at a fake) and maps its HTTP/JSON errors into the bridge's error tree in one function,
`_raise_for_x`. The token travels in the `Authorization` header only, never in a URL. A post must
not go out twice: X refuses a repeated text as a duplicate, which the caller reads as the sign
that an earlier attempt whose answer was lost posted it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NoReturn

import aiohttp

from bridge.config import Settings, XSettings
from bridge.errors import PermanentError, RateLimited, TransientError
from bridge.publish import Post, Publisher, X, problem
from bridge.security import read_capped
from connectors.wire import json_object, opt_str, unreachable

log = logging.getLogger(__name__)

_CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
# X answers a post with a few hundred bytes; more is not an answer to read whole.
_ANSWER_CAP = 1024 * 1024
# X's rate-limit windows are 15 minutes; without a reset header, wait one.
_X_DEFAULT_WAIT = 900.0
_X_DUPLICATE = "duplicate content"


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
                raw = await read_capped(resp, _ANSWER_CAP)
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


def build(settings: Settings, http: aiohttp.ClientSession) -> list[Publisher]:
    """The X publisher, when an access token is configured."""
    if not settings.x.enabled:
        return []
    return [XPublisher(settings.x, http)]

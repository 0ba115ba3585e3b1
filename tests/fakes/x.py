"""A fake X API v2 (creating posts) that speaks the real wire format and records posts.

It runs as a real aiohttp server on 127.0.0.1, so the bridge's HTTP code runs against it:
`POST {base_url}/2/tweets` with the JSON body `{"text": …}` and the user's OAuth 2.0 access
token as `Authorization: Bearer …` answers 201 `{"data": {"id", "text",
"edit_history_tweet_ids"}}`. Errors are X's problem-details JSON (`{"title", "detail", "type",
"status"}`): 401 without the right token, 403 for a text posted already ("duplicate content")
or one longer than 280 weighted characters, 429 once the rate limit's window is used up.
Every answer to an authenticated call carries `x-rate-limit-limit`, `x-rate-limit-remaining`
and `x-rate-limit-reset` (epoch seconds), as X sends them.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer

# POST /2/tweets: 100 requests per 15 minutes per user (X's documented default window).
LIMIT = 100
WINDOW_S = 900.0
TEXT_LIMIT = 280
URL_LENGTH = 23
_URL = re.compile(r"https?://\S+")
_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
# The wording of the too-long refusal is UNCONFIRMED; its status (403) and shape are X's.
TOO_LONG = (
    "Your Tweet text is too long. For more information on how X determines text length see"
    " https://github.com/twitter/twitter-text."
)


def problem(status: int, title: str, detail: str, headers: Mapping[str, str] | None = None):
    """An X API error answer (RFC 7807 problem details, as X sends them)."""
    body = {"title": title, "detail": detail, "type": "about:blank", "status": status}
    return web.json_response(body, status=status, headers=dict(headers or {}))


def weighted_length(text: str) -> int:
    """X's count: every URL 23, code points in the light ranges 1, all others 2."""
    rest = _URL.sub("", text)
    urls = len(_URL.findall(text))
    light = sum(1 for c in rest if any(lo <= ord(c) <= hi for lo, hi in _LIGHT))
    return urls * URL_LENGTH + light + 2 * (len(rest) - light)


class FakeX(FakeServer):
    """The X API on 127.0.0.1 with a free port; `base_url` is what `[x] api_base` points at."""

    def __init__(self, *, access_token: str = "x-user-token") -> None:
        super().__init__()
        self.access_token = access_token
        # Accepted posts: {"id", "text", "at"}, oldest first.
        self.posts: list[dict[str, Any]] = []
        # Refused calls: {"status", "text", "at"} (text when the body had one).
        self.refused: list[dict[str, Any]] = []
        self.limit = LIMIT
        self.window_s = WINDOW_S
        self._used = 0
        self._reset = 0
        self._failures: deque[tuple[int, str, str]] = deque()
        # Posts accepted whose answer is lost on the way back (X answers 503 after posting):
        # what a timeout or a restart looks like to the caller.
        self.lose_answers = 0

    def app(self) -> web.Application:
        """`POST /2/tweets`."""
        app = web.Application()
        app.router.add_post("/2/tweets", self._create)
        return app

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, like https://api.x.com."""
        return self.root_url

    # ------------------------------------------------------------------ records and switches

    def texts(self) -> list[str]:
        """The posted texts, oldest first."""
        return [post["text"] for post in self.posts]

    def statuses(self) -> list[int]:
        """The status of every refused call, in order."""
        return [entry["status"] for entry in self.refused]

    def exhaust(self, seconds: float) -> int:
        """Use up the current window: calls are refused with 429 for about `seconds`; the
        window's reset (epoch seconds)."""
        self._reset = math.ceil(time.time() + seconds)
        self._used = self.limit
        return self._reset

    def fail_next(self, status: int, title: str, detail: str, *, times: int = 1) -> None:
        """The next `times` authenticated calls answer this error instead of posting."""
        for _ in range(times):
            self._failures.append((status, title, detail))

    # ------------------------------------------------------------------ HTTP

    async def _create(self, request: web.Request) -> web.Response:
        now = time.time()
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.access_token.encode()
        ):
            self.refused.append({"status": 401, "text": None, "at": now})
            return problem(401, "Unauthorized", "Unauthorized")
        if now >= self._reset:
            self._used, self._reset = 0, math.ceil(now + self.window_s)
        if self._used >= self.limit:
            self.refused.append({"status": 429, "text": None, "at": now})
            return problem(429, "Too Many Requests", "Too Many Requests", self._limits())
        self._used += 1
        headers = self._limits()
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        text = body.get("text") if isinstance(body, dict) else None
        if self._failures:
            status, title, detail = self._failures.popleft()
            self.refused.append({"status": status, "text": text, "at": now})
            return problem(status, title, detail, headers)
        if not isinstance(text, str) or not text.strip():
            self.refused.append({"status": 400, "text": text, "at": now})
            return web.json_response(
                {
                    "errors": [{"message": "Post text is empty", "parameters": {"text": [text]}}],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": "https://api.twitter.com/2/problems/invalid-request",
                },
                status=400,
                headers=headers,
            )
        if weighted_length(text) > TEXT_LIMIT:
            self.refused.append({"status": 403, "text": text, "at": now})
            return problem(403, "Forbidden", TOO_LONG, headers)
        if text in self.texts():
            self.refused.append({"status": 403, "text": text, "at": now})
            return problem(403, "Forbidden", DUPLICATE, headers)
        post_id = str(1_800_000_000_000_000_000 + secrets.randbelow(10**17))
        self.posts.append({"id": post_id, "text": text, "at": now})
        if self.lose_answers:
            self.lose_answers -= 1
            return problem(503, "Service Unavailable", "Service Unavailable", headers)
        data = {"id": post_id, "text": text, "edit_history_tweet_ids": [post_id]}
        return web.json_response({"data": data}, status=201, headers=headers)

    def _limits(self) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(self.limit),
            "x-rate-limit-remaining": str(max(0, self.limit - self._used)),
            "x-rate-limit-reset": str(self._reset),
        }

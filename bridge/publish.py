"""Publishing a broadcast's text as a public post: on a Facebook page and on X.

What the orchestration needs, with no platform call: the targets, their names and limits for
staff, the `Publisher` protocol and the `Post` it returns. The publishers themselves, which talk
to the platforms, are connectors (`connectors.facebook_page`, `connectors.x`); `bridge.app`
builds them from the registry and hands them to the pipeline.

A post must not go out twice. The outbox row of a target carries one key per broadcast and
target; when the row is tried again after an attempt whose answer was lost (a timeout, a
restart), the publisher looks for the earlier post first (Facebook: the page's newest posts) or
takes the platform's duplicate refusal (X) as the sign that it went out.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import ClassVar, Protocol

from bridge.config import Settings

FACEBOOK = "facebook"
X = "x"
TARGETS = (FACEBOOK, X)

# A page post's message is at most 63,206 characters (Facebook's limit for posts).
FACEBOOK_LIMIT = 63_206
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

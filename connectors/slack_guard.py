"""What Slack's HTTP endpoint checks before and after it reads a body: the signature headers
and their age (before), and that a signed request is not a replay (after).

Slack signs `v0:<X-Slack-Request-Timestamp>:<body>` and the receiver takes a signature for
five minutes (api.slack.com/authentication/verifying-requests-from-slack). Within them a
captured slash command or interaction could be sent again as it is; Slack itself never sends
one twice, so a signature seen before is refused. Events API deliveries are retried by Slack
and de-duplicated by their ids instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from bridge.recent import Recent

SIGNATURE_MAX_AGE = 300  # Slack: reject requests whose timestamp is more than 5 minutes off
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
# Signatures remembered at most; genuine traffic within five minutes stays far below.
REMEMBERED_MAX = 100_000


def refusal(message: str) -> web.Response:
    """Slack's endpoint answers its refusals as JSON."""
    return web.json_response({"error": message}, status=401)


def screen(request: web.Request) -> web.StreamResponse | None:
    """Refuse on the headers alone: no signature, or a timestamp too old or too new to sign."""
    ts = request.headers.get(TIMESTAMP_HEADER, "")
    if not ts or not request.headers.get(SIGNATURE_HEADER):
        return refusal("missing Slack signature")
    try:
        age = abs(time.time() - int(ts))
    except ValueError:
        return refusal("bad Slack timestamp")
    if age > SIGNATURE_MAX_AGE:
        return refusal("stale Slack request")
    return None


class RecentSignatures:
    """The signatures of the requests taken in the last five minutes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # Twice the signature's lifetime: a timestamp may be off either way by five minutes.
        self._seen = Recent(2 * SIGNATURE_MAX_AGE, REMEMBERED_MAX)

    def first_time(self, signature: str) -> bool:
        """Remember a verified signature; False when it was taken before (a replay)."""
        return self._seen.first(signature, self._clock())

"""What Slack's HTTP endpoint checks before and after it reads a body: the signature headers
and their age (before), the signature itself and that a signed request is not a replay (after).

Slack signs `v0:<X-Slack-Request-Timestamp>:<body>` and the receiver takes a signature for
five minutes (api.slack.com/authentication/verifying-requests-from-slack). Within them a
captured slash command or interaction could be sent again as it is; Slack itself never sends
one twice, so a signature seen before is refused. Events API deliveries are retried by Slack
and de-duplicated by their ids instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bridge.recent import Recent

log = logging.getLogger(__name__)

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


class SignedRequests:
    """What a request must pass once its body is read: a signature made with the app's signing
    secret (slack-sdk's SignatureVerifier), and for slash commands and forms no replay."""

    def __init__(self, signing_secret: str, clock: Callable[[], float] = time.time) -> None:
        # Socket Mode has no signing secret, and no HTTP endpoint to check.
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._signatures = RecentSignatures(clock)

    def _valid(self, body: bytes, timestamp: str, signature: str) -> bool:
        if self._verifier is None:
            return False
        try:
            return bool(self._verifier.is_valid(body, timestamp, signature))
        except (UnicodeDecodeError, ValueError):  # a body Slack cannot have signed
            return False

    def refusal(self, request: web.Request, body: bytes) -> web.Response | None:
        """The answer to a request that is not Slack's, or None to go on."""
        # The route's screen has refused missing and stale headers already.
        signature = request.headers[SIGNATURE_HEADER]
        if not self._valid(body, request.headers[TIMESTAMP_HEADER], signature):
            return refusal("bad Slack signature")
        # Slash commands and interactions (forms) are never sent twice: a repeat is a replay.
        form = request.content_type != "application/json"
        if form and not self._signatures.first_time(signature):
            log.warning("Slack: refused a replayed request")
            return refusal("replayed Slack request")
        return None

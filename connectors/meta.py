"""Meta's webhook mechanics, the same for WhatsApp and Messenger.

Meta checks a webhook once with a GET carrying hub.mode, hub.verify_token and hub.challenge,
then POSTs events signed with the app's secret (`X-Hub-Signature-256: sha256=<hex HMAC>`).
One endpoint serves the accounts (numbers, pages) of several apps, so a body is believed only
for the accounts of the app whose secret signed it. Parsing the bodies stays in each platform's
module.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from bridge import bodies
from bridge.errors import BadRequest
from bridge.types import InboundEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"

AppSecrets = Sequence[tuple[bytes, frozenset[str]]]
"""Each app secret once, with the accounts of the app it belongs to."""


def app_secrets(accounts: Iterable[tuple[str, SecretStr]]) -> AppSecrets:
    """Group (account id, app secret) pairs by secret, so that each secret is tried once."""
    by_secret: dict[bytes, set[str]] = {}
    for account, secret in accounts:
        by_secret.setdefault(secret.get_secret_value().encode(), set()).add(account)
    return [(secret, frozenset(ids)) for secret, ids in by_secret.items()]


def verify_tokens(tokens: Iterable[SecretStr]) -> list[bytes]:
    """The verify tokens as the subscription check compares them."""
    return [token.get_secret_value().encode() for token in tokens]


def hub_challenge(query: Mapping[str, str], tokens: Sequence[bytes]) -> str | None:
    """The challenge to echo for a subscription check with a known token; None otherwise."""
    given = query.get("hub.verify_token", "").encode("utf-8", "replace")
    known = False
    for token in tokens:
        # Every token is compared, so the time taken does not tell which one matched.
        known |= hmac.compare_digest(given, token)
    if query.get("hub.mode") != "subscribe" or not known:
        return None
    return query.get("hub.challenge", "")


def guarded(handler: bodies.Handler) -> bodies.Handler:
    """The POST handler behind the body rules: unsigned is a 401 before a byte is read, the
    body is capped and read under the process's limit of bodies not yet believed."""
    return bodies.guarded(handler, screen=bodies.requires(SIGNATURE_HEADER), signed_body=True)


def signed_accounts(header: str, body: bytes, secrets: AppSecrets) -> set[str]:
    """The accounts whose app secret produced the header's signature over the raw body."""
    scheme, _, given = header.partition("=")
    if scheme.strip().lower() != "sha256" or not given:
        return set()
    given_hex = given.strip().lower().encode("ascii", "replace")
    accounts: set[str] = set()
    for secret, ids in secrets:
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(given_hex, expected):
            accounts |= ids
    return accounts


async def read_signed(
    request: web.Request, secrets: AppSecrets, platform: str
) -> tuple[bytes, set[str]] | web.Response:
    """The raw body and the accounts that signed it, or the answer: 401 unsigned, 403 forged."""
    header = request.headers.get(SIGNATURE_HEADER)
    if header is None:
        return web.Response(status=401, text="missing signature")
    body = await request.read()
    accounts = signed_accounts(header, body, secrets)
    if not accounts:
        log.warning("%s webhook: refused a body with a wrong signature", platform)
        return web.Response(status=403, text="wrong signature")
    return body, accounts


async def signed_events(
    request: web.Request,
    secrets: AppSecrets,
    platform: str,
    parse: Callable[[Any, Collection[str]], list[InboundEvent]],
    *,
    refusal: str = "not a valid webhook body",
) -> list[InboundEvent] | web.Response:
    """The events of a signed body for the accounts that signed it, or the answer: 401 unsigned,
    403 forged, 400 (`refusal`) malformed, "ignored" when nothing in it is for the bridge."""
    signed = await read_signed(request, secrets, platform)
    if isinstance(signed, web.Response):
        return signed
    body, accounts = signed
    try:
        events = parse(json.loads(body), accounts)
    except (ValueError, RecursionError, BadRequest) as exc:
        log.warning("%s webhook: refused a malformed body: %s", platform, exc)
        return web.Response(status=400, text=refusal)
    if not events:
        return web.Response(text="ignored")
    return events

"""What the fake WhatsApp and the fake Messenger do alike: play Meta calling the webhook.

Their webhook bodies start from the samples of what Meta sends in `tests/corpus/whatsapp/`
and `tests/corpus/messenger/` (`corpus_sample`), with ids, numbers and texts filled in.

Meta signs every webhook body with the app secret (`X-Hub-Signature-256: sha256=<hex HMAC>`,
and the older SHA-1 `X-Hub-Signature` next to it) and checks a webhook once with a GET that
carries hub.mode, hub.verify_token and hub.challenge.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.fakes.server import FakeServer

SIGNATURE_HEADER = "X-Hub-Signature-256"
CORPUS = Path(__file__).parent.parent / "corpus"


def corpus_sample(platform: str, name: str) -> dict[str, Any]:
    """A fresh copy of the sample `tests/corpus/<platform>/<name>.json`, to fill in."""
    return copy.deepcopy(_read_sample(platform, name))


@functools.cache
def _read_sample(platform: str, name: str) -> dict[str, Any]:
    sample = json.loads((CORPUS / platform / f"{name}.json").read_text(encoding="utf-8"))
    if not isinstance(sample, dict):
        msg = f"the {platform} sample {name} is not a JSON object"
        raise TypeError(msg)
    return sample


class MetaFake(FakeServer):
    """A fake Meta platform API that delivers signed webhooks to `webhook_url`."""

    def __init__(self, *, app_secret: str, verify_token: str) -> None:
        super().__init__()
        self.app_secret = app_secret
        self.verify_token = verify_token
        self.webhook_url = ""

    def sign(self, body: bytes, secret: str | None = None) -> str:
        """The X-Hub-Signature-256 header value for a body, as Meta computes it."""
        key = (secret if secret is not None else self.app_secret).encode()
        return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()

    async def deliver(
        self, payload: Mapping[str, Any] | bytes, *, sign: bool = True, secret: str | None = None
    ) -> int:
        """POST a webhook body (bytes as they are), signed with the app secret or `secret`."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
        if sign:
            headers[SIGNATURE_HEADER] = self.sign(body, secret)
            key = (secret if secret is not None else self.app_secret).encode()
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
        async with self._session().post(self._webhook(), data=body, headers=headers) as response:
            await response.read()
            return response.status

    async def verify(self, mode: str, token: str, challenge: str) -> tuple[int, str]:
        """Meta's subscription check: GET the webhook with hub.* parameters."""
        params = {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge}
        async with self._session().get(self._webhook(), params=params) as response:
            return response.status, await response.text()

    def _webhook(self) -> str:
        if not self.webhook_url:
            msg = "set webhook_url first"
            raise RuntimeError(msg)
        return self.webhook_url

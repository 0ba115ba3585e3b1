"""Idempotency keys: an operation marked `idempotent` takes an `Idempotency-Key` header.

Its answer is kept (in the transaction that did the work, see `KeptAnswers.write_once`) and
given again for a repeat with the same body, also after a restart; the same key with another
body → 422. Answers are kept for KEEP_ANSWERS.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from bridge.api.errors import ApiError
from bridge.services import Services
from storage import Tx
from storage.api_keys import ApiKeyRecord, KeptAnswer

IDEMPOTENCY_HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")
# How long an answer is kept for its Idempotency-Key (retries come within minutes or hours).
KEEP_ANSWERS = timedelta(days=7)
PRUNE_EVERY = timedelta(hours=1)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A request's Idempotency-Key: the API key that sent it, the key, what was asked."""

    key_id: int
    key: str
    fingerprint: str  # of the method, path and body: a repeat must ask the same
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class Replay:
    """An answer kept for an Idempotency-Key, given again as it was."""

    status: int
    text: str


def idempotency_of(
    request: web.Request, *, idempotent: bool, key: ApiKeyRecord | None, raw: object
) -> Idempotency | None:
    """The request's Idempotency-Key, where its operation takes one and a key sent it; `raw`
    is the parsed body."""
    typed = request.headers.get(IDEMPOTENCY_HEADER)
    if not idempotent or typed is None or key is None:
        return None
    if KEY_PATTERN.fullmatch(typed) is None:
        raise ApiError(
            400,
            "bad_idempotency_key",
            f"{IDEMPOTENCY_HEADER} has 1-128 printable ASCII characters without spaces",
            field=IDEMPOTENCY_HEADER,
        )
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    seen = f"{request.method} {request.path}\n{canonical}".encode()
    return Idempotency(
        key.id, typed, hashlib.sha256(seen).hexdigest(), request.method, request.path
    )


def replay(kept: KeptAnswer, idem: Idempotency) -> Replay:
    """The kept answer, if the request is the one it answered."""
    if kept.fingerprint != idem.fingerprint:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"this {IDEMPOTENCY_HEADER} was used for another request ({kept.method}"
            f" {kept.path} with another body); use a new key for a new request",
            field=IDEMPOTENCY_HEADER,
        )
    return Replay(kept.status, kept.body)


def replayed(kept: Replay) -> web.Response:
    """A kept answer as it is given again, marked as such."""
    return web.Response(
        text=kept.text,
        status=kept.status,
        content_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


class KeptAnswers:
    """The answers kept for Idempotency-Keys, stored beside the work they answer."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._pruned_at: datetime | None = None

    async def earlier(self, idem: Idempotency) -> Replay | None:
        """The answer given before with this key, if any (422 if it answered another request)."""
        kept = await self.services.read(lambda tx: tx.api_keys.kept_answer(idem.key_id, idem.key))
        return None if kept is None else replay(kept, idem)

    async def keep(self, idem: Idempotency, status: int, model: BaseModel, at: datetime) -> None:
        """Keep the answer of a handler that did not keep it with its own write."""

        def write(tx: Tx) -> None:
            if tx.api_keys.kept_answer(idem.key_id, idem.key) is None:
                _store(tx, idem, status, model, at)

        await self.services.write(write)

    async def write_once(
        self, idem: Idempotency, fn: Callable[[Tx], T], *, status: int, at: datetime
    ) -> T | Replay:
        """Run `fn` in the writer's transaction and keep its answer (a model) in the same
        transaction; a request with this key answered meanwhile gets that answer instead.
        Whatever else `fn` returns (a refusal) is not kept."""

        def write(tx: Tx) -> T | KeptAnswer:
            kept = tx.api_keys.kept_answer(idem.key_id, idem.key)
            if kept is not None:
                return kept
            result = fn(tx)
            if not isinstance(result, BaseModel):
                return result
            _store(tx, idem, status, result, at)
            self._prune(tx, at)
            return result

        got = await self.services.write(write)
        return replay(got, idem) if isinstance(got, KeptAnswer) else got

    def _prune(self, tx: Tx, now: datetime) -> None:
        """Drop answers kept longer than KEEP_ANSWERS (at most once per PRUNE_EVERY)."""
        last = self._pruned_at
        if last is not None and now - last < PRUNE_EVERY:
            return
        self._pruned_at = now
        tx.api_keys.forget_answers(now - KEEP_ANSWERS)


def _store(tx: Tx, idem: Idempotency, status: int, model: BaseModel, at: datetime) -> None:
    tx.api_keys.keep_answer(
        key_id=idem.key_id,
        idem_key=idem.key,
        method=idem.method,
        path=idem.path,
        fingerprint=idem.fingerprint,
        status=status,
        body=json.dumps(model.model_dump(mode="json")),
        at=at,
    )

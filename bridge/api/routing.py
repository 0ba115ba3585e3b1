"""The REST API as an aiohttp sub-application, built from the resources' declarations.

Around each handler (a `Call` of an `Operation`, see `bridge.api.framework`):

- authentication: `Authorization: Bearer <key>`, looked up by SHA-256; none, an unknown or a
  revoked key → 401, a key whose role is too low → 403;
- errors: every 4xx/5xx is `{"error": {"code", "message", "field"?, "details"?}}`, routing's
  404/405 and the bridge's refusals included (`bridge.api.errors`);
- validation: malformed JSON → 400; a body or query that does not fit its model → 422 naming
  the field (bodies strictly, as the document types them: `"1"` is no integer);
- pagination (`bridge.api.paging`) and idempotency (`bridge.api.idempotency`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

import bridge.api.openapi as openapi
from bridge.api.errors import (
    ApiError,
    http_response,
    internal_response,
    invalid,
    not_found,
    refusal_response,
)
from bridge.api.framework import PATH_PARAM, PREFIX, Answer, Call, Operation, Resource, Result
from bridge.api.idempotency import KeptAnswers, Replay, idempotency_of, replayed
from bridge.api.openapi import OpenApiDocument
from bridge.api.schemas import body_required
from bridge.bodies import capped_at
from bridge.errors import NotAllowed, Refused
from bridge.services import Services
from bridge.types import Role
from storage.api_keys import ApiKeyRecord

BODY_MAX = 1024 * 1024
# A key's last use is written at most this often: a busy CRM must not cost a write per call.
TOUCH_EVERY = timedelta(minutes=1)

Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Api:
    """The REST API: a sub-application whose routes and OpenAPI document come from the
    resources' registries."""

    def __init__(self, services: Services, resources: Sequence[Resource]) -> None:
        self.services = services
        self.resources = tuple(resources)
        self.answers = KeptAnswers(services)
        meta = Operation(
            method="GET",
            path="/openapi.json",
            name="openapi",
            summary="This API's OpenAPI 3.1 document",
            description="Needs no key: it describes every operation, its role and schemas.",
            tag="Meta",
            role=None,
            handler=self._openapi,
            response=OpenApiDocument,
            status=200,
            also=(),
            body=None,
            query=None,
            idempotent=False,
            errors=(),
        )
        self.operations = (meta, *(op for r in self.resources for op in r.operations))
        seen: set[tuple[str, str]] = set()
        for op in self.operations:
            if (op.method, op.path) in seen:
                msg = f"{op.method} {op.path} is declared twice"
                raise ValueError(msg)
            seen.add((op.method, op.path))
        self._document: dict[str, Any] | None = None

    def app(self) -> web.Application:
        """The sub-application to mount at PREFIX."""

        @web.middleware
        async def errors(request: web.Request, handler: Endpoint) -> web.StreamResponse:
            return await self._errors(request, handler)

        app = web.Application(middlewares=[errors])
        for op in self.operations:
            app.router.add_route(op.method, _routed(op.path), self._endpoint(op))
        return app

    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every operation (built once)."""
        if self._document is None:
            self._document = openapi.document(self.operations, self.resources)
        return self._document

    # -- around every handler -------------------------------------------------------------

    @staticmethod
    async def _errors(request: web.Request, handler: Endpoint) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except (Refused, NotAllowed) as exc:
            return refusal_response(exc)
        except web.HTTPException as exc:
            return http_response(request, exc, listing=f"{PREFIX}/openapi.json")
        except Exception as exc:
            return internal_response(request, exc)

    def _endpoint(self, op: Operation) -> Endpoint:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            now = self.services.clock()
            key = await self._authenticate(request, op, now)
            for name in op.params:
                if name.endswith("_id") and not _is_id(request.match_info[name]):
                    raise not_found(f"{name} must be a positive integer: there is no such item")
            query = self._query(request, op)
            raw, body = await self._body(request, op)
            idem = idempotency_of(request, idempotent=op.idempotent, key=key, raw=raw)
            if idem is not None:
                earlier = await self.answers.earlier(idem)
                if earlier is not None:
                    return replayed(earlier)
            call = Call(
                services=self.services,
                answers=self.answers,
                request=request,
                operation=op,
                key=key,
                now=now,
                body=body,
                query=query,
                idempotency=idem,
            )
            result: Result = await op.handler(call)
            if isinstance(result, Replay):
                return replayed(result)
            status, model = op.status, result
            if isinstance(result, Answer):
                status, model = result.status, result.body
            assert not isinstance(model, Answer)
            if idem is not None and not call.kept and model is not None and status < 300:
                await self.answers.keep(idem, status, model, now)
            if model is None:
                return web.Response(status=status)
            return web.json_response(model.model_dump(mode="json"), status=status)

        return endpoint

    async def _authenticate(
        self, request: web.Request, op: Operation, now: datetime
    ) -> ApiKeyRecord | None:
        if op.role is None:
            return None
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        secret = secret.strip()
        challenge = {"WWW-Authenticate": 'Bearer realm="api"'}
        if scheme.lower() != "bearer" or not secret:
            raise ApiError(
                401,
                "unauthorized",
                "send an API key as `Authorization: Bearer <key>` (an admin makes one with"
                " /apikey create)",
                headers=challenge,
            )
        key = await self.services.read(lambda tx: tx.api_keys.key_by_secret(secret))
        if key is None:
            raise ApiError(401, "unauthorized", "this API key is not valid", headers=challenge)
        if key.revoked_at is not None:
            raise ApiError(401, "unauthorized", "this API key was revoked", headers=challenge)
        if key.last_used_at is None or now - key.last_used_at >= TOUCH_EVERY:
            key_id = key.id
            await self.services.write(lambda tx: tx.api_keys.touch_key(key_id, now))
        role = Role[key.role.upper()]
        if role < op.role:
            raise ApiError(
                403,
                "forbidden",
                f"{op.method} {PREFIX}{op.path} needs a key with the {op.role.label} role; this"
                f" key has the {role.label} role",
            )
        return key

    @staticmethod
    def _query(request: web.Request, op: Operation) -> BaseModel | None:
        if op.query is None:
            return None
        try:
            return op.query.model_validate(dict(request.query))
        except ValidationError as exc:
            raise invalid(exc, "query parameter") from None

    @staticmethod
    async def _body(request: web.Request, op: Operation) -> tuple[object, BaseModel | None]:
        if op.body is None:
            return None, None
        if request.content_length is not None and request.content_length > BODY_MAX:
            raise ApiError(413, "too_large", f"the body is larger than {BODY_MAX} bytes")
        try:
            data = await capped_at(request, BODY_MAX).read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "too_large", f"the body is larger than {BODY_MAX} bytes") from None
        try:
            raw = json.loads(data) if data.strip() else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "malformed_json", f"the body is not JSON: {exc}") from None
        except RecursionError:
            raise ApiError(400, "malformed_json", "the body is nested too deeply") from None
        if not data.strip() and not body_required(op.body):
            raw, data = {}, b"{}"  # every field has a default: no body is the empty object
        if raw is None:
            raise ApiError(422, "invalid", "a JSON object is expected as the body", field="body")
        try:
            # Strictly, as the document types them: no number for a time, no text for a number.
            return raw, op.body.model_validate_json(data, strict=True)
        except ValidationError as exc:
            raise invalid(exc, "field") from None

    async def _openapi(self, call: Call) -> OpenApiDocument:
        return OpenApiDocument(self.document())


def _routed(path: str) -> str:
    """The route of a path: an id parameter matches digits only, so that a path with a word in
    its place (`/rules/test`) is not taken for an id (its other methods answer 405)."""
    return PATH_PARAM.sub(lambda m: f"{{{m[1]}:[0-9]+}}" if m[1].endswith("_id") else m[0], path)


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < len(text) <= 18 and int(text) > 0

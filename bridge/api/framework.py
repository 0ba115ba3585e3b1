"""What every REST API operation shares, declared once.

An operation is an async handler of a `Call`, recorded in its resource module's `Resource` by
a decorator that says its method and path, the role a key needs, the pydantic models of its
query, body and answer, and a summary. `Api` turns those records into the aiohttp routes and
into the OpenAPI 3.1 document, so the document is always what the API does. Around each handler:

- authentication: `Authorization: Bearer <key>`, looked up by SHA-256; none, an unknown or a
  revoked key → 401, a key whose role is too low → 403;
- errors: every 4xx/5xx is `{"error": {"code", "message", "field"?, "details"?}}`, routing's
  404/405 and the services' refusals included (`NotFound` → 404, `Conflict` → 409,
  `Invalid` and other refusals → 422);
- validation: malformed JSON → 400; a body or query that does not fit its model → 422 naming
  the field (bodies strictly, as the document types them: `"1"` is no integer);
- pagination: `limit` (default 50, at most 500) and an opaque `cursor`; a page says
  `next_cursor` and `next` (the URL of the next page) while there is more;
- idempotency: an operation marked `idempotent` takes an `Idempotency-Key` header; its answer
  is kept (in the transaction that did the work, see `Call.write_once`) and given again for a
  repeat with the same body, also after a restart; the same key with another body → 422.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import inspect
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Required, TypedDict, TypeVar, Unpack

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, ValidationError
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from sqlalchemy.engine import Connection

from bridge.bodies import capped_at
from bridge.errors import Conflict, Invalid, NotFound, Refused
from bridge.services import Services
from bridge.types import Role, SurfaceName
from storage import Tx, api_keys
from storage.api_keys import ApiKeyRecord, KeptAnswer

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
# How API requests show where staff actions show their surface (a tombstone's author, say).
ORIGIN = SurfaceName("api")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
BODY_MAX = 1024 * 1024
# A key's last use is written at most this often: a busy CRM must not cost a write per call.
TOUCH_EVERY = timedelta(minutes=1)
# How long an answer is kept for its Idempotency-Key (retries come within minutes or hours).
KEEP_ANSWERS = timedelta(days=7)
PRUNE_EVERY = timedelta(hours=1)
# The largest id the databases keep (a signed 64-bit integer): a bigger one names nothing, and
# the database drivers refuse to even compare with it.
ID_MAX = 2**63 - 1
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")
_PARAM = re.compile(r"\{(\w+)\}")
IDEMPOTENCY_HEADER = "Idempotency-Key"

M = TypeVar("M", bound=BaseModel)
P = TypeVar("P", bound="Page")
T = TypeVar("T")


# -- errors ---------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer: HTTP status, a stable code, words for people, the field at fault."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: Sequence[dict[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = list(details)
        self.headers = headers

    def response(self) -> web.Response:
        """The JSON answer."""
        return error_response(
            self.status,
            self.code,
            self.message,
            field=self.field,
            details=self.details,
            headers=self.headers,
        )


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    details: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> web.Response:
    """`{"error": {"code": …, "message": …}}` with the field at fault when there is one."""
    error: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    if details:
        error["details"] = list(details)
    return web.json_response({"error": error}, status=status, headers=headers)


def not_found(what: str) -> ApiError:
    """A 404 for something the path names."""
    return ApiError(404, "not_found", what)


# -- schemas shared by every resource ---------------------------------------------------------


class Record(BaseModel):
    """Base of what the API answers: every field is always there (null when empty)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class Body(BaseModel):
    """Base of request bodies: an unknown field is refused, so that a typo does not pass."""

    model_config = ConfigDict(extra="forbid")


# Times a request may give: any time zone's offset moves them less than a day, so they can be
# compared and converted without running off the calendar (year 1 or 9999 would).
YEAR_MIN, YEAR_MAX = 1970, 9998


def _in_range(value: datetime) -> datetime:
    if not YEAR_MIN <= value.year <= YEAR_MAX:
        msg = f"the year must be {YEAR_MIN} to {YEAR_MAX}"
        raise ValueError(msg)
    return value


Time = Annotated[datetime, AfterValidator(_in_range)]
"""A time in a request body (ISO 8601)."""


class PageQuery(BaseModel):
    """Base of the queries of lists: `limit` and `cursor`."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(
        DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page (at most 500)."
    )
    cursor: str | None = Field(
        None, min_length=1, max_length=256, description="`next_cursor` of the page before."
    )


class Page(Record):
    """Base of the answers of lists: the items (declared by each page) and where to go on."""

    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")
    next: str | None = Field(description="The URL (path and query) of the next page; null: last.")


class ErrorDetail(BaseModel):
    """One problem of a request that failed validation."""

    field: str
    message: str


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str = Field(description="Stable, for programs: not_found, invalid, window_closed, …")
    message: str = Field(description="In words, for people.")
    field: str | None = Field(None, description="The field, parameter or header at fault.")
    details: list[ErrorDetail] | None = Field(None, description="Every problem found.")


class ErrorAnswer(BaseModel):
    """Every 4xx and 5xx answer."""

    error: ErrorBody


class OpenApiDocument(RootModel[dict[str, Any]]):
    """An OpenAPI 3.1 document."""


# -- operations and their registry ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """A handler's answer with another status than its operation's usual one."""

    status: int
    body: BaseModel | None = None


@dataclass(frozen=True, slots=True)
class Replay:
    """An answer kept for an Idempotency-Key, given again as it was."""

    status: int
    text: str


Result = BaseModel | Answer | Replay | None
Handler = Callable[["Call"], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path, as its decorator declared it."""

    method: str
    path: str  # below PREFIX, with {name} parameters: a name ending in _id is a positive integer
    name: str  # the operationId
    summary: str
    description: str
    tag: str
    role: Role | None  # None: no key needed
    handler: Handler
    response: type[BaseModel] | None
    status: int
    also: tuple[int, ...]  # other success statuses the handler may answer (with `Answer`)
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    idempotent: bool
    errors: tuple[int, ...]  # error statuses beyond those the framework adds by itself

    @property
    def params(self) -> list[str]:
        """The names of the path's parameters, in order."""
        return _PARAM.findall(self.path)


class RouteOptions(TypedDict, total=False):
    """What an operation's decorator says besides its path."""

    summary: Required[str]
    role: Required[Role | None]
    response: type[BaseModel] | None
    status: int
    also: tuple[int, ...]
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    idempotent: bool
    errors: tuple[int, ...]


class Resource:
    """The operations of one resource module, in the order they are declared."""

    def __init__(self, tag: str, description: str) -> None:
        self.tag = tag
        self.description = description
        self.operations: list[Operation] = []

    def route(
        self, method: str, path: str, **options: Unpack[RouteOptions]
    ) -> Callable[[Handler], Handler]:
        """Record a handler for `method` on `path` (below PREFIX)."""

        def record(handler: Handler) -> Handler:
            doc = inspect.cleandoc(handler.__doc__ or "")
            self.operations.append(
                Operation(
                    method=method,
                    path=path,
                    name=handler.__name__.strip("_"),
                    summary=options["summary"],
                    description=doc,
                    tag=self.tag,
                    role=options["role"],
                    handler=handler,
                    response=options.get("response"),
                    status=options.get("status", 200),
                    also=options.get("also", ()),
                    body=options.get("body"),
                    query=options.get("query"),
                    idempotent=options.get("idempotent", False),
                    errors=options.get("errors", ()),
                )
            )
            return handler

        return record

    def get(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Record a GET handler."""
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Record a POST handler."""
        return self.route("POST", path, **options)

    def patch(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Record a PATCH handler."""
        return self.route("PATCH", path, **options)

    def put(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Record a PUT handler."""
        return self.route("PUT", path, **options)

    def delete(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        """Record a DELETE handler."""
        return self.route("DELETE", path, **options)


# -- one request ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Idempotency:
    key_id: int
    key: str
    fingerprint: str


class Call:
    """One API request being answered: the key that asks, what it sent, the bridge's parts."""

    def __init__(
        self,
        *,
        api: Api,
        request: web.Request,
        operation: Operation,
        key: ApiKeyRecord | None,
        now: datetime,
        body: BaseModel | None,
        query: BaseModel | None,
        idempotency: _Idempotency | None,
    ) -> None:
        self.api = api
        self.request = request
        self.operation = operation
        self.key = key
        self.now = now
        self.services: Services = api.services
        self._body = body
        self._query = query
        self._idempotency = idempotency
        self.kept = False  # whether the answer was kept for its Idempotency-Key already

    # -- who asks -------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        """The key's role (admin for requests that need no key)."""
        return Role[self.key.role.upper()] if self.key is not None else Role.ADMIN

    @property
    def key_name(self) -> str:
        """The key's name, as messages sent with it are signed in threads."""
        return self.key.name if self.key is not None else "API"

    @property
    def who(self) -> str:
        """How the key is named in records and notices ("crm (API)")."""
        return f"{self.key_name} (API)"

    # -- what it sent ---------------------------------------------------------------------

    def body(self, model: type[M]) -> M:
        """The validated request body."""
        if not isinstance(self._body, model):
            msg = f"{self.operation.name} declares no body of type {model.__name__}"
            raise TypeError(msg)
        return self._body

    def query(self, model: type[M]) -> M:
        """The validated query parameters."""
        if not isinstance(self._query, model):
            msg = f"{self.operation.name} declares no query of type {model.__name__}"
            raise TypeError(msg)
        return self._query

    def id(self, name: str) -> int:
        """A path parameter that is an id (checked by the framework)."""
        return int(self.request.match_info[name])

    def text(self, name: str) -> str:
        """A path parameter as text."""
        return self.request.match_info[name]

    @contextlib.contextmanager
    def field(self, name: str) -> Iterator[None]:
        """Blame `name` for a usage error of the shared command logic run inside."""
        try:
            yield
        except Invalid as exc:
            raise ApiError(422, "invalid", str(exc), field=name) from None

    # -- the database ---------------------------------------------------------------------

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a read connection."""
        return await self.services.read(fn)

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in the writer's transaction."""
        return await self.services.write(fn)

    async def write_once(self, fn: Callable[[Tx], T]) -> T | Replay:
        """Run `fn` in the writer's transaction and keep its answer (a model) for the request's
        Idempotency-Key in the same transaction: the work and the answer are kept together or
        not at all. A request with that key answered meanwhile gets that answer instead.

        `fn` may return something else than a model to say that it did nothing (a refusal, to
        be answered after the transaction): that is not kept."""
        idem = self._idempotency
        if idem is None:
            return await self.services.write(fn)
        status, now, api = self.operation.status, self.now, self.api
        method, path = self.request.method, self.request.path

        def write(tx: Tx) -> T | KeptAnswer:
            kept = api_keys.kept_answer(tx.conn, idem.key_id, idem.key)
            if kept is not None:
                return kept
            result = fn(tx)
            if not isinstance(result, BaseModel):
                return result
            api_keys.keep_answer(
                tx.conn,
                key_id=idem.key_id,
                idem_key=idem.key,
                method=method,
                path=path,
                fingerprint=idem.fingerprint,
                status=status,
                body=json.dumps(result.model_dump(mode="json")),
                at=now,
            )
            api.prune(tx, now)
            return result

        got = await self.services.write(write)
        if isinstance(got, KeptAnswer):
            self.kept = True
            return replay(got, idem)
        self.kept = isinstance(got, BaseModel)
        return got

    # -- pages ----------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """The page size asked for."""
        return self.query(PageQuery).limit

    def after(self) -> int | None:
        """The key after which the page asked for starts (None: the first page)."""
        after = self._cursor()
        if after is None:
            return None
        if not isinstance(after, int) or isinstance(after, bool) or abs(after) > ID_MAX:
            raise _bad_cursor()
        return after

    def after_text(self) -> str | None:
        """`after` for lists ordered by a name rather than an id."""
        after = self._cursor()
        if after is not None and not isinstance(after, str):
            raise _bad_cursor()
        return after

    def _cursor(self) -> object:
        cursor = self.query(PageQuery).cursor
        if cursor is None:
            return None
        try:
            decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            after = decoded["after"]
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise _bad_cursor() from None
        if after is None:
            raise _bad_cursor()
        return after

    def page(
        self,
        model: type[P],
        rows: Sequence[T],
        *,
        key: Callable[[T], int | str],
        item: Callable[[T], BaseModel],
    ) -> P:
        """A page of `rows` (fetched with `limit + 1` to know whether more follow)."""
        limit = self.limit
        shown = list(rows[:limit])
        cursor = link = None
        if len(rows) > limit and shown:
            raw = json.dumps({"after": key(shown[-1])}, separators=(",", ":")).encode()
            cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
            link = str(self.request.rel_url.update_query(cursor=cursor))
        return model.model_validate(
            {"items": [item(r) for r in shown], "next_cursor": cursor, "next": link}
        )


def _bad_cursor() -> ApiError:
    return ApiError(400, "bad_cursor", "the cursor is not one this API gave out", field="cursor")


def replay(kept: KeptAnswer, idem: _Idempotency) -> Replay:
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


# -- the application ------------------------------------------------------------------------


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
}


class Api:
    """The REST API: a sub-application whose routes and OpenAPI document come from the
    resources' registries."""

    def __init__(self, services: Services, resources: Sequence[Resource]) -> None:
        self.services = services
        self.resources = tuple(resources)
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
        self._pruned_at: datetime | None = None

    def app(self) -> web.Application:
        """The sub-application to mount at PREFIX."""

        @web.middleware
        async def errors(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            return await self._errors(request, handler)

        app = web.Application(middlewares=[errors])
        for op in self.operations:
            app.router.add_route(op.method, _routed(op.path), self._endpoint(op))
        return app

    def prune(self, tx: Tx, now: datetime) -> None:
        """Drop answers kept longer than KEEP_ANSWERS (at most once per PRUNE_EVERY)."""
        last = self._pruned_at
        if last is not None and now - last < PRUNE_EVERY:
            return
        self._pruned_at = now
        api_keys.forget_answers(tx.conn, now - KEEP_ANSWERS)

    # -- around every handler -------------------------------------------------------------

    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except NotFound as exc:
            return error_response(404, "not_found", str(exc))
        except Conflict as exc:
            return error_response(409, "conflict", str(exc))
        except Invalid as exc:
            return error_response(422, "invalid", str(exc), field=exc.field)
        except Refused as exc:
            return error_response(422, "refused", str(exc))
        except web.HTTPException as exc:
            code = _HTTP_CODES.get(exc.status, "http_error")
            if isinstance(exc, web.HTTPMethodNotAllowed):
                allowed = ", ".join(sorted(exc.allowed_methods))
                return error_response(
                    405,
                    code,
                    f"{request.method} is not allowed on {request.path}; allowed: {allowed}",
                    headers={"Allow": allowed},
                )
            if exc.status == 404:
                return error_response(
                    404,
                    code,
                    f"no such endpoint: {request.method} {request.path}"
                    f" ({PREFIX}/openapi.json lists them)",
                )
            return error_response(exc.status, code, exc.reason)
        except Exception:
            ref = secrets.token_hex(3)
            log.exception("API %s %s failed (ref %s)", request.method, request.path, ref)
            return error_response(
                500,
                "internal",
                f"something went wrong (ref {ref}); the bridge's log has the details",
            )

    def _endpoint(self, op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            now = self.services.clock()
            key = await self._authenticate(request, op, now)
            for name in op.params:
                if name.endswith("_id") and not _is_id(request.match_info[name]):
                    raise not_found(f"{name} must be a positive integer: there is no such item")
            query = self._query(request, op)
            raw, body = await self._body(request, op)
            idem = self._idempotency(request, op, key, raw)
            if idem is not None:
                kept = await self.services.read(
                    lambda conn: api_keys.kept_answer(conn, idem.key_id, idem.key)
                )
                if kept is not None:
                    return _replayed(replay(kept, idem))
            call = Call(
                api=self,
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
                return _replayed(result)
            status, model = op.status, result
            if isinstance(result, Answer):
                status, model = result.status, result.body
            assert not isinstance(model, Answer)
            if idem is not None and not call.kept and model is not None and status < 300:
                await self._keep(call, idem, status, model)
            if model is None:
                return web.Response(status=status)
            return web.json_response(model.model_dump(mode="json"), status=status)

        return endpoint

    async def _keep(self, call: Call, idem: _Idempotency, status: int, model: BaseModel) -> None:
        """Keep the answer of a handler that did not keep it with its own write."""
        body, now = json.dumps(model.model_dump(mode="json")), call.now
        method, path = call.request.method, call.request.path

        def write(tx: Tx) -> None:
            if api_keys.kept_answer(tx.conn, idem.key_id, idem.key) is None:
                api_keys.keep_answer(
                    tx.conn,
                    key_id=idem.key_id,
                    idem_key=idem.key,
                    method=method,
                    path=path,
                    fingerprint=idem.fingerprint,
                    status=status,
                    body=body,
                    at=now,
                )

        await self.services.write(write)

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
        key = await self.services.read(lambda conn: api_keys.key_by_secret(conn, secret))
        if key is None:
            raise ApiError(401, "unauthorized", "this API key is not valid", headers=challenge)
        if key.revoked_at is not None:
            raise ApiError(401, "unauthorized", "this API key was revoked", headers=challenge)
        if key.last_used_at is None or now - key.last_used_at >= TOUCH_EVERY:
            key_id = key.id
            await self.services.write(lambda tx: api_keys.touch_key(tx.conn, key_id, now))
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
            raise _invalid(exc, "query parameter") from None

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
        if not data.strip() and not _body_required(op.body):
            raw, data = {}, b"{}"  # every field has a default: no body is the empty object
        if raw is None:
            raise ApiError(422, "invalid", "a JSON object is expected as the body", field="body")
        try:
            # Strictly, as the document types them: no number for a time, no text for a number.
            return raw, op.body.model_validate_json(data, strict=True)
        except ValidationError as exc:
            raise _invalid(exc, "field") from None

    @staticmethod
    def _idempotency(
        request: web.Request, op: Operation, key: ApiKeyRecord | None, raw: object
    ) -> _Idempotency | None:
        typed = request.headers.get(IDEMPOTENCY_HEADER)
        if not op.idempotent or typed is None or key is None:
            return None
        if _IDEMPOTENCY_KEY.fullmatch(typed) is None:
            raise ApiError(
                400,
                "bad_idempotency_key",
                f"{IDEMPOTENCY_HEADER} has 1-128 printable ASCII characters without spaces",
                field=IDEMPOTENCY_HEADER,
            )
        canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        seen = f"{request.method} {request.path}\n{canonical}".encode()
        return _Idempotency(key.id, typed, hashlib.sha256(seen).hexdigest())

    # -- the document ---------------------------------------------------------------------

    async def _openapi(self, call: Call) -> OpenApiDocument:
        return OpenApiDocument(self.document())

    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every operation (built once)."""
        if self._document is None:
            self._document = _document(self.operations, self.resources)
        return self._document


def _routed(path: str) -> str:
    """The route of a path: an id parameter matches digits only, so that a path with a word in
    its place (`/rules/test`) is not taken for an id (its other methods answer 405)."""
    return _PARAM.sub(lambda m: f"{{{m[1]}:[0-9]+}}" if m[1].endswith("_id") else m[0], path)


def _body_required(model: type[BaseModel]) -> bool:
    """Whether a body must be sent: some field of it has no default."""
    return any(field.is_required() for field in model.model_fields.values())


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < len(text) <= 18 and int(text) > 0


def _replayed(kept: Replay) -> web.Response:
    return web.Response(
        text=kept.text,
        status=kept.status,
        content_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


def _invalid(exc: ValidationError, what: str) -> ApiError:
    """A 422 naming every field at fault (the first in `field`)."""
    details = []
    for problem in exc.errors(include_url=False):
        place = ".".join(str(part) for part in problem["loc"]) or "body"
        details.append({"field": place, "message": problem["msg"]})
    first = details[0]
    return ApiError(
        422,
        "invalid",
        f"{what} {first['field']}: {first['message']}",
        field=first["field"],
        details=details,
    )


# -- OpenAPI ----------------------------------------------------------------------------------

_ERRORS = {
    400: ("BadRequest", "Malformed JSON, a bad cursor or a bad Idempotency-Key header."),
    401: ("Unauthorized", "No API key, an unknown one or a revoked one."),
    403: ("Forbidden", "The key's role is too low for this operation."),
    404: ("NotFound", "What the path names does not exist (or no such endpoint)."),
    409: ("Conflict", "The change clashes with what exists."),
    422: ("Unprocessable", "A field or parameter is not valid, or the bridge refuses the request."),
}


def _document(operations: Sequence[Operation], resources: Sequence[Resource]) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorAnswer, "serialization")]
    for op in operations:
        if op.response is not None:
            wanted.append((op.response, "serialization"))
        if op.body is not None:
            wanted.append((op.body, "validation"))
    refs, defs = models_json_schema(
        list(dict.fromkeys(wanted)), ref_template="#/components/schemas/{model}"
    )
    error_ref = refs[(ErrorAnswer, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    tags = [{"name": "Meta", "description": "About the API itself."}]
    tags += [{"name": r.tag, "description": r.description} for r in resources]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Support Bridge API",
            "version": "1",
            "description": (
                "Contacts, conversations, messages, channels, the blacklist, templates, text"
                " blocks, rules, broadcasts, short links, statistics and webhooks of the"
                " support bridge. Authenticate with `Authorization: Bearer <key>`"
                ' (`/apikey create`). Errors are `{"error": {"code", "message", "field"}}`;'
                " lists take `limit` and `cursor` and answer `next_cursor` and `next`; POSTs"
                " that send messages or start broadcasts take an `Idempotency-Key` header."
            ),
        },
        "servers": [{"url": PREFIX}],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key made with /apikey create.",
                }
            },
            "responses": {
                name: {
                    "description": text,
                    "content": {"application/json": {"schema": error_ref}},
                }
                for name, text in [*_ERRORS.values(), ("Error", "Any other error.")]
            },
        },
        "security": [{"apiKey": []}],
    }


def _operation(
    op: Operation, refs: Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.name,
        "summary": op.summary,
        "tags": [op.tag],
    }
    role = f"Needs a key with the {op.role.label} role." if op.role is not None else ""
    description = " ".join(part for part in (op.description, role) if part)
    if description:
        doc["description"] = description
    if op.role is None:
        doc["security"] = []
    parameters: list[dict[str, Any]] = []
    for name in op.params:
        schema: dict[str, Any] = (
            {"type": "integer", "minimum": 1} if name.endswith("_id") else {"type": "string"}
        )
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    if op.query is not None:
        query_schema = op.query.model_json_schema()
        if "$defs" in query_schema:
            msg = f"{op.name}: query parameters must be plain values"
            raise ValueError(msg)
        required = set(query_schema.get("required", []))
        for name, prop in query_schema.get("properties", {}).items():
            prop = {k: v for k, v in prop.items() if k != "title"}
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            if "description" in prop:
                param["description"] = prop.pop("description")
            param["schema"] = prop
            parameters.append(param)
    if op.idempotent:
        parameters.append(
            {
                "name": IDEMPOTENCY_HEADER,
                "in": "header",
                "required": False,
                "description": "1-128 printable ASCII characters without spaces. The same key"
                " with the same body gives the first answer again (kept 7 days) without doing"
                " the work twice; with another body: 422.",
                "schema": {"type": "string", "pattern": f"^{_IDEMPOTENCY_KEY.pattern}$"},
            }
        )
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:
        doc["requestBody"] = {
            "required": _body_required(op.body),
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    for status in (op.status, *op.also):
        if op.response is None or status == 204:
            responses[str(status)] = {"description": "Done; no content."}
        else:
            responses[str(status)] = {
                "description": op.summary,
                "content": {"application/json": {"schema": refs[(op.response, "serialization")]}},
            }
    errors = set(op.errors)
    if op.role is not None:
        errors.add(401)
        if op.role > Role.AGENT:
            errors.add(403)
    if op.params:
        errors.add(404)
    if op.body is not None or op.query is not None or op.idempotent:
        errors.update((400, 422))
    for status in sorted(errors):
        responses[str(status)] = {"$ref": f"#/components/responses/{_ERRORS[status][0]}"}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    doc["responses"] = responses
    return doc

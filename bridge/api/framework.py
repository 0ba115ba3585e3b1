"""What a resource module declares and what its handlers are given.

An operation is an async handler of a `Call`, recorded in its resource module's `Resource` by
a decorator that says its method and path, the role a key needs, the pydantic models of its
query, body and answer, and a summary. `bridge.api.routing.Api` turns those records into the
aiohttp routes and `bridge.api.openapi` into the OpenAPI 3.1 document, so the document is
always what the API does. Around each handler the API checks the key (401/403), validates the
query and body (400/422), answers every error alike (`bridge.api.errors`), pages lists
(`bridge.api.paging`) and keeps answers for Idempotency-Keys (`bridge.api.idempotency`).
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Required, TypedDict, TypeVar, Unpack

from aiohttp import web
from pydantic import BaseModel

import bridge.api.paging as paging
from bridge.api.errors import ApiError
from bridge.api.idempotency import Idempotency, KeptAnswers, Replay
from bridge.api.paging import PageQuery
from bridge.errors import Invalid
from bridge.services import Services
from bridge.types import Role, SurfaceName
from storage import Tx
from storage.api_keys import ApiKeyRecord

PREFIX = "/api/v1"
# How API requests show where staff actions show their surface (a tombstone's author, say).
ORIGIN = SurfaceName("api")
PATH_PARAM = re.compile(r"\{(\w+)\}")

M = TypeVar("M", bound=BaseModel)
P = TypeVar("P", bound=paging.Page)
T = TypeVar("T")


# -- operations and their registry ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """A handler's answer with another status than its operation's usual one."""

    status: int
    body: BaseModel | None = None


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
        return PATH_PARAM.findall(self.path)


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


class Call:
    """One API request being answered: the key that asks, what it sent, the bridge's parts."""

    def __init__(
        self,
        *,
        services: Services,
        answers: KeptAnswers,
        request: web.Request,
        operation: Operation,
        key: ApiKeyRecord | None,
        now: datetime,
        body: BaseModel | None,
        query: BaseModel | None,
        idempotency: Idempotency | None,
    ) -> None:
        self.services = services
        self.request = request
        self.operation = operation
        self.key = key
        self.now = now
        self._body = body
        self._query = query
        self._answers = answers
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
        """Blame `name` for an `Invalid` (a usage error) of the shared logic run inside."""
        try:
            yield
        except Invalid as exc:
            raise ApiError(422, "invalid", str(exc), field=name) from None

    # -- the database ---------------------------------------------------------------------

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
        got = await self._answers.write_once(idem, fn, status=self.operation.status, at=self.now)
        self.kept = isinstance(got, Replay | BaseModel)
        return got

    # -- pages ----------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """The page size asked for."""
        return self.query(PageQuery).limit

    def after(self) -> int | None:
        """The key after which the page asked for starts (None: the first page)."""
        return paging.after_id(self.query(PageQuery).cursor)

    def after_text(self) -> str | None:
        """`after` for lists ordered by a name rather than an id."""
        return paging.after_text(self.query(PageQuery).cursor)

    def page(
        self,
        model: type[P],
        rows: Sequence[T],
        *,
        key: Callable[[T], int | str],
        item: Callable[[T], BaseModel],
    ) -> P:
        """A page of `rows` (fetched with `limit + 1` to know whether more follow)."""
        return paging.page(
            model, rows, limit=self.limit, url=self.request.rel_url, key=key, item=item
        )

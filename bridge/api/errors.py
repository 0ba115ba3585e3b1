"""How the REST API answers what went wrong: one JSON shape for every 4xx and 5xx.

Every error answer is `{"error": {"code", "message", "field"?, "details"?}}`. The refusals of
the bridge's one error tree become their statuses here (`NotFound` → 404, `Conflict` → 409,
`Invalid` and other refusals → 422, `NotAllowed` → 403), routing's 404 and 405 too, and anything
unexpected a 500 with a reference to the traceback in the log.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from bridge.errors import Conflict, Invalid, NotAllowed, NotFound, Refused

log = logging.getLogger(__name__)


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


def invalid(exc: ValidationError, what: str) -> ApiError:
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


# The bridge's refusals by status and code, the most specific first.
_REFUSALS: tuple[tuple[type[Exception], int, str], ...] = (
    (NotAllowed, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (Invalid, 422, "invalid"),
    (Refused, 422, "refused"),
)

HTTP_CODES = {
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


def refusal_response(exc: Refused | NotAllowed) -> web.Response:
    """The answer to a refusal of the bridge's error tree; an `Invalid` names its field."""
    field = exc.field if isinstance(exc, Invalid) else None
    for kind, status, code in _REFUSALS:
        if isinstance(exc, kind):
            return error_response(status, code, str(exc), field=field)
    raise AssertionError(exc)  # Refused is the last row


def http_response(request: web.Request, exc: web.HTTPException, *, listing: str) -> web.Response:
    """The answer to routing's own errors: no such endpoint (`listing` names the list of
    them), a method the path does not take."""
    code = HTTP_CODES.get(exc.status, "http_error")
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
            404, code, f"no such endpoint: {request.method} {request.path} ({listing} lists them)"
        )
    return error_response(exc.status, code, exc.reason)


def internal_response(request: web.Request, exc: Exception) -> web.Response:
    """The answer to a failure nobody expected: a reference to the traceback in the log, and
    nothing of the error itself (it may hold a secret or a customer's data)."""
    ref = secrets.token_hex(3)
    log.error("API %s %s failed (ref %s)", request.method, request.path, ref, exc_info=exc)
    return error_response(
        500, "internal", f"something went wrong (ref {ref}); the bridge's log has the details"
    )

"""The OpenAPI 3.1 document of the REST API, built from the operations' declarations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, RootModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from bridge.api.errors import ErrorAnswer
from bridge.api.framework import PREFIX, Operation, Resource
from bridge.api.idempotency import IDEMPOTENCY_HEADER, KEY_PATTERN
from bridge.api.schemas import body_required
from bridge.types import Role


class OpenApiDocument(RootModel[dict[str, Any]]):
    """An OpenAPI 3.1 document."""


# The shared error answers, by status: their names in `components.responses` and what they mean.
ERRORS = {
    400: ("BadRequest", "Malformed JSON, a bad cursor or a bad Idempotency-Key header."),
    401: ("Unauthorized", "No API key, an unknown one or a revoked one."),
    403: ("Forbidden", "The key's role is too low for this operation."),
    404: ("NotFound", "What the path names does not exist (or no such endpoint)."),
    409: ("Conflict", "The change clashes with what exists."),
    422: ("Unprocessable", "A field or parameter is not valid, or the bridge refuses the request."),
}


def document(operations: Sequence[Operation], resources: Sequence[Resource]) -> dict[str, Any]:
    """The document of `operations`, tagged by the resources that declare them."""
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
                for name, text in [*ERRORS.values(), ("Error", "Any other error.")]
            },
        },
        "security": [{"apiKey": []}],
    }


def _operation(
    op: Operation, refs: Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]
) -> dict[str, Any]:
    """One operation's entry under its path; `refs` point at the schemas of its models."""
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
    parameters = _parameters(op)
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:
        doc["requestBody"] = {
            "required": body_required(op.body),
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    doc["responses"] = _responses(op, refs)
    return doc


def _parameters(op: Operation) -> list[dict[str, Any]]:
    """The path, query and header parameters of an operation, in that order."""
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
                "schema": {"type": "string", "pattern": f"^{KEY_PATTERN.pattern}$"},
            }
        )
    return parameters


def _responses(
    op: Operation, refs: Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]
) -> dict[str, Any]:
    """What an operation may answer: its successes, the errors it and the API may give."""
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
        responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    return responses

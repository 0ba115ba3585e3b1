"""Call the bridge's REST API as a CRM would, and check every answer against the OpenAPI
document the bridge serves (the schema of the operation and status that answered)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator

from tests.commands_kit import ADMIN, command

PREFIX = "/api/v1"
_KEY = re.compile(r"sbk_[A-Za-z0-9_-]{20,}")


@dataclass
class Answer:
    """What the API answered."""

    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error(self) -> dict[str, Any]:
        """The `error` object of an error answer."""
        assert isinstance(self.body, dict) and "error" in self.body, self.body
        return self.body["error"]


@dataclass
class Checked:
    """Answers seen, by (method, documented path, status)."""

    seen: set[tuple[str, str, str]] = field(default_factory=set)


CHECKED = Checked()


async def make_key(world, name: str = "crm", role: str = "agent", *, user: str = ADMIN) -> str:
    """A new API key, made with `/apikey create` (the key is in the private answer)."""
    reply = await command(world, f"apikey create {name} {role}", user=user)
    assert reply.ok, reply.text
    found = _KEY.search(reply.text)
    assert found, reply.text
    return found.group(0)


class Api:
    """A client of one bridge's API that validates every answer against its document."""

    def __init__(self, world) -> None:
        self.world = world
        self._doc: dict[str, Any] | None = None

    @property
    def base(self) -> str:
        return self.world.bridge.url + PREFIX

    async def raw(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request; the answer as it came (not validated)."""
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with aiohttp.ClientSession() as http:
            async with http.request(method, self.base + path, data=data, headers=sent) as r:
                text = await r.text()
                parsed = json.loads(text) if text else None
                return Answer(r.status, parsed, dict(r.headers))

    async def call(self, method: str, path: str, **kw: Any) -> Answer:
        """One request, its answer validated against the served OpenAPI document."""
        answer = await self.raw(method, path, **kw)
        await self.validate(method, path, answer)
        return answer

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Answer:
        return await self.call("POST", path, **kw)

    async def patch(self, path: str, **kw: Any) -> Answer:
        return await self.call("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Answer:
        return await self.call("DELETE", path, **kw)

    async def document(self) -> dict[str, Any]:
        if self._doc is None:
            answer = await self.raw("GET", "/openapi.json")
            assert answer.status == 200, answer.body
            self._doc = answer.body
        return self._doc

    async def validate(self, method: str, path: str, answer: Answer) -> None:
        """The answer fits the schema the document gives for its operation and status."""
        doc = await self.document()
        plain = path.split("?", 1)[0]
        template = _template(doc, plain)
        if template is None or method.lower() not in doc["paths"][template]:
            # Not an operation: routing's 404 or 405, in the error format.
            assert answer.status in (404, 405), (method, path, answer.status)
            _check(doc, {"$ref": "#/components/schemas/ErrorAnswer"}, answer.body)
            return
        operation = doc["paths"][template][method.lower()]
        responses = operation["responses"]
        documented = responses.get(str(answer.status)) or responses["default"]
        if "$ref" in documented:
            documented = doc["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
        content = documented.get("content")
        if content is None:
            assert answer.body is None, answer.body
        else:
            _check(doc, content["application/json"]["schema"], answer.body)
        CHECKED.seen.add((method.upper(), template, str(answer.status)))


def _template(doc: dict[str, Any], path: str) -> str | None:
    for template in doc["paths"]:
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return template
    return None


def _check(doc: dict[str, Any], schema: dict[str, Any], body: Any) -> None:
    rooted = {**schema, "components": doc["components"]}
    errors = sorted(Draft202012Validator(rooted).iter_errors(body), key=str)
    assert not errors, f"{body!r} does not fit {schema}: {errors[0]}"

"""The REST API at `/api/v1/`, and its OpenAPI 3.1 document at `/api/v1/openapi.json`.

Every operation is declared in a resource module with a decorator; the routes and the document
are built from those declarations (`bridge.api.routing`, `bridge.api.openapi`), so they
cannot drift apart. The logic is shared with the chat commands: handlers call the domain
operations of `bridge.services` (with the key as the caller), as the commands do, so the API
and the slash commands check and refuse alike.

Adding a resource is one module:

1. Create `bridge/api/<things>.py` with `resource = Resource("Things", "what they are")`.
2. Declare the records it answers as subclasses of `Record` (a list answers a subclass of
   `Page` with `items: list[Thing]`), request bodies as subclasses of `Body`, and list
   filters as subclasses of `PageQuery` (`bridge.api.schemas`, `bridge.api.paging`).
3. Write one async handler per operation, taking a `Call`, and decorate it:

       @resource.get("/things/{thing_id}", summary="Show a thing", role=Role.AGENT,
                     response=Thing)
       async def show_thing(call: Call) -> Thing:
           \"\"\"The description shown in the document.\"\"\"
           found = await things.thing(call.services, call.id("thing_id"))
           if found is None:
               raise not_found("there is no such thing")
           return Thing(...)

   Path parameters ending in `_id` are positive integers (anything else is a 404); others
   are text (`call.text(name)`). `call.body(Model)` / `call.query(Model)` are validated
   already (a body strictly, as JSON; one whose fields all have defaults may be left out);
   ids in bodies and queries take `le=ID_MAX`, times the type `Time`. A list returns
   `call.page(ThingPage, rows, key=…, item=…)` over rows read with `limit + 1` after
   `call.after()` (`call.after_text()` for lists ordered by a name). Raise `ApiError` (or
   let the domain operations of `bridge.services` raise `NotFound`, `Conflict`, `Invalid`,
   `Refused`: they become 404, 409 and 422, see `bridge.api.errors`; `with call.field("name"):`
   names the field of an `Invalid`). A resource module imports no SQLAlchemy and nothing of
   `commands`. A POST that sends something is declared `idempotent=True` and does its write
   with `call.write_once(fn)`.
4. Add the module's `resource` to `RESOURCES` below. The test of the document then checks
   that every route is documented.
"""

from __future__ import annotations

from aiohttp import web

from bridge.api import (
    blacklist,
    broadcasts,
    channels,
    contacts,
    conversations,
    keys,
    links,
    rules,
    stats,
    templates,
    textblocks,
    webhooks,
)
from bridge.api.framework import PREFIX, Resource
from bridge.api.routing import Api
from bridge.services import Services

RESOURCES: tuple[Resource, ...] = (
    contacts.resource,
    conversations.resource,
    channels.resource,
    blacklist.resource,
    templates.resource,
    textblocks.resource,
    rules.resource,
    broadcasts.resource,
    links.resource,
    stats.resource,
    webhooks.resource,
    keys.resource,
)

__all__ = ["PREFIX", "RESOURCES", "Api", "build_api"]


def build_api(services: Services) -> tuple[Api, web.Application]:
    """The API and its sub-application, to mount at PREFIX."""
    api = Api(services, RESOURCES)
    return api, api.app()

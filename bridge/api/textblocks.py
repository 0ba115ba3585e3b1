"""Text blocks: saved replies with placeholders (the `/textblock` command's logic and checks)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from bridge.api.errors import ApiError, not_found
from bridge.api.framework import Call, Resource
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import Body, Record
from bridge.errors import Invalid
from bridge.services import textblocks
from bridge.services.textblocks import (
    PLACEHOLDERS,
    TEXT_LIMIT,
    block_name,
    check_text,
    placeholders_used,
)
from bridge.types import Role
from storage.catalog import TextBlockRecord

resource = Resource(
    "Text blocks",
    "Saved replies with placeholders, sent in a conversation's thread with `!tb <name>`: "
    + ", ".join(f"{{{name}}} ({what})" for name, what in PLACEHOLDERS.items())
    + ".",
)


class TextBlock(Record):
    """A saved reply."""

    name: str = Field(description="Lowercase letters, digits, _ and -.")
    body: str
    placeholders: list[str] = Field(description="The placeholders its text uses, e.g. NAME.")
    created_by: str = Field(description="Who saved it last.")
    created_at: datetime = Field(description="When it was first saved.")


class TextBlockPage(Page):
    """A page of text blocks, by name."""

    items: list[TextBlock]


class TextBlockCreate(Body):
    """A text block, as `/textblock add` takes it."""

    name: str = Field(min_length=1, max_length=64, examples=["hours"])
    body: str = Field(
        min_length=1,
        max_length=TEXT_LIMIT,
        examples=["Hi {FIRSTNAME}, we are open Monday to Friday, 9 to 17."],
    )


class TextBlockChange(Body):
    """A text block's new text."""

    body: str = Field(min_length=1, max_length=TEXT_LIMIT)


def _block(b: TextBlockRecord) -> TextBlock:
    return TextBlock(
        name=b.name,
        body=b.body,
        placeholders=placeholders_used(b.body),
        created_by=b.created_by,
        created_at=b.created_at,
    )


def _name(call: Call) -> str:
    """The block name of the path, or 404 (no block can have a name that is not one)."""
    typed = call.text("name")
    try:
        return block_name(typed)
    except Invalid:
        raise not_found(f"there is no text block named {typed}") from None


async def _one(call: Call, name: str) -> TextBlockRecord:
    found = await textblocks.text_block(call.services, name)
    if found is None:
        raise not_found(f"there is no text block named {name}")
    return found


@resource.get(
    "/text-blocks",
    summary="List text blocks",
    role=Role.AGENT,
    query=PageQuery,
    response=TextBlockPage,
)
async def list_text_blocks(call: Call) -> TextBlockPage:
    """By name, as `/textblock list`."""
    after, limit = call.after_text(), call.limit
    stored = await textblocks.all_text_blocks(call.services)
    # Text blocks are a team's few dozen saved replies: one read, paged here.
    rows = [b for b in stored if after is None or b.name > after]
    return call.page(TextBlockPage, rows[: limit + 1], key=lambda b: b.name, item=_block)


@resource.post(
    "/text-blocks",
    summary="Save a text block",
    role=Role.MANAGER,
    body=TextBlockCreate,
    response=TextBlock,
    status=201,
    errors=(409,),
)
async def create_text_block(call: Call) -> TextBlock:
    """Checked as `/textblock add` checks it: the name (compared in lowercase), a text that
    fits a message, known placeholders only. 409 when the name is taken (change it with
    PATCH)."""
    body = call.body(TextBlockCreate)
    with call.field("name"):
        name = block_name(body.name)
    with call.field("body"):
        text = check_text(body.body)
    if not await textblocks.save_text_block(
        call.services, name, text, call.who, call.now, exists=False
    ):
        raise ApiError(409, "conflict", f"there is a text block named {name} already")
    return _block(await _one(call, name))


@resource.get(
    "/text-blocks/{name}",
    summary="Show a text block",
    role=Role.AGENT,
    response=TextBlock,
)
async def show_text_block(call: Call) -> TextBlock:
    """Its text and the placeholders it uses."""
    return _block(await _one(call, _name(call)))


@resource.patch(
    "/text-blocks/{name}",
    summary="Change a text block's text",
    role=Role.MANAGER,
    body=TextBlockChange,
    response=TextBlock,
)
async def change_text_block(call: Call) -> TextBlock:
    """As `/textblock add` with a name that exists: the text is replaced (checked the same
    way)."""
    name = _name(call)
    with call.field("body"):
        text = check_text(call.body(TextBlockChange).body)
    if not await textblocks.save_text_block(
        call.services, name, text, call.who, call.now, exists=True
    ):
        raise not_found(f"there is no text block named {name}")
    return _block(await _one(call, name))


@resource.delete(
    "/text-blocks/{name}",
    summary="Delete a text block",
    role=Role.MANAGER,
    status=204,
)
async def delete_text_block(call: Call) -> None:
    """As `/textblock delete`."""
    name = _name(call)
    if not await textblocks.delete_text_block(call.services, name):
        raise not_found(f"there is no text block named {name}")

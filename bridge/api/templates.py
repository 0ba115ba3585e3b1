"""WhatsApp message templates kept in the bridge (the `/template` command's logic and checks)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from bridge.api.errors import ApiError, not_found
from bridge.api.framework import Call, Resource
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import Body, Record
from bridge.errors import Invalid
from bridge.services import templates
from bridge.services.templates import (
    BODY_LIMIT,
    check_body,
    param_count,
    template_language,
    template_name,
)
from bridge.types import Role
from storage.catalog import TemplateRecord

resource = Resource(
    "Templates",
    "WhatsApp message templates kept in the bridge: what may be sent once the 24-hour window"
    " is closed, and what a broadcast to WhatsApp needs.",
)


class Template(Record):
    """A template in one language."""

    name: str = Field(description="Lowercase letters, digits and underscores, as Meta has it.")
    language: str = Field(description="Meta's language code: en_US, de, pt_BR, …")
    body: str = Field(description="The text, its parameters numbered {{1}}, {{2}}, …")
    parameters: int = Field(description="How many parameters a send must give.")
    created_by: str = Field(description="Who saved it last.")
    created_at: datetime = Field(description="When it was first saved.")


class TemplatePage(Page):
    """A page of templates, by name and language."""

    items: list[Template]


class TemplateQuery(PageQuery):
    """Filters of the template list."""

    name: str | None = Field(
        None, min_length=1, max_length=512, description="Only this template's languages."
    )


class TemplateCreate(Body):
    """A template to keep, as `/template add` takes it."""

    name: str = Field(min_length=1, max_length=512, examples=["order_update"])
    language: str = Field(min_length=2, max_length=16, examples=["en_US"])
    body: str = Field(
        min_length=1,
        max_length=BODY_LIMIT,
        description="Parameters are numbered from {{1}} without gaps.",
        examples=["Hello {{1}}, your order {{2}} has shipped."],
    )


class TemplateChange(Body):
    """A template's new body."""

    body: str = Field(min_length=1, max_length=BODY_LIMIT)


class TemplatesDeleted(Record):
    """A template deleted in every language it had."""

    name: str
    languages: list[str]


def _template(t: TemplateRecord) -> Template:
    return Template(
        name=t.name,
        language=t.language,
        body=t.body,
        parameters=param_count(t.body),
        created_by=t.created_by,
        created_at=t.created_at,
    )


def _name(call: Call) -> str:
    """The template name of the path, or 404 (no template can have a name that is not one)."""
    typed = call.text("name")
    try:
        return template_name(typed)
    except Invalid:
        raise not_found(f"there is no template named {typed}") from None


def _language(call: Call) -> str:
    typed = call.text("language")
    try:
        return template_language(typed)
    except Invalid:
        raise not_found(f"there is no template language {typed}") from None


async def _one(call: Call, name: str, language: str) -> TemplateRecord:
    found = await templates.templates_named(call.services, name)
    for t in found:
        if t.language == language:
            return t
    have = f" (it has {', '.join(t.language for t in found)})" if found else ""
    raise not_found(f"there is no template {name} in {language}{have}")


@resource.get(
    "/templates",
    summary="List templates",
    role=Role.AGENT,
    query=TemplateQuery,
    response=TemplatePage,
)
async def list_templates(call: Call) -> TemplatePage:
    """By name, then language, as `/template list`; `/template sync` in Slack imports the
    approved ones of the WhatsApp numbers."""
    query = call.query(TemplateQuery)
    after = call.after_text()
    wanted = query.name.strip().lower() if query.name is not None else None
    stored = await templates.all_templates(call.services)
    # Templates are few (each is approved by Meta one by one): one read, paged here.
    start = tuple(after.partition(":")[::2]) if after is not None else None
    rows = [
        t
        for t in stored
        if (wanted is None or t.name == wanted) and (start is None or (t.name, t.language) > start)
    ]
    return call.page(
        TemplatePage,
        rows[: query.limit + 1],
        key=lambda t: f"{t.name}:{t.language}",
        item=_template,
    )


@resource.post(
    "/templates",
    summary="Keep a template",
    role=Role.MANAGER,
    body=TemplateCreate,
    response=Template,
    status=201,
    errors=(409,),
)
async def create_template(call: Call) -> Template:
    """Checked as `/template add` checks it: Meta's name and language rules, parameters
    numbered from {{1}} without gaps. 409 when the template has this language already (change
    it with PATCH)."""
    body = call.body(TemplateCreate)
    with call.field("name"):
        name = template_name(body.name)
    with call.field("language"):
        language = template_language(body.language)
    text = body.body.strip()
    with call.field("body"):
        check_body(text)
    if not await templates.add_template(call.services, name, language, text, call.who, call.now):
        raise ApiError(409, "conflict", f"template {name} has a {language} version already")
    return _template(await _one(call, name, language))


@resource.get(
    "/templates/{name}/{language}",
    summary="Show a template",
    role=Role.AGENT,
    response=Template,
)
async def show_template(call: Call) -> Template:
    """Its body and how many parameters it takes."""
    return _template(await _one(call, _name(call), _language(call)))


@resource.patch(
    "/templates/{name}/{language}",
    summary="Change a template's body",
    role=Role.MANAGER,
    body=TemplateChange,
    response=Template,
)
async def change_template(call: Call) -> Template:
    """As `/template add` with a name and language that exist: the body is replaced (checked
    the same way)."""
    name, language = _name(call), _language(call)
    text = call.body(TemplateChange).body.strip()
    with call.field("body"):
        check_body(text)
    if not await templates.change_template(call.services, name, language, text, call.who, call.now):
        raise not_found(f"there is no template {name} in {language}")
    return _template(await _one(call, name, language))


@resource.delete(
    "/templates/{name}/{language}",
    summary="Delete a template in one language",
    role=Role.MANAGER,
    status=204,
)
async def delete_template(call: Call) -> None:
    """As `/template delete <name> <language>`."""
    name, language = _name(call), _language(call)
    gone = await templates.delete_templates(call.services, name, language)
    if not gone:
        raise not_found(f"there is no template {name} in {language}")


@resource.delete(
    "/templates/{name}",
    summary="Delete a template in every language",
    role=Role.MANAGER,
    response=TemplatesDeleted,
)
async def delete_template_languages(call: Call) -> TemplatesDeleted:
    """As `/template delete <name>`: every language it has."""
    name = _name(call)
    gone = await templates.delete_templates(call.services, name)
    if not gone:
        raise not_found(f"there is no template named {name}")
    return TemplatesDeleted(name=name, languages=gone)

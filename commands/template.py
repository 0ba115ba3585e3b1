"""`/template`: WhatsApp message templates kept in the bridge, and `!template send` in a thread."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from bridge.types import WHATSAPP, ConversationId, Template, TemplateCall
from commands.base import CommandError, Context, Reply, Role, command
from storage import Tx, catalog
from storage.catalog import TemplateRecord
from storage.queries import ContactRecord

log = logging.getLogger(__name__)

template = command("template", "WhatsApp message templates: keep, list and send them")

# Meta's rules: lowercase letters, digits and underscores, at most 512 characters.
_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
# Meta's language codes: `de`, `fil`, `en_US`, `pt_BR`, `es_419`…
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:_(?:[A-Z]{2}|[0-9]{3}))?$")
_BRACES = re.compile(r"\{\{(.*?)\}\}")
_PARAM = re.compile(r"\{\{([1-9][0-9]*)\}\}")
BODY_LIMIT = 1024  # characters of a template body, as Meta allows
PLATFORM_NAMES = {
    "telegram": "Telegram",
    "whatsapp": "WhatsApp",
    "messenger": "Messenger",
    "sms": "SMS",
}


@template.sub(
    "list",
    summary="the stored templates with their languages and parameter counts",
    example="/template list",
    role=Role.AGENT,
)
async def _list(ctx: Context, args: list[str]) -> Reply:
    stored = await ctx.services.read(catalog.all_templates)
    if not stored:
        return Reply(
            title="No templates stored yet",
            lines=(
                "`/template sync` imports the approved ones from WhatsApp; a manager adds one"
                " with `/template add <name> <language> <body…>`.",
            ),
        )
    lines = [
        f"`{t.name}` ({t.language}), {_count(param_count(t.body))}: {_short(t.body)}"
        for t in stored
    ]
    lines.append("Send one in a WhatsApp thread: `!template send <name>[:<language>] <parameter>…`")
    return Reply(title=f"{len(stored)} template{_s(len(stored))}", lines=tuple(lines))


@template.sub(
    "show",
    usage="<name> [language]",
    summary="a template's body and parameters (every language without one)",
    example="/template show order_update en_US",
    role=Role.AGENT,
)
async def _show(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    if len(args) > 2:
        raise ctx.usage("give a name and at most one language")
    name = template_name(ctx, args[0])
    language = template_language(ctx, args[1]) if len(args) > 1 else None
    stored = await ctx.services.read(lambda conn: catalog.templates_named(conn, name))
    shown = [t for t in stored if language in (None, t.language)]
    if not shown:
        raise CommandError(_unknown(name, language, stored))
    fields: list[tuple[str, str]] = []
    for t in shown:
        fields.extend(
            [
                ("Language", t.language),
                ("Parameters", str(param_count(t.body))),
                ("Body", t.body),
                ("Saved by", f"{t.created_by}, {t.created_at:%Y-%m-%d}"),
            ]
        )
    return Reply(title=f"Template {name}", fields=tuple(fields))


@template.sub(
    "send",
    usage="<name>[:<language>] <parameter>…",
    summary="send a template to this WhatsApp customer (also after the 24 h window closed)",
    example='!template send order_update:en_US "Anna Schmidt" A-1234',
    role=Role.AGENT,
    in_thread=True,
)
async def _send(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    word, _, lang_word = args[0].partition(":")
    name = template_name(ctx, word)
    language = template_language(ctx, lang_word) if lang_word else None
    params = args[1:]
    conversation, contact = await thread_contact(ctx)
    ref = ctx.request.ref
    if ref is None:
        raise CommandError("A template is sent from a message in the thread; type it there")
    call, text = await prepare_template(ctx, name, language, params, contact)
    await ctx.services.pipeline.staff_send(
        conversation,
        surface=ctx.request.surface,
        ref=ref,
        author=ctx.who,
        text=text,
        template=call,
        role=ctx.role,
    )
    # Like a reply, the delivery marks show on the command's own message.
    return Reply()


async def prepare_template(
    ctx: Context,
    name: str,
    language: str | None,
    params: Sequence[str],
    contact: ContactRecord,
) -> tuple[TemplateCall, str]:
    """The template call for a contact (the stored template, else WhatsApp's approved one),
    with its parameters checked, and its text as the customer reads it."""
    if contact.platform != WHATSAPP:
        shown = PLATFORM_NAMES.get(contact.platform, contact.platform)
        raise CommandError(
            f"Templates are a WhatsApp feature; this customer writes on {shown}, where a normal"
            " reply in this thread works"
        )
    language, body = await _choose(ctx, name, language, contact)
    for param in params:
        # WhatsApp refuses empty parameters and ones with line breaks or tabs (error 132018).
        if not param.strip() or any(c in param for c in "\n\t"):
            raise ctx.usage("a parameter may not be empty or contain line breaks or tabs")
    if body is not None:
        expected = param_count(body)
        if len(params) != expected:
            raise ctx.usage(
                f"template {name} ({language}) takes {_count(expected)}, you gave {len(params)}"
                " (quote a parameter that has spaces)"
            )
    text = fill(body, params) if body else f"[template {name}:{language}] " + " | ".join(params)
    return TemplateCall(name=name, language=language, params=tuple(params)), text


@template.sub(
    "add",
    usage="<name> <language> <body…>",
    summary="store a template (the body numbers its parameters {{1}}, {{2}}…)",
    example="/template add order_update en_US Hello {{1}}, your order {{2}} has shipped.",
    role=Role.MANAGER,
)
async def _add(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 3)
    name = template_name(ctx, args[0])
    language = template_language(ctx, args[1])
    body = " ".join(args[2:]).strip()
    count = check_body(ctx, body)
    created = await ctx.services.write(
        lambda tx: catalog.save_template(tx.conn, name, language, body, ctx.who, ctx.now)
    )
    example = " ".join(
        ["!template send", f"{name}:{language}", *(f"<{i}>" for i in range(1, count + 1))]
    )
    return Reply(
        title=f"Template {name} ({language}) {'added' if created else 'updated'}, {_count(count)}.",
        lines=(f"Send it in a WhatsApp thread: `{example}`",),
    )


@template.sub(
    "delete",
    usage="<name> [language]",
    summary="delete a stored template (every language without one)",
    example="/template delete order_update en_US",
    role=Role.MANAGER,
)
async def _delete(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    if len(args) > 2:
        raise ctx.usage("give a name and at most one language")
    name = template_name(ctx, args[0])
    language = template_language(ctx, args[1]) if len(args) > 1 else None
    gone = await ctx.services.write(lambda tx: catalog.delete_templates(tx.conn, name, language))
    if not gone:
        stored = await ctx.services.read(lambda conn: catalog.templates_named(conn, name))
        raise CommandError(_unknown(name, language, stored))
    return Reply(title=f"Template {name} ({', '.join(gone)}) deleted.")


@template.sub(
    "sync",
    summary="import the approved templates of every WhatsApp number",
    example="/template sync",
    role=Role.MANAGER,
)
async def _sync(ctx: Context, args: list[str]) -> Reply:
    if args:
        raise ctx.usage("sync takes no arguments")
    numbers = [c for c in ctx.services.connectors if c.platform == WHATSAPP]
    if not numbers:
        raise CommandError("No WhatsApp number is configured; templates are a WhatsApp feature")
    found: dict[tuple[str, str], str] = {}
    skipped: list[str] = []
    failed: list[str] = []
    for connector in numbers:
        try:
            listed: Sequence[Template] = await connector.templates()
        except Exception as exc:
            log.warning("templates of WhatsApp number %s: %s", connector.account, exc)
            failed.append(f"WhatsApp number {connector.account} did not answer: {exc}")
            continue
        for t in listed:
            if t.status.upper() == "APPROVED":
                found[(t.name, t.language)] = t.body or ""
            else:
                skipped.append(f"{t.name}:{t.language} ({t.status.lower()})")
    if failed and not found:
        raise CommandError("; ".join(failed))
    items = [(name, language, body) for (name, language), body in sorted(found.items())]
    counts = await ctx.services.write(
        lambda tx: catalog.import_templates(tx.conn, items, ctx.who, ctx.now)
    )
    numbers_text = f"{len(numbers)} WhatsApp number{_s(len(numbers))}"
    lines = [f"{counts.added} new, {counts.updated} updated, {counts.unchanged} unchanged."]
    if not found and not skipped:
        lines = [
            "WhatsApp listed no templates; is business_account_id set in [whatsapp] and are"
            " templates created in WhatsApp Manager?"
        ]
    if skipped:
        lines.append("Not imported, not approved: " + ", ".join(sorted(set(skipped))))
    lines.extend(failed)
    return Reply(
        title=f"Imported {len(found)} approved template{_s(len(found))} from {numbers_text}.",
        lines=tuple(lines),
    )


# -- helpers shared with the other thread actions -------------------------------------------


async def thread_contact(ctx: Context) -> tuple[ConversationId, ContactRecord]:
    """The conversation of the thread a command was typed in, and its contact."""
    conversation = ctx.conversation_id
    if conversation is None:
        # The runner knows the thread's conversation; look it up again if it was not handed on.
        conversation = await ctx.services.conversation_of(ctx.request.surface, ctx.request.thread)
    if conversation is None:
        conversation = ctx.conversation  # raises: the command only works in a thread
    found = conversation

    def read(conn: Connection) -> ContactRecord | None:
        tx = Tx(conn)
        record = tx.conversation(found)
        return tx.contact(record.contact_id) if record is not None else None

    contact = await ctx.services.read(read)
    if contact is None:
        raise CommandError("This conversation no longer exists")
    return found, contact


def template_name(ctx: Context, word: str) -> str:
    """A template name as Meta allows it (lowercase letters, digits, underscores)."""
    name = word.strip().lower()
    if not _NAME.match(name):
        raise ctx.usage(
            f"not a template name: {word or '(empty)'}; use lowercase letters, digits and"
            " underscores (at most 512)"
        )
    return name


def template_language(ctx: Context, word: str) -> str:
    """A language code as Meta writes it (`en_US`, `de`); `en-us` is accepted too."""
    head, sep, region = word.strip().replace("-", "_").partition("_")
    language = head.lower() + (sep + region.upper() if sep else "")
    if not _LANGUAGE.match(language):
        raise ctx.usage(f"not a language code: {word or '(empty)'}; write it like en_US or de")
    return language


def check_body(ctx: Context, body: str) -> int:
    """Validate a template body; its number of parameters."""
    if not body:
        raise ctx.usage("the body is missing")
    if len(body) > BODY_LIMIT:
        raise ctx.usage(f"the body has {len(body)} characters; WhatsApp allows {BODY_LIMIT}")
    for match in _BRACES.finditer(body):
        if not _PARAM.fullmatch(match.group(0)):
            raise ctx.usage(
                f"not a parameter: {match.group(0)}; parameters are numbered {{{{1}}}},"
                " {{2}}… in the body"
            )
    numbers = sorted({int(n) for n in _PARAM.findall(body)})
    missing = [n for n in range(1, (numbers[-1] if numbers else 0) + 1) if n not in numbers]
    if missing:
        gaps = ", ".join(f"{{{{{n}}}}}" for n in missing)
        raise ctx.usage(
            f"parameters must be numbered from {{{{1}}}} without gaps; {gaps} is missing"
        )
    return len(numbers)


def param_count(body: str) -> int:
    """How many numbered parameters a body takes."""
    return len(set(_PARAM.findall(body)))


def fill(body: str, params: Sequence[str]) -> str:
    """The body with its parameters filled in, as the customer reads it."""
    return _PARAM.sub(lambda m: params[int(m.group(1)) - 1], body)


async def _choose(
    ctx: Context, name: str, language: str | None, contact: ContactRecord
) -> tuple[str, str | None]:
    """The language and body to send: the stored template, else WhatsApp's approved one."""
    stored = await ctx.services.read(lambda conn: catalog.templates_named(conn, name))
    if stored:
        if language is None:
            if len(stored) == 1:
                return stored[0].language, stored[0].body
            raise CommandError(_ambiguous(name, [t.language for t in stored]))
        for t in stored:
            if t.language == language:
                return t.language, t.body
    connector = ctx.services.connector(contact.platform, contact.account)
    approved: list[Template] = []
    if connector is not None:
        try:
            listed = await connector.templates()
        except Exception as exc:
            raise CommandError(f"WhatsApp did not list its templates: {exc}") from None
        approved = [
            t
            for t in listed
            if t.status.upper() == "APPROVED" and t.name == name and language in (None, t.language)
        ]
    if len(approved) > 1:
        raise CommandError(_ambiguous(name, [t.language for t in approved]))
    if not approved:
        raise CommandError(_unknown(name, language, stored))
    return approved[0].language, approved[0].body


def _ambiguous(name: str, languages: Sequence[str]) -> str:
    return (
        f"Template {name} exists in {', '.join(sorted(languages))}; name the language:"
        f" !template send {name}:{sorted(languages)[0]} …"
    )


def _unknown(name: str, language: str | None, stored: Sequence[TemplateRecord]) -> str:
    if language is not None and stored:
        have = ", ".join(t.language for t in stored)
        return f"Template {name} has no {language} version (stored: {have})"
    return (
        f"No template named {name}; /template list shows the stored ones and /template sync"
        " imports WhatsApp's approved ones"
    )


def _count(n: int) -> str:
    return f"{n} parameter{_s(n)}"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _short(body: str, limit: int = 80) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"

"""`/template`: WhatsApp message templates kept in the bridge, and `!template send` in a thread."""

from __future__ import annotations

from bridge.services import contacts, templates
from bridge.services.templates import (
    check_body,
    count_text,
    param_count,
    template_language,
    template_name,
    unknown_text,
)
from bridge.staffio import Reply
from bridge.types import ConversationId
from commands.base import CommandError, Context, Role, command
from storage.queries import ContactRecord

template = command("template", "WhatsApp message templates: keep, list and send them")


@template.sub(
    "list",
    summary="the stored templates with their languages and parameter counts",
    example="/template list",
    role=Role.AGENT,
)
async def _list(ctx: Context, args: list[str]) -> Reply:
    stored = await templates.all_templates(ctx.services)
    if not stored:
        return Reply(
            title="No templates stored yet",
            lines=(
                "`/template sync` imports the approved ones from WhatsApp; a manager adds one"
                " with `/template add <name> <language> <body…>`.",
            ),
        )
    lines = [
        f"`{t.name}` ({t.language}), {count_text(param_count(t.body))}: {_short(t.body)}"
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
    name = template_name(args[0])
    language = template_language(args[1]) if len(args) > 1 else None
    stored = await templates.templates_named(ctx.services, name)
    shown = [t for t in stored if language in (None, t.language)]
    if not shown:
        raise CommandError(unknown_text(name, language, stored))
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
    name = template_name(word)
    language = template_language(lang_word) if lang_word else None
    params = args[1:]
    conversation, contact = await thread_contact(ctx)
    ref = ctx.request.ref
    if ref is None:
        raise CommandError("A template is sent from a message in the thread; type it there")
    call, text = await templates.prepare_template(ctx.services, name, language, params, contact)
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


@template.sub(
    "add",
    usage="<name> <language> <body…>",
    summary="store a template (the body numbers its parameters {{1}}, {{2}}…)",
    example="/template add order_update en_US Hello {{1}}, your order {{2}} has shipped.",
    role=Role.MANAGER,
)
async def _add(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 3)
    name = template_name(args[0])
    language = template_language(args[1])
    body = " ".join(args[2:]).strip()
    count = check_body(body)
    created = await templates.save_template(ctx.services, name, language, body, ctx.who, ctx.now)
    example = " ".join(
        ["!template send", f"{name}:{language}", *(f"<{i}>" for i in range(1, count + 1))]
    )
    done = "added" if created else "updated"
    return Reply(
        title=f"Template {name} ({language}) {done}, {count_text(count)}.",
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
    name = template_name(args[0])
    language = template_language(args[1]) if len(args) > 1 else None
    gone = await templates.delete_templates(ctx.services, name, language)
    if not gone:
        stored = await templates.templates_named(ctx.services, name)
        raise CommandError(unknown_text(name, language, stored))
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
    synced = await templates.sync_templates(ctx.services, ctx.who, ctx.now)
    counts, skipped = synced.counts, synced.skipped
    numbers_text = f"{synced.numbers} WhatsApp number{_s(synced.numbers)}"
    lines = [f"{counts.added} new, {counts.updated} updated, {counts.unchanged} unchanged."]
    if not synced.found and not skipped:
        lines = [
            "WhatsApp listed no templates; is business_account_id set in [whatsapp] and are"
            " templates created in WhatsApp Manager?"
        ]
    if skipped:
        lines.append("Not imported, not approved: " + ", ".join(sorted(set(skipped))))
    lines.extend(synced.failed)
    return Reply(
        title=f"Imported {synced.found} approved template{_s(synced.found)} from {numbers_text}.",
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
    contact = await contacts.contact_of(ctx.services, conversation)
    if contact is None:
        raise CommandError("This conversation no longer exists")
    return conversation, contact


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _short(body: str, limit: int = 80) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"

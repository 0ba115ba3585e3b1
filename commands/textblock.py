"""`/textblock`: saved replies with placeholders, and `!tb <name>` to send one in a thread."""

from __future__ import annotations

import re
from datetime import date

from bridge.staffio import Reply
from commands.base import CommandError, Context, Role, command
from commands.template import PLATFORM_NAMES, thread_contact
from storage import catalog
from storage.queries import ContactRecord

textblock = command("textblock", "Text blocks: saved replies with placeholders")
tb = command("tb", "Send a text block to this thread's customer", default="")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
PLACEHOLDERS = {
    "NAME": "the contact's display name",
    "FIRSTNAME": "the first word of the contact's name",
    "AGENT": "who sends the block",
    "DATE": "today, YYYY-MM-DD",
    "PLATFORM": "the customer's messenger (Telegram, WhatsApp…)",
}
TEXT_LIMIT = 4096  # the shortest message limit of the platforms (Telegram, WhatsApp)


@textblock.sub(
    "list",
    summary="the text blocks, one line each",
    example="/textblock list",
    role=Role.AGENT,
)
async def _list(ctx: Context, args: list[str]) -> Reply:
    blocks = await ctx.services.read(catalog.all_text_blocks)
    if not blocks:
        return Reply(title="No text blocks yet", lines=(_how_to_add(),))
    lines = [f"`{b.name}`: {_short(b.body)}" for b in blocks]
    lines.append("Send one in a conversation's thread: `!tb <name>`")
    return Reply(
        title=f"{len(blocks)} text block{'' if len(blocks) == 1 else 's'}", lines=tuple(lines)
    )


@textblock.sub(
    "show",
    usage="<name>",
    summary="a text block's text and placeholders",
    example="/textblock show hours",
    role=Role.AGENT,
)
async def _show(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    if len(args) > 1:
        raise ctx.usage("give one name")
    name = block_name(ctx, args[0])
    block = await ctx.services.read(lambda conn: catalog.text_block(conn, name))
    if block is None:
        return await _unknown(ctx, name)
    used = placeholders_used(block.body)
    return Reply(
        title=f"Text block {name}",
        fields=(
            ("Text", block.body),
            ("Placeholders", ", ".join(f"{{{p}}}" for p in used) or "none"),
            ("Saved by", f"{block.created_by}, {block.created_at:%Y-%m-%d}"),
        ),
    )


@textblock.sub(
    "add",
    usage="<name> <text…>",
    summary="save a text block; {NAME}, {FIRSTNAME}, {AGENT}, {DATE} and {PLATFORM} are filled in",
    example='/textblock add hours "Hi {FIRSTNAME}, we are open Monday to Friday, 9 to 17."',
    role=Role.MANAGER,
)
async def _add(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 2)
    name = block_name(ctx, args[0])
    body = check_text(ctx, " ".join(args[1:]))
    created = await ctx.services.write(
        lambda tx: catalog.save_text_block(tx.conn, name, body, ctx.who, ctx.now)
    )
    return Reply(
        title=f"Text block {name} {'saved' if created else 'updated'}.",
        lines=(f"Send it in a conversation's thread with `!tb {name}`.",),
    )


@textblock.sub(
    "delete",
    usage="<name>",
    summary="delete a text block",
    example="/textblock delete hours",
    role=Role.MANAGER,
)
async def _delete(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    if len(args) > 1:
        raise ctx.usage("give one name")
    name = block_name(ctx, args[0])
    if not await ctx.services.write(lambda tx: catalog.delete_text_block(tx.conn, name)):
        return await _unknown(ctx, name)
    return Reply(title=f"Text block {name} deleted.")


@tb.sub(
    "",
    usage="<name>",
    summary="send a text block, filled in for this customer",
    example="!tb hours",
    role=Role.AGENT,
    in_thread=True,
)
async def _send(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    if len(args) > 1:
        raise ctx.usage("give one text block name")
    name = args[0].strip().lower()
    block = await ctx.services.read(lambda conn: catalog.text_block(conn, name))
    if block is None and name == "help":
        spec = ctx.spec
        return Reply(
            title=f"`{spec.usage_line}`", lines=(spec.summary, f"Example: `{spec.example}`")
        )
    if block is None:
        return await _unknown(ctx, name)
    conversation, contact = await thread_contact(ctx)
    ref = ctx.request.ref
    if ref is None:
        raise CommandError("A text block is sent from a message in the thread; type it there")
    await ctx.services.pipeline.staff_send(
        conversation,
        surface=ctx.request.surface,
        ref=ref,
        author=ctx.who,
        text=fill(block.body, contact, agent=ctx.who, today=ctx.now.date()),
        role=ctx.role,
    )
    # Nothing to say: the delivery marks show on the `!tb` message itself.
    return Reply()


def block_name(ctx: Context, word: str) -> str:
    """A text block name: letters, digits, _ and -, at most 64, compared in lowercase."""
    name = word.strip().lower()
    if not _NAME.match(name):
        raise ctx.usage(
            f"not a text block name: {word or '(empty)'}; use letters, digits, _ and -"
            " (at most 64)"
        )
    return name


def check_text(ctx: Context, text: str) -> str:
    """A text block's text, trimmed, if it fits a message and uses known placeholders only."""
    body = text.strip()
    if not body:
        raise ctx.usage("the text is missing")
    if len(body) > TEXT_LIMIT:
        raise ctx.usage(f"the text has {len(body)} characters; at most {TEXT_LIMIT} fit a message")
    unknown = sorted({p for p in _PLACEHOLDER.findall(body) if p.upper() not in PLACEHOLDERS})
    if unknown:
        known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        raise ctx.usage(
            f"unknown placeholder {', '.join(f'{{{p}}}' for p in unknown)}; known are {known}"
        )
    return body


def placeholders_used(body: str) -> list[str]:
    """The placeholders a text block uses, in capitals, each once, sorted."""
    return sorted({p.upper() for p in _PLACEHOLDER.findall(body)})


def fill(body: str, contact: ContactRecord, *, agent: str, today: date) -> str:
    """The block's text with its placeholders filled in for this contact."""
    name = contact.display_name.strip()
    words = name.split()
    values = {
        "NAME": name,
        "FIRSTNAME": words[0].lstrip("@") if words else name,
        "AGENT": agent,
        "DATE": today.isoformat(),
        "PLATFORM": PLATFORM_NAMES.get(contact.platform, contact.platform),
    }
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1).upper(), m.group(0)), body)


async def _unknown(ctx: Context, name: str) -> Reply:
    blocks = await ctx.services.read(catalog.all_text_blocks)
    names = ", ".join(f"`{b.name}`" for b in blocks)
    return Reply(
        ok=False,
        title=f"No text block named {name}",
        lines=(f"Text blocks: {names}",) if names else (_how_to_add(),),
    )


def _how_to_add() -> str:
    return "A manager adds one with `/textblock add <name> <text…>`."


def _short(body: str, limit: int = 80) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"

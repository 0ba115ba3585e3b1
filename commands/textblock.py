"""`/textblock`: saved replies with placeholders, and `!tb <name>` to send one in a thread."""

from __future__ import annotations

from bridge.services import textblocks
from bridge.services.textblocks import block_name, check_text, fill, placeholders_used
from bridge.staffio import Reply
from commands.base import CommandError, Context, Role, command
from commands.template import thread_contact

textblock = command("textblock", "Text blocks: saved replies with placeholders")
tb = command("tb", "Send a text block to this thread's customer", default="")


@textblock.sub(
    "list",
    summary="the text blocks, one line each",
    example="/textblock list",
    role=Role.AGENT,
)
async def _list(ctx: Context, args: list[str]) -> Reply:
    blocks = await textblocks.all_text_blocks(ctx.services)
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
    name = block_name(args[0])
    block = await textblocks.text_block(ctx.services, name)
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
    name = block_name(args[0])
    body = check_text(" ".join(args[1:]))
    created = await textblocks.save_text_block(ctx.services, name, body, ctx.who, ctx.now)
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
    name = block_name(args[0])
    if not await textblocks.delete_text_block(ctx.services, name):
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
    block = await textblocks.text_block(ctx.services, name)
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


async def _unknown(ctx: Context, name: str) -> Reply:
    blocks = await textblocks.all_text_blocks(ctx.services)
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

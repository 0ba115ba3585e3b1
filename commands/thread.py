"""Thread actions: typed as `!word` in a conversation's thread (or a button on its card)."""

from __future__ import annotations

from bridge.services import contacts
from bridge.services.roles import staff_id
from bridge.staffio import Reply, staff_mention
from commands.base import CommandError, Context, Role, command

close = command("close", "Close this conversation", default="")
reopen = command("reopen", "Reopen this conversation", default="")
note = command("note", "Keep an internal note in this thread", default="")
assign = command("assign", "Assign this conversation to a staff member", default="")
unassign = command("unassign", "Take the assignment off this conversation", default="")


@close.sub(
    "",
    summary="close the conversation; the customer's next message opens a new thread",
    example="!close",
    role=Role.AGENT,
    in_thread=True,
)
async def _close(ctx: Context, args: list[str]) -> Reply:
    text = await ctx.services.pipeline.set_open(ctx.conversation, False, ctx.who)
    await _tell_others(ctx, text, "close")
    return Reply(title=text, public=True)


@reopen.sub(
    "",
    summary="reopen a closed conversation",
    example="!reopen",
    role=Role.AGENT,
    in_thread=True,
)
async def _reopen(ctx: Context, args: list[str]) -> Reply:
    text = await ctx.services.pipeline.set_open(ctx.conversation, True, ctx.who)
    await _tell_others(ctx, text, "reopen")
    return Reply(title=text, public=True)


@note.sub(
    "",
    usage="<text>",
    summary="an internal note: stored with the conversation, never sent to the customer",
    example="!note customer prefers e-mail",
    role=Role.AGENT,
    in_thread=True,
)
async def _note(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    request = ctx.request
    if request.ref is None:
        raise CommandError("a note needs the message it was written in")
    await ctx.services.pipeline.staff_send(
        ctx.conversation,
        surface=request.surface,
        ref=request.ref,
        author=ctx.who,
        text=" ".join(args),
        note=True,
        role=ctx.role,
    )
    return Reply()


@assign.sub(
    "",
    usage="[@someone]",
    summary="assign the conversation (to yourself without a name); shown on the contact card",
    example="!assign @anna",
    role=Role.AGENT,
    in_thread=True,
)
async def _assign(ctx: Context, args: list[str]) -> Reply:
    target = staff_id(args[0], ctx.request.user) if args else ctx.request.user
    await _set_assignee(ctx, target)
    shown = mention(ctx.request.surface, target)
    # The other surfaces get the plain id: the mention is rendered only where it was typed.
    await _tell_others(ctx, f"Assigned to {target} by {ctx.who}.", "assign")
    return Reply(title=f"Assigned to {shown} by {ctx.who}.", public=True)


@unassign.sub(
    "",
    summary="nobody is assigned any more",
    example="!unassign",
    role=Role.AGENT,
    in_thread=True,
)
async def _unassign(ctx: Context, args: list[str]) -> Reply:
    await _set_assignee(ctx, None)
    text = f"No longer assigned ({ctx.who})."
    await _tell_others(ctx, text, "unassign")
    return Reply(title=text, public=True)


def mention(surface: str, user: str) -> str:
    """How to name a staff member so that their surface links them."""
    return staff_mention(user) if surface == "slack" and not user.startswith("@") else user


async def _set_assignee(ctx: Context, user: str | None) -> None:
    await contacts.assign(ctx.services, ctx.conversation, user)


async def _tell_others(ctx: Context, text: str, what: str) -> None:
    """The reply shows where the action was typed; the conversation's other threads are told."""
    key = f"{what}:{ctx.request.ref or ctx.now.timestamp()}"
    await ctx.services.pipeline.notify(ctx.conversation, text, key=key, skip=ctx.request.surface)

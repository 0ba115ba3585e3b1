"""`/bridge`: the list of every command, and how the bridge is doing."""

from __future__ import annotations

from bridge.services import status
from bridge.staffio import Reply
from commands.base import COMMANDS, Command, Context, Role, command
from commands.runner import command_help

bridge = command("bridge", "Every command, and how the bridge is doing", default="help")


def _line(cmd: Command) -> str:
    """One line per command; thread actions are typed with `!` in a conversation's thread."""
    specs = cmd.subcommands.values()
    if all(spec.in_thread for spec in specs):
        return f"`!{cmd.name}`: {cmd.summary} (in a conversation's thread)"
    actions = [spec.name for spec in specs if spec.name and not spec.in_thread]
    # A command with both kinds (/template list, !template send) is listed once, as a slash
    # command that names its thread actions.
    actions += [f"`{spec.call}` in a thread" for spec in specs if spec.in_thread]
    return f"`/{cmd.name}`: {cmd.summary}" + (f" ({', '.join(actions)})" if actions else "")


@bridge.sub(
    "help",
    usage="[command]",
    summary="every command with one line each; with a command, its actions",
    example="/bridge help contact",
    role=Role.NONE,  # like `/<command> help`, which works for everybody
)
async def _help(ctx: Context, args: list[str]) -> Reply:
    if args:
        wanted = COMMANDS.get(args[0].lower().lstrip("/!"))
        if wanted is None:
            raise ctx.usage(f"there is no command {args[0]}")
        return command_help(wanted)
    commands = sorted(COMMANDS.values(), key=lambda c: (_line(c).startswith("`!"), c.name))
    lines = [_line(cmd) for cmd in commands]
    lines.append("`/<command> help` lists a command's actions with examples.")
    return Reply(title="Bridge commands", lines=tuple(lines))


@bridge.sub(
    "status",
    summary="connected accounts and surfaces, the delivery queue, contacts and conversations",
    example="/bridge status",
)
async def _status(ctx: Context, args: list[str]) -> Reply:
    found = await status.figures(ctx.services)
    connectors = ", ".join(found.accounts)
    surfaces = ", ".join(found.surfaces)
    queue = ", ".join(f"{state} {count}" for state, count in sorted(found.outbox.items()))
    return Reply(
        title="Bridge status",
        fields=(
            ("Accounts", connectors or "none"),
            ("Staff surfaces", surfaces or "none"),
            ("Outbox", queue or "empty"),
            ("Contacts", str(found.contacts)),
            ("Open conversations", str(found.open_conversations)),
        ),
    )

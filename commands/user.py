"""`/user`: who may do what. Roles are per surface user; the first admins come from settings."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from bridge.staffio import Reply
from commands.base import CommandError, Context, Role, command
from commands.runner import known_role
from commands.thread import staff_id
from storage import Tx
from storage.roles import list_roles, role_of, set_role

user = command("user", "Give staff members roles: admin, manager, agent or none")

# What each role may do, to follow "may": "you may …", "as an agent they may …".
WHAT_ROLES_MAY = {
    Role.ADMIN: "do everything, including giving roles",
    Role.MANAGER: "change channels, templates, text blocks, the blacklist and contacts; broadcast",
    Role.AGENT: "reply to customers, use thread actions and look things up",
    Role.NONE: "use no command but `/user whoami` and the help",
}


def _as_role(role: Role) -> str:
    """How a sentence about what a role may do begins: As an agent, As a manager, With no role."""
    if role is Role.NONE:
        return "With no role"
    return f"As a{'n' if role.label[0] in 'aeiou' else ''} {role.label}"


def _surface_of(user_id: str) -> str:
    """Matrix ids look like @name:server; everything else is a Slack user id."""
    return "matrix" if user_id.startswith("@") else "slack"


@user.sub(
    "role",
    usage="<@someone | user id> <admin | manager | agent | none>",
    summary="give a staff member a role",
    example="/user role @anna manager",
    role=Role.ADMIN,
)
async def _role(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 2)
    if len(args) > 2:
        raise ctx.usage("name one staff member and one role")
    target = staff_id(ctx, args[0])
    role = known_role(args[1])
    settings = ctx.services.settings.bridge
    if target in settings.admins:
        raise CommandError(
            f"{target} is an admin from the settings ([bridge] admins) and stays one;"
            " take them out of the settings file to change that"
        )
    surface = _surface_of(target)
    before = await ctx.services.read(lambda conn: role_of(conn, surface, target))
    who, now = ctx.who, ctx.now

    def write(tx: Tx) -> None:
        set_role(tx, surface, target, role.label, who, now)

    await ctx.services.write(write)
    was = before or f"{settings.default_role}, the default"
    return Reply(
        title=f"{target} is now {role.label} (was {was})",
        lines=(f"{_as_role(role)} they may {WHAT_ROLES_MAY[role]}.",),
    )


@user.sub(
    "list",
    summary="the admins from the settings and every role given, by whom and when",
    example="/user list",
)
async def _list(ctx: Context, args: list[str]) -> Reply:
    settings = ctx.services.settings.bridge
    rows = await ctx.services.read(list_roles)
    lines = [f"`{admin}` admin (from the settings)" for admin in settings.admins]
    for surface, user_id, role, by, at in rows:
        lines.append(f"`{user_id}` {role} on {surface}, given by {by} on {at:%Y-%m-%d %H:%M} UTC")
    lines.append(f"Everybody else: {settings.default_role} (the default role)")
    return Reply(title="Staff roles", lines=tuple(lines))


@user.sub(
    "whoami",
    summary="your id and your role",
    example="/user whoami",
    role=Role.NONE,  # how someone without a role learns the id an admin needs
)
async def _whoami(ctx: Context, args: list[str]) -> Reply:
    request = ctx.request
    settings = ctx.services.settings.bridge

    def read(conn: Connection) -> tuple[str, str, str] | None:
        for surface, user_id, role, by, at in list_roles(conn):
            if surface == request.surface and user_id == request.user:
                return role, by, f"{at:%Y-%m-%d %H:%M} UTC"
        return None

    if request.stranger and request.surface == "matrix":
        source = "not on a homeserver whose users are staff: [matrix] allowed_servers"
    elif request.stranger:
        source = "not a member of a workspace the bridge serves"
    elif request.user in settings.admins:
        source = "from the settings"
    else:
        stored = await ctx.services.read(read)
        source = f"given by {stored[1]} on {stored[2]}" if stored else "the default role"
    return Reply(
        title=f"You are {request.user} on {request.surface}",
        lines=(f"Role: *{ctx.role.label}* ({source}): you may {WHAT_ROLES_MAY[ctx.role]}.",),
    )

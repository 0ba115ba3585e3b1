"""`/user`: who may do what. Roles are per surface user; the first admins come from settings."""

from __future__ import annotations

from bridge.services import roles
from bridge.services.roles import staff_id
from bridge.staffio import Reply
from commands.base import Context, Role, command
from commands.runner import known_role

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
    target = staff_id(args[0], ctx.request.user)
    role = known_role(args[1])
    settings = ctx.services.settings.bridge
    before = await roles.give_role(ctx.services, target, role, ctx.who, ctx.now)
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
    rows = await roles.roles_given(ctx.services)
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

    if request.stranger and request.surface == "matrix":
        source = "not on a homeserver whose users are staff: [matrix] allowed_servers"
    elif request.stranger:
        source = "not a member of a workspace the bridge serves"
    elif request.user in settings.admins:
        source = "from the settings"
    else:
        stored = await roles.role_given(ctx.services, request.surface, request.user)
        source = (
            f"given by {stored[3]} on {stored[4]:%Y-%m-%d %H:%M} UTC"
            if stored
            else "the default role"
        )
    return Reply(
        title=f"You are {request.user} on {request.surface}",
        lines=(f"Role: *{ctx.role.label}* ({source}): you may {WHAT_ROLES_MAY[ctx.role]}.",),
    )

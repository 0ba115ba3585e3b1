"""Staff roles: who may do what. Roles are per surface user; the first admins come from
settings, the rest from the roles table."""

from __future__ import annotations

import re
from datetime import datetime

from bridge.errors import Invalid, Refused
from bridge.services import Services
from bridge.types import Role
from storage import Tx

# A Slack mention as it arrives in message text: <@U0123ABC> or <@U0123ABC|name>.
_SLACK_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
# A Matrix user id (spec: "Identifier Grammar"): a localpart, then a server name (a host of
# letters, digits, dots and dashes or an IP literal in brackets, and an optional port).
_MATRIX_USER = re.compile(r"^@[a-z0-9._=/+-]+:(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")

Given = tuple[str, str, str, str, datetime]  # surface, user, role, by whom, when


def staff_id(word: str, me: str) -> str:
    """A staff member's id from how they were named: a Slack mention, a Matrix id, or `me`
    (the caller, whose id is `me`)."""
    if word.lower() in ("me", "myself"):
        return me
    found = _SLACK_MENTION.match(word)
    if found:
        return found.group(1)
    if _MATRIX_USER.match(word) or re.fullmatch(r"[UW][A-Z0-9]{2,}", word):
        return word
    raise Invalid(f"{word} is not a staff member; mention them (@name) or use their id")


def surface_of(user_id: str) -> str:
    """Matrix ids look like @name:server; everything else is a Slack user id."""
    return "matrix" if user_id.startswith("@") else "slack"


async def give_role(
    services: Services, target: str, role: Role, who: str, now: datetime
) -> str | None:
    """Give a staff member a role; the role stored for them before (None: the default)."""
    if target in services.settings.bridge.admins:
        raise Refused(
            f"{target} is an admin from the settings ([bridge] admins) and stays one;"
            " take them out of the settings file to change that"
        )
    surface = surface_of(target)
    before = await services.read(lambda tx: tx.roles.role_of(surface, target))

    def write(tx: Tx) -> None:
        tx.roles.set_role(surface, target, role.label, who, now)

    await services.write(write)
    return before


async def roles_given(services: Services) -> list[Given]:
    """Every role given, with by whom and when."""
    return await services.read(lambda tx: tx.roles.list_roles())


async def role_given(services: Services, surface: str, user: str) -> Given | None:
    """The role given to one staff member, if one was."""

    def read(tx: Tx) -> Given | None:
        for given in tx.roles.list_roles():
            if given[0] == surface and given[1] == user:
                return given
        return None

    return await services.read(read)

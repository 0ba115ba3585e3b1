"""Whose request is it: the Slack workspaces the bridge serves, and strangers from others.

A Slack app's events, slash commands and button presses can come from people outside the
workspace whose bot token the bridge holds: the members of another organisation in a shared
(Slack Connect) channel, or any workspace the same app is installed in. Their requests carry
their own workspace: `user_team`/`team` on messages ("Understanding Slack Connect":
https://api.slack.com/apis/channels-between-orgs), `team_id` on slash commands,
`user.team_id` on interactions, `team_id` on the Events API envelope, and `team_id` /
`is_stranger` in the user object of users.info. Only the bridge's own workspace (from
auth.test) and `[slack] allowed_teams` count as staff; everyone else has role none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Origin:
    """The workspaces (and organisation) a request says its author belongs to."""

    teams: tuple[str, ...] = ()
    # The request cannot say (a shared channel's message naming no team), or Slack calls the
    # user a stranger (users.info `is_stranger`): never staff.
    unknown: bool = False


def _str(obj: Any, *keys: str) -> str:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj if isinstance(obj, str) else ""


def event_origin(body: Mapping[str, Any], event: Mapping[str, Any]) -> tuple[Origin, ...]:
    """Where a message event comes from: the envelope's workspace (and organisation), and
    the author's own workspace, which in a shared channel may be another organisation's."""
    subtype = event.get("subtype")
    if subtype == "message_changed":
        author: Any = event.get("message")
    elif subtype == "message_deleted":
        author = event.get("previous_message")
    else:
        author = event
    own = tuple(t for t in (_str(author, "user_team"), _str(author, "team")) if t)
    envelope = Origin(teams=(_str(body, "team_id"),))
    # In a channel shared with other organisations, a message that names no team of its
    # author cannot be told apart from a guest's.
    unknown = bool(body.get("is_ext_shared_channel")) and not own
    return envelope, Origin(teams=own, unknown=unknown)


def command_origin(command: Mapping[str, Any]) -> Origin:
    """Where a slash command comes from (its form's `team_id`)."""
    return Origin(teams=(_str(command, "team_id"),))


def interaction_origin(body: Mapping[str, Any]) -> Origin:
    """Where a button press or form submission comes from: the user's and the payload's team."""
    return Origin(teams=(_str(body, "user", "team_id"), _str(body, "team", "id")))


def user_origin(user: Mapping[str, Any]) -> Origin:
    """Where users.info says a user is from."""
    return Origin(teams=(_str(user, "team_id"),), unknown=user.get("is_stranger") is True)


class Workspaces:
    """The workspaces whose members are staff: the bot's own and the allowed ones."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self._allowed = frozenset(allowed)
        self._own: frozenset[str] = frozenset()

    def learn(self, auth: Mapping[str, Any]) -> None:
        """Take the bot's own workspace from auth.test (and its organisation when the app is
        installed organisation-wide on an Enterprise Grid, whose members' events name it)."""
        own = {_str(auth, "team_id")}
        if auth.get("is_enterprise_install") is True:
            own.add(_str(auth, "enterprise_id"))
        self._own = frozenset(team for team in own if team)

    @property
    def known(self) -> frozenset[str]:
        """Every workspace and organisation id whose members are staff."""
        return self._own | self._allowed

    def foreign(self, *origins: Origin) -> bool:
        """Whether any of these says the author is not one of the bridge's staff; before
        auth.test has named the bot's workspace, everybody is."""
        known = self.known
        if not self._own:
            return True
        for origin in origins:
            if origin.unknown:
                return True
            if any(team not in known for team in origin.teams if team):
                return True
        return False

"""Mentions in a staff Matrix message, in words a customer reads.

A Matrix client mentions a member with a pill in the HTML (read in matrix_html), or only
through `m.mentions.user_ids` (Client-Server API, "User and room mentions", Matrix 1.7) with
the user id written bare in `body`; `@room` (or `m.mentions.room`) pings the whole room.
Neither the id of a staff member nor a word meant for the room's members is for the customer:
an id becomes the member's display name, `@room` goes (at a line's start, where it addresses
the room) or becomes "everyone". Pure: the names are looked up by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# A user id as the spec's grammar writes it ("Identifier Grammar", user identifiers: the
# historical localpart characters, then a server name: a host name or IP literal, a port).
_USER_ID = re.compile(
    r"(?<![\w@.])@([a-zA-Z0-9._=\-/+]+):((?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::\d{1,5})?)"
)
_ROOM_LEAD = re.compile(r"^(\s*)@room\b[:,]?[ \t]*", re.MULTILINE)
_ROOM = re.compile(r"(?<![\w@])@room\b")


def user_ids(text: str) -> list[str]:
    """The user ids written bare in a text, each once, in order."""
    return list(dict.fromkeys(m.group(0).rstrip(".") for m in _USER_ID.finditer(text)))


def in_words(text: str, names: Mapping[str, str | None]) -> str:
    """`text` with each bare user id as the member's name (their localpart when they have
    none), and `@room` taken out."""

    def name(match: re.Match[str]) -> str:
        found = match.group(0)
        trail = found[len(found.rstrip(".")) :]
        user = found.rstrip(".")
        return (names.get(user) or match.group(1)) + trail

    text = _USER_ID.sub(name, text)
    text = _ROOM_LEAD.sub(r"\1", text)
    return _ROOM.sub("everyone", text)

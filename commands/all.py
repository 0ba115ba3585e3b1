"""Every command module the bridge ships with; importing this records them all."""

from __future__ import annotations

from commands import (
    blacklist,
    channel,
    contact,
    help,
    link,
    rule,
    template,
    textblock,
    thread,
    user,
)

__all__ = [
    "blacklist",
    "channel",
    "contact",
    "help",
    "link",
    "rule",
    "template",
    "textblock",
    "thread",
    "user",
]

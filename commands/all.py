"""Every command module the bridge ships with; importing this records them all."""

from __future__ import annotations

from commands import (
    apikey,
    blacklist,
    broadcast,
    channel,
    contact,
    help,
    link,
    rule,
    shorten,
    stats,
    template,
    textblock,
    thread,
    user,
    webhook,
)

__all__ = [
    "apikey",
    "blacklist",
    "broadcast",
    "channel",
    "contact",
    "help",
    "link",
    "rule",
    "shorten",
    "stats",
    "template",
    "textblock",
    "thread",
    "user",
    "webhook",
]

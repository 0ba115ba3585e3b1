"""Customers' reactions in Slack: the Slack name of a Unicode emoji, and the line shown in
the thread when Slack has no reaction for it."""

from __future__ import annotations

import emoji

from bridge.types import ReactionChange
from connectors.slack_blocks import escape

# Fitzpatrick modifiers, as Slack names them after the emoji ("+1::skin-tone-4").
_TONES = {"\U0001f3fb": 2, "\U0001f3fc": 3, "\U0001f3fd": 4, "\U0001f3fe": 5, "\U0001f3ff": 6}
_VARIATION = "\ufe0f"
# A reaction is one emoji: anything longer is shown as text, cut short.
_SHOWN_MAX = 16


def slack_name(unicode: str) -> str | None:
    """The name Slack's reactions.add takes for an emoji ("👍" → "+1"), or None if there is
    no standard one: Slack names emoji by the short names of the emoji data its pickers use,
    which the `emoji` package keeps as aliases (its CLDR names where it has no alias)."""
    tone = None
    base = unicode
    for modifier, number in _TONES.items():
        if modifier in base:
            tone = number
            base = base.replace(modifier, "")
    data = emoji.EMOJI_DATA.get(base) or emoji.EMOJI_DATA.get(base.replace(_VARIATION, ""))
    if data is None:
        return None
    aliases = [a.strip(":") for a in data.get("alias", ()) if a.strip(":")]
    # Slack's own name is the shortest of them ("+1" for 👍 beside "thumbsup"); "_1" is the
    # package's spelling of "-1" for places where a name cannot start with a minus.
    name = (
        min(aliases, key=lambda a: (a.startswith("_"), len(a)))
        if aliases
        else str(data.get("en", "")).strip(":")
    )
    if not name:
        return None
    return f"{name}::skin-tone-{tone}" if tone else name


def reaction_line(change: ReactionChange, added: list[str], removed: list[str]) -> str:
    """The thread line telling reactions Slack cannot show as its own (escaped: customer text)."""
    parts = []
    if added:
        parts.append("reacted " + " ".join(_shown(e) for e in added))
    if removed:
        parts.append("took back " + " ".join(_shown(e) for e in removed))
    line = " and ".join(parts)
    if change.on:
        line += f" on “{escape(change.on)}”"
    return line


def _shown(text: str) -> str:
    return escape(text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX] + "…")

"""A Slack message's `rich_text` block in the staff dialect (Slack's mrkdwn without its link
markup, connectors.markup): what the customer reads of what an agent wrote.

Slack's composer sends every message a person writes as one `rich_text` block beside the
`text` ("Rich text block", https://docs.slack.dev/reference/block-kit/blocks/rich-text-block).
The block carries what the text only names: each emoji's code points (`unicode`, a
`skin_tone`), each link's URL and label, each style. Its objects are sections, lists
(`bullet`/`ordered`, `indent`, `offset`), preformatted blocks and quotes; inside them text
with a `style` (bold, italic, strike, code), links, emoji, users, channels, user groups,
broadcasts (`here`, `channel`, `everyone`) and dates. A message reads here exactly as its
`text` reads in connectors.slack_text; a block with anything else (a user group, whose handle
only the text names, or an element type Slack added since) is not read, and the text is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import groupby
from typing import Any

from connectors.slack_text import emoji_named, link_words

# Slack's skin tones 2-6 are the Fitzpatrick modifiers U+1F3FB … U+1F3FF.
_FIRST_TONE = 0x1F3FB
_TONES = range(_FIRST_TONE, _FIRST_TONE + 5)
_BULLETS = ("•", "◦", "▪")
# Slack's own text nests them so: `~_*all three*_~`.
_MARKERS = ("*", "_", "~")


class _Unreadable(ValueError):
    """The block holds something this reading does not know: read the text instead."""


def rich_block(message: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The message's rich_text block, when its blocks are exactly one such block."""
    blocks = message.get("blocks")
    if not isinstance(blocks, list) or len(blocks) != 1:
        return None
    block = blocks[0]
    if not isinstance(block, Mapping) or block.get("type") != "rich_text":
        return None
    return block


def rich_mentions(block: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The ids of the users and of the channels a rich_text block mentions, each once."""
    users: dict[str, None] = {}
    channels: dict[str, None] = {}
    for element in _leaves(block):
        if element.get("type") == "user" and isinstance(element.get("user_id"), str):
            users[element["user_id"]] = None
        if element.get("type") == "channel" and isinstance(element.get("channel_id"), str):
            channels[element["channel_id"]] = None
    return list(users), list(channels)


def rich_readable(
    block: Mapping[str, Any],
    names: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
) -> str | None:
    """A rich_text block as the customer should read it; None when it cannot be read.

    Args:
        block: the block, as Slack sends it.
        names: display names of the users it mentions, by user id (others show their id).
        channels: names of the channels it mentions, by channel id (others read `#channel`).
    """
    try:
        return _Reader(names or {}, channels or {}).block(block)
    except _Unreadable:
        return None


def _leaves(obj: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(obj, Mapping):
        yield obj
        yield from _leaves(obj.get("elements"))
    elif isinstance(obj, list):
        for item in obj:
            yield from _leaves(item)


def _list_of(obj: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    elements = obj.get("elements")
    if not isinstance(elements, list) or not all(isinstance(e, Mapping) for e in elements):
        raise _Unreadable(obj.get("type"))
    return elements


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise _Unreadable(key)
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Unreadable(key)
    return value


def _style(element: Mapping[str, Any]) -> tuple[bool, ...]:
    style = element.get("style")
    if not isinstance(style, Mapping):
        return (False, False, False, False)
    return tuple(bool(style.get(key)) for key in ("code", "bold", "italic", "strike"))


def _wrapped(body: str, style: tuple[bool, ...]) -> str:
    """Styled text between mrkdwn's markers; they hug the words, as Slack's rule wants."""
    core = body.strip()
    if not core or not any(style):
        return body
    lead = body[: len(body) - len(body.lstrip())]
    trail = body[len(body.rstrip()) :]
    code, *rest = style
    if code:
        core = f"`{core}`"  # mrkdwn shows no style inside code
    else:
        for on, marker in zip(rest, _MARKERS, strict=True):
            if on:
                core = f"{marker}{core}{marker}"
    return f"{lead}{core}{trail}"


class _Reader:
    """Reads one block with the names it was given."""

    def __init__(self, names: Mapping[str, str], channels: Mapping[str, str]) -> None:
        self._names = names
        self._channels = channels

    def block(self, block: Mapping[str, Any]) -> str:
        """The whole block: its objects one after another, each on its own lines."""
        out = ""
        for obj in _list_of(block):
            piece = self._object(obj)
            if out and not out.endswith("\n"):
                out += "\n"
            out += piece
        return out

    def _object(self, obj: Mapping[str, Any]) -> str:
        kind = obj.get("type")
        if kind == "rich_text_section":
            return self._inline(_list_of(obj))
        if kind == "rich_text_quote":
            body = self._inline(_list_of(obj))
            return "\n".join(f"> {line}" for line in body.split("\n"))
        if kind == "rich_text_preformatted":
            # A code block is literal: its links as their words, no style.
            return "```" + "".join(self._piece(e) for e in _list_of(obj)) + "```"
        if kind == "rich_text_list":
            return self._list(obj)
        raise _Unreadable(kind)

    def _list(self, obj: Mapping[str, Any]) -> str:
        indent, offset = _int(obj, "indent"), _int(obj, "offset")
        ordered = obj.get("style") == "ordered"
        lines = []
        for number, item in enumerate(_list_of(obj), start=offset + 1):
            if item.get("type") != "rich_text_section":
                raise _Unreadable(item.get("type"))
            marker = f"{number}." if ordered else _BULLETS[indent % len(_BULLETS)]
            lines.append(f"{'    ' * indent}{marker} {self._inline(_list_of(item))}")
        return "\n".join(lines)

    def _inline(self, elements: Sequence[Mapping[str, Any]]) -> str:
        # Neighbours in the same style share one pair of markers (`*a link and words*`).
        return "".join(
            _wrapped("".join(self._piece(e) for e in run), style)
            for style, run in groupby(elements, key=_style)
        )

    def _piece(self, element: Mapping[str, Any]) -> str:
        kind = element.get("type")
        if kind == "text":
            return _str(element, "text")
        if kind == "link":
            return link_words(_str(element, "url"), _str(element, "text"))
        if kind == "emoji":
            return _emoji(element)
        if kind == "user":
            user = _str(element, "user_id")
            return "@" + (self._names.get(user) or user)
        if kind == "channel":
            return "#" + (self._channels.get(_str(element, "channel_id")) or "channel")
        if kind == "broadcast":
            return "@" + _str(element, "range")
        if kind == "date":
            return _str(element, "fallback")
        if kind == "rich_text_section":
            # A quote may hold its lines as sections.
            return self._inline(_list_of(element))
        raise _Unreadable(kind)


def _emoji(element: Mapping[str, Any]) -> str:
    """A standard emoji from its code points (with its skin tone); a custom one as `:name:`."""
    name, _, tone_name = _str(element, "name").partition("::skin-tone-")
    tone = element.get("skin_tone")
    if not isinstance(tone, int) and tone_name.isdigit():
        tone = int(tone_name)  # the docs' spelling, "wave::skin-tone-2"
    points = _str(element, "unicode")
    if not points:
        return emoji_named(name, tone if isinstance(tone, int) else None) or f":{name}:"
    try:
        found = "".join(chr(int(point, 16)) for point in points.split("-"))
    except ValueError:
        raise _Unreadable(points) from None
    if isinstance(tone, int) and tone in range(2, 7) and not any(ord(c) in _TONES for c in found):
        found = found.replace("\ufe0f", "") + chr(_FIRST_TONE + tone - 2)
    return found

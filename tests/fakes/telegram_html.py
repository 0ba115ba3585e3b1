"""Telegram's `parse_mode=HTML`, as the Bot API applies it ("Formatting options", HTML style,
https://core.telegram.org/bots/api#html-style): the text a customer sees and its entities.

Only the documented tags are accepted; every `<`, `>` and `&` outside a tag or an entity must be
escaped; of the named entities only `&lt; &gt; &amp; &quot;` exist (numeric ones all do). What
breaks a rule is refused as Telegram refuses it: 400 "Bad Request: can't parse entities: …".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "a": "text_link",
    "span": "spoiler",  # only as <span class="tg-spoiler">
    "tg-emoji": "custom_emoji",
}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TOKEN = re.compile(r"<(/?)([a-z-]+)((?:\s[^<>]*)?)>|&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);|[<>&]")


class ParseError(ValueError):
    """What Telegram answers to text its HTML mode cannot read."""


@dataclass
class _Open:
    tag: str
    offset: int
    attrs: str


@dataclass
class Parsed:
    """The text as shown, and its entities with UTF-16 offsets."""

    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)


def parse_html(source: str) -> Parsed:
    """Apply Telegram's HTML parse mode; raise ParseError where Telegram would refuse."""
    out: list[str] = []
    length = 0  # UTF-16 code units so far, as Telegram counts entity offsets
    stack: list[_Open] = []
    entities: list[dict[str, Any]] = []
    pos = 0
    for match in _TOKEN.finditer(source):
        plain = source[pos : match.start()]
        out.append(plain)
        length += _utf16(plain)
        pos = match.end()
        token = match.group(0)
        if token in "<>&":
            raise ParseError(
                f"Unsupported start tag or unescaped {token!r} at offset {match.start()}"
            )
        if match.group(4) is not None:
            char = _entity(match.group(4))
            out.append(char)
            length += _utf16(char)
            continue
        closing, tag, attrs = match.group(1) == "/", match.group(2), match.group(3) or ""
        if tag not in _ENTITY_TYPES:
            raise ParseError(f'Unsupported start tag "{tag}" at byte offset {match.start()}')
        if not closing:
            stack.append(_Open(tag, length, attrs))
            continue
        if not stack or stack[-1].tag != tag:
            raise ParseError(f"Unexpected end tag at byte offset {match.start()}")
        opened = stack.pop()
        entity: dict[str, Any] = {
            "type": _ENTITY_TYPES[tag],
            "offset": opened.offset,
            "length": length - opened.offset,
        }
        if tag == "a":
            href = re.search(r'href\s*=\s*"([^"]*)"', opened.attrs)
            entity["url"] = href.group(1) if href else ""
        if entity["length"] > 0:
            entities.append(entity)
    out.append(source[pos:])
    if stack:
        raise ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    return Parsed("".join(out), sorted(entities, key=lambda e: (e["offset"], -e["length"])))


def _entity(name: str) -> str:
    if name.startswith("#x"):
        return chr(int(name[2:], 16))
    if name.startswith("#"):
        return chr(int(name[1:]))
    if name not in _NAMED:
        raise ParseError(f'Unsupported HTML entity "&{name};"')
    return _NAMED[name]


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2

"""The `rich_text` block Slack's composer sends beside a message's `text`, for the fake Slack.

Shaped after the captured events in tests/corpus/slack (`event_message_with_*.json`,
`event_message_rich_text.json`): one `rich_text` block of sections, lists, preformatted
blocks and quotes; text elements with a `style`, links, emoji with their `unicode` (and a
`skin_tone`), users and channels by id. `rich_text_of` builds it from what a person typed
(the same typing `as_slack_sends` turns into `text`); `slack_text_of` writes the `text` Slack
sends beside a given block.
"""

from __future__ import annotations

import re
from typing import Any

import emoji

Element = dict[str, Any]

# Slack's style rule: a marker after a non-word character hugs its words, on one line.
_STYLE = re.compile(r"(?<![\w*_~])([*_~])(?=[^\s*_~])([^\n]*?[^\s])\1(?![\w*_~])")
_CODE = re.compile(r"`([^`\n]+)`")
_STYLES = {"*": "bold", "_": "italic", "~": "strike"}
# A mention picked from the autocomplete, a web or e-mail address, a `:shortcode:` (with a
# skin tone).
_PIECE = re.compile(
    r"<(?P<kind>[@#])(?P<id>[A-Z0-9]+)(?:\|[^<>]*)?>"
    r"|(?P<url>https?://[^\s<>]*[^\s<>.,;:!?)\]'\"])"
    r"|(?P<mail>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
    r"|:(?P<code>[a-z0-9_+'-]+):(?::skin-tone-(?P<tone>[2-6]):)?"
)
_LIST_ITEM = re.compile(r"^(?P<indent>(?: {4})*)(?P<marker>•|\d+\.) (?P<body>.*)$")
_FIRST_TONE = 0x1F3FB


def rich_text_of(typed: str) -> Element:
    """The rich_text block Slack's composer makes of what a person typed."""
    objects: list[Element] = []
    lines = typed.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            body, i = _fenced(lines, i)
            objects.append(
                {"type": "rich_text_preformatted", "elements": [_text(body)], "border": 0}
            )
        elif _LIST_ITEM.match(line) is not None:
            i = _list(lines, i, objects)
        elif line.startswith("> ") or line == ">":
            quoted = []
            while i < len(lines) and (lines[i].startswith("> ") or lines[i] == ">"):
                quoted.append(lines[i][2:])
                i += 1
            objects.append({"type": "rich_text_quote", "elements": _inline("\n".join(quoted))})
        else:
            plain = []
            while i < len(lines) and not _starts_object(lines[i]):
                plain.append(lines[i])
                i += 1
            objects.append({"type": "rich_text_section", "elements": _inline("\n".join(plain))})
    return {"type": "rich_text", "block_id": "fake0", "elements": objects}


def _starts_object(line: str) -> bool:
    return line.startswith(("```", "> ")) or line == ">" or _LIST_ITEM.match(line) is not None


def _fenced(lines: list[str], i: int) -> tuple[str, int]:
    """The body of a ``` block from line i, and the line after it."""
    first = lines[i][3:]
    if first.endswith("```") and len(first) >= 3:
        return first[:-3], i + 1
    body = [first] if first else []
    i += 1
    while i < len(lines) and not lines[i].endswith("```"):
        body.append(lines[i])
        i += 1
    if i < len(lines):
        last = lines[i][:-3]
        if last:
            body.append(last)
        i += 1
    return "\n".join(body), i


def _list(lines: list[str], i: int, objects: list[Element]) -> int:
    """Consecutive list items, one rich_text_list per run of the same indent and kind."""
    current: Element | None = None
    while i < len(lines) and (item := _LIST_ITEM.match(lines[i])) is not None:
        indent = len(item.group("indent")) // 4
        marker = item.group("marker")
        style = "bullet" if marker == "•" else "ordered"
        if current is None or (current["indent"], current["style"]) != (indent, style):
            current = {"type": "rich_text_list", "elements": [], "style": style, "indent": indent}
            if style == "ordered" and int(marker[:-1]) > 1:
                current["offset"] = int(marker[:-1]) - 1
            current["border"] = 0
            objects.append(current)
        section = {"type": "rich_text_section", "elements": _inline(item.group("body"))}
        current["elements"].append(section)
        i += 1
    return i


def _text(text: str, style: dict[str, bool] | None = None) -> Element:
    element: Element = {"type": "text", "text": text}
    if style:
        element["style"] = dict(style)
    return element


def _inline(text: str, style: dict[str, bool] | None = None) -> list[Element]:
    """Inline code first (nothing inside it is markup), then the style markers."""
    out: list[Element] = []
    pos = 0
    for match in _CODE.finditer(text):
        out.extend(_styled(text[pos : match.start()], style or {}))
        out.append(_text(match.group(1), {**(style or {}), "code": True}))
        pos = match.end()
    out.extend(_styled(text[pos:], style or {}))
    return out


def _styled(text: str, style: dict[str, bool]) -> list[Element]:
    out: list[Element] = []
    pos = 0
    for match in _STYLE.finditer(text):
        out.extend(_pieces(text[pos : match.start()], style))
        out.extend(_styled(match.group(2), {**style, _STYLES[match.group(1)]: True}))
        pos = match.end()
    out.extend(_pieces(text[pos:], style))
    return out


def _pieces(text: str, style: dict[str, bool]) -> list[Element]:
    """Mentions, links and emoji between plain words."""
    out: list[Element] = []
    pos = 0
    for match in _PIECE.finditer(text):
        out.extend(_words(text[pos : match.start()], style))
        out.append(_piece(match, style))
        pos = match.end()
    out.extend(_words(text[pos:], style))
    return out


def _piece(match: re.Match[str], style: dict[str, bool]) -> Element:
    element: Element
    if match.group("kind") == "@":
        element = {"type": "user", "user_id": match.group("id")}
    elif match.group("kind") == "#":
        element = {"type": "channel", "channel_id": match.group("id")}
    elif match.group("url"):
        element = {"type": "link", "url": match.group("url")}
    elif match.group("mail"):
        element = {"type": "link", "url": f"mailto:{match.group('mail')}", "text": match["mail"]}
    else:
        tone = match.group("tone")
        element = _emoji(match.group("code"), int(tone) if tone else None)
    if style:
        element["style"] = dict(style)
    return element


def _words(text: str, style: dict[str, bool]) -> list[Element]:
    """Plain words; an emoji typed as a character becomes an emoji element, as Slack's
    composer makes it."""
    out: list[Element] = []
    pos = 0
    for found in emoji.emoji_list(text):
        if found["match_start"] > pos:
            out.append(_text(text[pos : found["match_start"]], style))
        out.append(_typed_emoji(found["emoji"], style))
        pos = found["match_end"]
    if pos < len(text):
        out.append(_text(text[pos:], style))
    return out


def _hex(chars: str) -> str:
    return "-".join(f"{ord(c):x}" for c in chars)


def _emoji(name: str, tone: int | None) -> Element:
    """An emoji element by its name: a standard emoji with its code points, a workspace's
    custom emoji by name alone."""
    element: Element = {"type": "emoji", "name": name}
    found = emoji.emojize(f":{name}:", language="alias")
    if found != f":{name}:":
        if tone:
            found = found.replace("\ufe0f", "") + chr(_FIRST_TONE + tone - 2)
        element["unicode"] = _hex(found)
    if tone:
        element["skin_tone"] = tone
    return element


def _typed_emoji(char: str, style: dict[str, bool]) -> Element:
    tones = [c for c in char if _FIRST_TONE <= ord(c) < _FIRST_TONE + 5]
    base = "".join(c for c in char if c not in tones)
    name = emoji.demojize(base, language="alias").strip(":")
    # Slack names the emoji and sends its code points as its own list spells them.
    canonical = emoji.emojize(f":{name}:", language="alias")
    element: Element = {"type": "emoji", "name": name}
    if tones:
        element["unicode"] = _hex(canonical.replace("\ufe0f", "") + tones[0])
        element["skin_tone"] = ord(tones[0]) - _FIRST_TONE + 2
    else:
        element["unicode"] = _hex(canonical)
    if style:
        element["style"] = dict(style)
    return element


# -- the text beside a given block --------------------------------------------------------


def slack_text_of(block: Element) -> str:
    """The `text` Slack sends beside a rich_text block: its markup, escaped."""
    out: list[str] = []
    for obj in block["elements"]:
        kind = obj["type"]
        if kind == "rich_text_section":
            out.append(_marked(obj["elements"]))
        elif kind == "rich_text_quote":
            body = _marked(obj["elements"])
            out.append("\n".join(f"&gt; {line}" for line in body.split("\n")))
        elif kind == "rich_text_preformatted":
            body = "".join(e.get("text") or e.get("url", "") for e in obj["elements"])
            out.append(f"```{_escaped(body)}```")
        else:
            indent = "    " * obj.get("indent", 0)
            start = obj.get("offset", 0) + 1
            for number, item in enumerate(obj["elements"], start=start):
                marker = f"{number}." if obj["style"] == "ordered" else "•"
                out.append(f"{indent}{marker} {_marked(item['elements'])}")
    return "\n".join(out)


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _marked(elements: list[Element]) -> str:
    out: list[str] = []
    for element in elements:
        body = _markup(element)
        style = element.get("style") or {}
        core = body.strip()
        if core and style.get("code"):
            core = f"`{core}`"
        elif core:
            for key, marker in (("bold", "*"), ("italic", "_"), ("strike", "~")):
                if style.get(key):
                    core = f"{marker}{core}{marker}"
        lead = body[: len(body) - len(body.lstrip())]
        trail = body[len(body.rstrip()) :] if body.strip() else ""
        out.append(f"{lead}{core}{trail}" if body.strip() else body)
    return "".join(out)


def _markup(element: Element) -> str:
    kind = element["type"]
    if kind == "text":
        return _escaped(element["text"])
    if kind == "link":
        label = element.get("text")
        return f"<{element['url']}|{_escaped(label)}>" if label else f"<{element['url']}>"
    if kind == "emoji":
        tone = element.get("skin_tone")
        return f":{element['name']}:" + (f":skin-tone-{tone}:" if tone else "")
    if kind == "user":
        return f"<@{element['user_id']}>"
    if kind == "channel":
        return f"<#{element['channel_id']}>"
    if kind == "broadcast":
        return f"<!{element['range']}>"
    if kind == "usergroup":
        return f"<!subteam^{element['usergroup_id']}>"
    if kind == "date":
        return f"<!date^{element['timestamp']}^{element['format']}|{element['fallback']}>"
    raise ValueError(kind)

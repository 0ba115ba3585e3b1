"""Slack's message markup in plain words: what a customer reads of what an agent wrote, and
the command line a staff member typed.

Slack sends a message's `text` in its own markup ("Formatting text for app surfaces",
https://api.slack.com/reference/surfaces/formatting): the `&`, `<` and `>` the author typed
arrive as `&amp;`, `&lt;` and `&gt;`, and whatever stands between a real `<` and `>` is markup:
links `<url>` and `<url|label>`, `<mailto:…|…>` and `<tel:…|…>`, user mentions `<@U…>`,
channels `<#C…|name>`, special mentions `<!here>`, user groups `<!subteam^S…|@handle>` and
dates `<!date^…|fallback>`. Emoji arrive as `:shortcode:`, a skin tone as a second code right
after (`:+1::skin-tone-3:`). The markup is read first and the escaping undone after, once, so
an `&lt;` the author typed stays a literal `<`. Slash commands with `should_escape` use the
same markup ("Implementing slash commands", https://api.slack.com/interactivity/slash-commands).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import emoji

# Everything between a `<` and the next `>`: Slack escapes the brackets an author types.
_MARKUP = re.compile(r"<([^<>]*)>")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_EMOJI = re.compile(r":([a-z0-9_+'-]+):(?::skin-tone-([2-6]):)?")
_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")
# A channel mention without its name: `<#C…>` or `<#C…|>`.
_BARE_CHANNEL = re.compile(r"<#([CGD][A-Z0-9]+)\|?>")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# `<!group>` is an older name of `<!channel>`.
_BROADCASTS = ("here", "channel", "everyone", "group")
# Slack's skin-tone-2 … skin-tone-6 are the Fitzpatrick modifiers U+1F3FB … U+1F3FF.
_FIRST_TONE = 0x1F3FB
_REGIONAL_A = 0x1F1E6


def readable(
    text: str,
    names: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
) -> str:
    """A message's text as the customer should read it.

    Args:
        text: the `text` of a message event, as Slack sends it.
        names: display names of the users it may mention, by user id; a mention of anyone
            else shows its label, or the user id.
        channels: names of the channels it may mention without a label, by channel id; any
            other such mention reads `#channel`.
    """
    known, rooms = names or {}, channels or {}
    return _decode(text, lambda inner: _for_reader(inner, known, rooms))


def command_text(text: str) -> str:
    """A command line as its author typed it: links without their brackets, emoji as
    Unicode, the escaping undone; user mentions stay `<@U…>`, which commands read as the
    staff member they name."""
    return _decode(text, _for_command)


def mentioned_users(text: str) -> list[str]:
    """The ids of the users a message's text mentions, each once, in order."""
    return list(dict.fromkeys(match.group(1) for match in _USER.finditer(text)))


def unnamed_channels(text: str) -> list[str]:
    """The ids of the channels a message's text mentions without their name, each once."""
    return list(dict.fromkeys(match.group(1) for match in _BARE_CHANNEL.finditer(text)))


def link_words(url: str, label: str, shown: Callable[[str], str] = str) -> str:
    """A link as a customer reads it: the label (as `shown` makes it) and the URL, or the URL
    alone when the label only repeats it; an e-mail address or phone number without its
    scheme."""
    if url.lower().startswith("mailto:"):
        address = url[len("mailto:") :]
        return address if label in ("", address) else f"{shown(label)} ({address})"
    if url.lower().startswith("tel:"):
        return label or url[len("tel:") :]
    if label in ("", url, _SCHEME.sub("", url)):
        return url
    return f"{shown(label)} ({url})"


def emoji_named(name: str, tone: int | None = None) -> str | None:
    """The Unicode emoji Slack calls `name` (with a skin tone 2-6); None for a name no
    standard emoji has (a workspace's custom emoji)."""
    return _emoji(name, str(tone) if tone in range(2, 7) else None)


def unescape(text: str) -> str:
    """Undo Slack's escaping of `&`, `<` and `>`, in one pass."""
    return _ENTITY.sub(lambda match: _ENTITIES[match.group(1)], text)


def emojize(text: str) -> str:
    """Slack's `:shortcode:` emoji (with a skin tone) as Unicode; a code no emoji has (a
    workspace's custom emoji) stays as it is."""
    out: list[str] = []
    pos = 0
    while (match := _EMOJI.search(text, pos)) is not None:
        found = _emoji(match.group(1), match.group(2))
        if found is None:
            # Its closing colon may open the next code (`ab:custom:smile:`).
            out.append(text[pos : match.end(1)])
            pos = match.end(1)
            continue
        out.append(text[pos : match.start()])
        out.append(found)
        pos = match.end()
    out.append(text[pos:])
    return "".join(out)


def _emoji(name: str, tone: str | None) -> str | None:
    code = f":{name}:"
    if name.startswith("flag-") and re.fullmatch(r"[a-z]{2}", name[5:]):
        # Slack's flags are named by country code; the emoji is the two regional letters.
        found = "".join(chr(_REGIONAL_A + ord(c) - ord("a")) for c in name[5:])
        if not emoji.is_emoji(found):
            return None
    else:
        found = emoji.emojize(code, language="alias")
        if found == code:
            return None
    if tone:
        found = found.replace("\ufe0f", "") + chr(_FIRST_TONE + int(tone) - 2)
    return found


def _decode(text: str, markup: Callable[[str], str]) -> str:
    out: list[str] = []
    pos = 0
    for match in _MARKUP.finditer(text):
        out.append(unescape(emojize(text[pos : match.start()])))
        out.append(markup(match.group(1)))
        pos = match.end()
    out.append(unescape(emojize(text[pos:])))
    return "".join(out)


def _for_reader(inner: str, names: Mapping[str, str], channels: Mapping[str, str]) -> str:
    """One piece of markup (without its brackets) as a customer reads it."""
    head, _, label = inner.partition("|")
    label = unescape(label)
    if head.startswith("@"):
        user = head[1:]
        return "@" + (names.get(user) or label.lstrip("@") or user)
    if head.startswith("#"):
        return f"#{label or channels.get(head[1:]) or 'channel'}"
    if head.startswith("!"):
        return _named(head, label)
    # Slack writes a label's emoji as `:shortcode:`.
    return link_words(unescape(head), label, emojize)


def _for_command(inner: str) -> str:
    """One piece of markup (without its brackets) in a command line."""
    head, _, label = inner.partition("|")
    if head.startswith("@"):
        return f"<{inner}>"
    if head.startswith(("#", "!")):
        return _named(head, unescape(label))
    url = unescape(head)
    for scheme in ("mailto:", "tel:"):
        if url.lower().startswith(scheme):
            return url[len(scheme) :]
    return url


def _named(head: str, label: str) -> str:
    """A channel, a special mention, a user group or a date, in words."""
    if head.startswith("#"):
        return f"#{label or head[1:]}"
    word, _, rest = head[1:].partition("^")
    if word in _BROADCASTS:
        return f"@{word}"
    if word == "subteam":
        return f"@{label.lstrip('@') or rest}"
    if word == "date":
        return label  # the fallback Slack shows where it cannot format the date
    # Slack's formatting docs: show a command not known yet as <label>, or <command>.
    return f"<{label or word}>"

"""What staff read of a customer's Telegram message, as plain text.

Pure functions over parts of the Bot API's Message object (core.telegram.org/bots/api#message),
called once by `connectors.telegram.parse_update`: the text with the targets of its `text_link`
entities written out, and readable lines for shared locations, contacts and stickers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from bridge.types import Attachment, MediaKind
from connectors.wire import int_or_none, map_point, opt_str

# "https://", "mailto:", "tg://": what a label may leave out of the URL it links to.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?://)?")


def shown_text(message: Mapping[str, Any], *, edit: bool = False) -> str | None:
    """The text, else the caption, as staff read it; None when the message has neither.

    A new message's empty text counts as none (the caption is taken); an edit's text is
    taken even when empty.
    """
    for field, entities in (("text", "entities"), ("caption", "caption_entities")):
        value = opt_str(message, field)
        if value or (edit and value is not None):
            return plain_text(value, message.get(entities))
    return None


def shared_line(message: Mapping[str, Any]) -> str | None:
    """What a location, venue, contact or sticker message shows in place of a text."""
    sticker = message.get("sticker")
    if isinstance(sticker, Mapping):
        return sticker_line(sticker)
    return location_line(message) or contact_line(message.get("contact"))


def plain_text(text: str, entities: Any) -> str:
    """The text with each `text_link`'s URL after its label: "label (url)".

    A text_link's URL is only in its entity (MessageEntity.url), so plain text would lose it;
    every other entity only styles or marks characters that are in the text already, and a
    custom emoji's characters are its fallback emoji, so those are kept as they are.
    """
    pieces: list[str] = []
    done = 0
    for at, added in link_insertions(text, entities):
        pieces.append(text[done:at])
        pieces.append(added)
        done = at
    pieces.append(text[done:])
    return "".join(pieces)


def link_insertions(text: str, entities: Any) -> list[tuple[int, str]]:
    """Where plain text adds each `text_link`'s " (url)": (index into `text`, what), in order.

    The URL goes after the label's last visible character; a label that already says the URL
    gets none.
    """
    found: list[tuple[int, str]] = []
    done = 0
    for start, end, url in _text_links(text, entities):
        if start < done:
            continue  # overlapping links are not what Telegram sends; the first one wins
        label = text[start:end].rstrip()
        done = start + len(label)
        if _bare(label) != _bare(url):
            found.append((done, f" ({url})"))
    return found


def _text_links(text: str, entities: Any) -> list[tuple[int, int, str]]:
    """(start, end, url) of each well-formed text_link, as indexes into `text`, in order."""
    if not isinstance(entities, list):
        return []
    bounds = boundaries(text)
    links: list[tuple[int, int, str]] = []
    for entity in entities:
        if not isinstance(entity, Mapping) or entity.get("type") != "text_link":
            continue
        offset, length = int_or_none(entity.get("offset")), int_or_none(entity.get("length"))
        url = opt_str(entity, "url")
        if offset is None or length is None or length <= 0 or not url or not url.strip():
            continue
        # Offsets and lengths count UTF-16 code units (MessageEntity): an emoji before the
        # link counts two. One that ends inside a character is no span of this text.
        start, end = bounds.get(offset), bounds.get(offset + length)
        if start is not None and end is not None:
            links.append((start, end, url.strip()))
    links.sort()
    return links


def boundaries(text: str) -> dict[int, int]:
    """The index into `text` of every UTF-16 offset that falls between two characters."""
    found = {0: 0}
    units = 0
    for index, char in enumerate(text, start=1):
        units += 2 if ord(char) > 0xFFFF else 1
        found[units] = index
    return found


def _bare(link: str) -> str:
    """A link without its scheme and trailing slash: a label that says the URL needs no copy."""
    link = link.strip()
    return _SCHEME.sub("", link, count=1).rstrip("/") if _SCHEME.match(link) else link.rstrip("/")


def location_line(message: Mapping[str, Any]) -> str | None:
    """A shared location (or venue) with a map link; None when the message has none."""
    location = message.get("location")
    if not isinstance(location, Mapping):
        return None
    lat = _degrees(location.get("latitude"), 90)
    lon = _degrees(location.get("longitude"), 180)
    if lat is None or lon is None:
        return None
    # A venue message carries its place in `venue` and, for older clients, the point in
    # `location` too (Message.venue).
    venue = message.get("venue")
    place = ""
    if isinstance(venue, Mapping):
        parts = (opt_str(venue, "title"), opt_str(venue, "address"))
        place = ", ".join(part.strip() for part in parts if part and part.strip())
    # The same "lat, lon" and map link as the other messengers' locations.
    point = map_point(float(lat), float(lon))
    if point is None:
        return None
    return f"[location] {place}: {point}" if place else f"[location] {point}"


def _degrees(value: Any, limit: float) -> str | None:
    """A latitude or longitude as a short decimal; None when it is none."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    if not math.isfinite(number) or abs(number) > limit:
        return None
    # Six decimals are about 10 cm, finer than any phone's fix; no exponent in a URL.
    shown = f"{number:.6f}".rstrip("0").rstrip(".")
    return "0" if shown == "-0" else shown


def contact_line(contact: Any) -> str | None:
    """A shared contact's name and number; None when the message shares none."""
    if not isinstance(contact, Mapping):
        return None
    names = (opt_str(contact, "first_name"), opt_str(contact, "last_name"))
    name = " ".join(part.strip() for part in names if part and part.strip())
    number = (opt_str(contact, "phone_number") or "").strip()
    if not name and not number:
        return None
    return f"[contact] {name or '(no name)'}: {number}" if number else f"[contact] {name}"


def sticker_line(sticker: Mapping[str, Any]) -> str:
    """A sticker as its emoji, the one the sticker stands for (Sticker.emoji)."""
    emoji = (opt_str(sticker, "emoji") or "").strip()
    return f"[sticker] {emoji}" if emoji else "[sticker]"


def sticker_file(sticker: Mapping[str, Any], file_id: str) -> tuple[Attachment, ...]:
    """The sticker's file when staff can see it: a still .WEBP image or a .WEBM video.

    Animated stickers are .TGS (Sticker.is_animated), a Telegram-only animation format that
    Slack and Matrix cannot show: the emoji stands for them.
    """
    if sticker.get("is_animated") is True:
        return ()
    video = sticker.get("is_video") is True
    return (
        Attachment(
            kind=MediaKind.VIDEO if video else MediaKind.IMAGE,
            ref=file_id,
            mime_type="video/webm" if video else "image/webp",
            size=int_or_none(sticker.get("file_size")),
        ),
    )

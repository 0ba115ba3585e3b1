"""Parsing of WhatsApp Cloud API webhook payloads into the bridge's inbound events."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.errors import BadRequest
from bridge.types import (
    WHATSAPP,
    AccountId,
    Attachment,
    ChatId,
    CustomerProfile,
    DeliveryStatus,
    ExternalMessageId,
    InboundEvent,
    InboundMessage,
    InboundReaction,
    MediaKind,
    StatusUpdate,
)
from connectors.whatsapp_api import ERROR_WORDS
from connectors.wire import int_or_none, map_point, opt_str, reaction_emoji, storable

log = logging.getLogger(__name__)

_MEDIA_FIELDS: Mapping[str, MediaKind] = {
    "image": MediaKind.IMAGE,
    # Stickers are WebP images; staff see them as pictures.
    "sticker": MediaKind.IMAGE,
    "document": MediaKind.DOCUMENT,
    "audio": MediaKind.AUDIO,
    "video": MediaKind.VIDEO,
}
_STATUSES: Mapping[str, DeliveryStatus] = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
}

# Numbers sent as text: ASCII digits only ("²".isdigit() is true, int("²") fails) and few of them.
_MAX_DIGITS = 20
_DIGITS = re.compile(rf"[0-9]{{1,{_MAX_DIGITS}}}")


def parse_webhook(payload: Any, accounts: Collection[str]) -> list[InboundEvent]:
    """Turn one Cloud API webhook body into bridge events for the numbers in `accounts`."""
    if not isinstance(payload, Mapping) or payload.get("object") != "whatsapp_business_account":
        msg = "not a whatsapp_business_account webhook"
        raise BadRequest(msg)
    if not storable(payload):
        msg = "the webhook holds a lone surrogate, which is no text"
        raise BadRequest(msg)
    entries = payload.get("entry")
    if not isinstance(entries, list):
        msg = "the webhook has no entry list"
        raise BadRequest(msg)
    events: list[InboundEvent] = []
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, Mapping) else None
        if not isinstance(changes, list):
            msg = "an entry has no changes list"
            raise BadRequest(msg)
        for change in changes:
            if not isinstance(change, Mapping):
                msg = "a change is not an object"
                raise BadRequest(msg)
            # Other fields (message_template_status_update, account_update…) are not messages.
            if change.get("field") != "messages":
                continue
            events.extend(_parse_value(change.get("value"), accounts))
    return events


def _parse_value(value: Any, accounts: Collection[str]) -> list[InboundEvent]:
    if not isinstance(value, Mapping):
        msg = "a messages change has no value object"
        raise BadRequest(msg)
    metadata = value.get("metadata")
    number_id = metadata.get("phone_number_id") if isinstance(metadata, Mapping) else None
    if not isinstance(number_id, str) or not number_id:
        msg = "a messages change lacks metadata.phone_number_id"
        raise BadRequest(msg)
    if number_id not in accounts:
        return []
    account = AccountId(number_id)
    names = _contact_names(value.get("contacts"))
    events: list[InboundEvent] = []
    for raw in _list(value, "messages"):
        if isinstance(raw, Mapping) and raw.get("type") == "reaction":
            events.append(_parse_reaction(raw, account))
            continue
        message = _parse_message(raw, account, names)
        if message is not None:
            events.append(message)
    for raw in _list(value, "statuses"):
        status = _parse_status(raw, account)
        if status is not None:
            events.append(status)
    _log_errors(value.get("errors"), number_id)
    return events


def _log_errors(errors: Any, number_id: str) -> None:
    """Log the system, app or account errors a change reports (…/messages/errors)."""
    # They concern the number, not one message, so no conversation can show them.
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, Mapping):
            code, words = _error_words(error)
            log.warning("WhatsApp reports on number %s: %s (code %s)", number_id, words, code)


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        msg = f"value.{key} is not a list"
        raise BadRequest(msg)
    return value


def _contact_names(contacts: Any) -> dict[str, str]:
    """wa_id → the profile name the customer set, from `value.contacts`."""
    names: dict[str, str] = {}
    if not isinstance(contacts, list):
        return names
    for contact in contacts:
        if not isinstance(contact, Mapping):
            continue
        wa_id = contact.get("wa_id")
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, Mapping) else None
        if isinstance(wa_id, str) and isinstance(name, str) and name.strip():
            names[wa_id] = name.strip()
    return names


def _parse_message(raw: Any, account: AccountId, names: Mapping[str, str]) -> InboundMessage | None:
    if not isinstance(raw, Mapping):
        msg = "a message is not an object"
        raise BadRequest(msg)
    sender, message_id = raw.get("from"), raw.get("id")
    if (
        not isinstance(sender, str)
        or not sender
        or not isinstance(message_id, str)
        or not message_id
    ):
        msg = "a message lacks from or id"
        raise BadRequest(msg)
    sent_at = _timestamp(raw.get("timestamp"), "a message")
    content = _content(raw)
    if content is None:
        return None
    text, attachments = content
    return InboundMessage(
        platform=WHATSAPP,
        account=account,
        chat_id=ChatId(sender),
        # wamids are unique across WhatsApp, so they are the external id as they are.
        external_id=ExternalMessageId(message_id),
        profile=CustomerProfile(display_name=names.get(sender) or f"+{sender}", username=None),
        text=text,
        sent_at=sent_at,
        attachments=attachments,
        reply_to=_reply_to(raw),
    )


def _reply_to(message: Mapping[str, Any]) -> ExternalMessageId | None:
    """The message a reply answers: `context.id`. A forwarded message's `context` has no id
    (`forwarded`, `frequently_forwarded`), and answers nothing."""
    context = message.get("context")
    replied = opt_str(context, "id") if isinstance(context, Mapping) else None
    return ExternalMessageId(replied) if replied else None


def _parse_reaction(raw: Mapping[str, Any], account: AccountId) -> InboundReaction:
    """A `reaction` message: the customer's emoji on an earlier message (`message_id`), one
    per person; without `emoji` (or with an empty one) the reaction was taken back."""
    sender = raw.get("from")
    if not isinstance(sender, str) or not sender:
        msg = "a reaction lacks from"
        raise BadRequest(msg)
    reaction = _object(raw, "reaction")
    target = opt_str(reaction, "message_id")
    if target is None:
        msg = "a reaction has no reaction.message_id"
        raise BadRequest(msg)
    return InboundReaction(
        platform=WHATSAPP,
        account=account,
        chat_id=ChatId(sender),
        target=ExternalMessageId(target),
        emoji=reaction_emoji([opt_str(reaction, "emoji")]),
        at=_timestamp(raw.get("timestamp"), "a reaction"),
    )


def _content(message: Mapping[str, Any]) -> tuple[str, tuple[Attachment, ...]] | None:
    """The text and attachments of a message; None for kinds the bridge does not forward."""
    kind = message.get("type")
    if kind == "text":
        body = _object(message, "text").get("body")
        if not isinstance(body, str):
            msg = "a text message has no text.body"
            raise BadRequest(msg)
        return body, ()
    if isinstance(kind, str) and kind in _MEDIA_FIELDS:
        return _media(kind, _object(message, kind))
    if kind == "button":
        # A quick-reply button of a template: `text` is its label, `payload` the developer's.
        button = _object(message, "button")
        label = opt_str(button, "text") or opt_str(button, "payload")
        if label is None:
            msg = "a button message has no text"
            raise BadRequest(msg)
        return label, ()
    if kind == "interactive":
        return _interactive(_object(message, "interactive"))
    if kind == "location":
        return _location(_object(message, "location")), ()
    if kind == "contacts":
        return _shared_contacts(message.get("contacts")), ()
    if kind == "unsupported":
        return _unsupported(message), ()
    # reaction, system, order, request_welcome…: nothing for staff to answer.
    return None


def _object(message: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = message.get(key)
    if not isinstance(value, Mapping):
        msg = f"a {key} message has no {key} object"
        raise BadRequest(msg)
    return value


def _media(kind: str, media: Mapping[str, Any]) -> tuple[str, tuple[Attachment, ...]]:
    media_id = media.get("id")
    if not isinstance(media_id, str) or not media_id:
        msg = f"a {kind} message has no media id"
        raise BadRequest(msg)
    mime_type = opt_str(media, "mime_type")
    if kind == "sticker" and mime_type is None:
        mime_type = "image/webp"
    attachment = Attachment(
        kind=_MEDIA_FIELDS[kind],
        ref=media_id,
        # Voice notes (`audio` with `voice: true`) and other media carry no file name.
        filename=opt_str(media, "filename") if kind == "document" else None,
        mime_type=mime_type,
        size=int_or_none(media.get("file_size")),
    )
    if kind == "sticker":
        # A sticker has no caption; the word tells staff why a picture came without text.
        return "[sticker]", (attachment,)
    return opt_str(media, "caption") or "", (attachment,)


def _interactive(interactive: Mapping[str, Any]) -> tuple[str, tuple[Attachment, ...]] | None:
    kind = interactive.get("type")
    if kind not in ("button_reply", "list_reply"):
        return None  # nfm_reply (flows) and others
    reply = interactive.get(kind)
    title = opt_str(reply, "title") if isinstance(reply, Mapping) else None
    if title is None:
        msg = f"an interactive {kind} has no title"
        raise BadRequest(msg)
    return title, ()


def _location(location: Mapping[str, Any]) -> str:
    latitude, longitude = _degrees(location.get("latitude")), _degrees(location.get("longitude"))
    point = (
        map_point(latitude, longitude) if latitude is not None and longitude is not None else None
    )
    if point is None:
        msg = "a location message lacks a latitude and longitude on Earth"
        raise BadRequest(msg)
    # `name` and `address` are set when a place was picked, `url` mostly for businesses
    # (…/webhooks/reference/messages/location); a pin dropped by hand has only the point.
    place = ", ".join(
        part.strip()
        for part in (opt_str(location, "name"), opt_str(location, "address"))
        if part and part.strip()
    )
    website = (opt_str(location, "url") or "").strip()
    return "[location] " + " · ".join(part for part in (place, point, website) if part)


def _shared_contacts(contacts: Any) -> str:
    if not isinstance(contacts, list):
        msg = "a contacts message has no contacts list"
        raise BadRequest(msg)
    lines: list[str] = []
    for card in contacts:
        if not isinstance(card, Mapping):
            msg = "a shared contact is not an object"
            raise BadRequest(msg)
        phones = card.get("phones")
        numbers = [
            number
            for phone in (phones if isinstance(phones, list) else [])
            if isinstance(phone, Mapping)
            for number in [_phone_number(phone)]
            if number
        ]
        line = _card_name(card.get("name")) or "(no name)"
        if numbers:
            line += ": " + ", ".join(numbers)
        lines.append(f"[contact] {line}")
    return "\n".join(lines) or "[contact]"


def _unsupported(message: Mapping[str, Any]) -> str:
    """A line telling staff the customer sent something WhatsApp does not pass on.

    Polls, pins, GIFs, edits and the first message to a number shared with the WhatsApp
    Business app come as `unsupported`, with the kind and an error (…/messages/unsupported).
    """
    details = message.get("unsupported")
    what = opt_str(details, "type") if isinstance(details, Mapping) else None
    errors = message.get("errors")
    error = errors[0] if isinstance(errors, list) and errors else None
    words = _error_words(error)[1] if isinstance(error, Mapping) else None
    line = "[unsupported message"
    if what:
        line += f" ({what})"
    if words:
        line += f": {words}"
    return f"{line}]"


def _card_name(name: Any) -> str | None:
    """A shared contact's name: `formatted_name`, else its parts (a device may omit any)."""
    if not isinstance(name, Mapping):
        return None
    formatted = (opt_str(name, "formatted_name") or "").strip()
    if formatted:
        return formatted
    keys = ("prefix", "first_name", "middle_name", "last_name", "suffix")
    parts = [part.strip() for key in keys for part in [opt_str(name, key)] if part and part.strip()]
    return " ".join(parts) or None


def _phone_number(phone: Mapping[str, Any]) -> str | None:
    """A shared contact's number as the customer's phone wrote it, else its WhatsApp id."""
    written = (opt_str(phone, "phone") or "").strip()
    if written:
        return written
    wa_id = (opt_str(phone, "wa_id") or "").strip()
    # WhatsApp ids are the international number without "+" (…/messages/contacts).
    return f"+{wa_id}" if wa_id.isascii() and wa_id.isdigit() else wa_id or None


def _parse_status(raw: Any, account: AccountId) -> StatusUpdate | None:
    if not isinstance(raw, Mapping):
        msg = "a status is not an object"
        raise BadRequest(msg)
    word = raw.get("status")
    status = _STATUSES.get(word) if isinstance(word, str) else None
    if status is None:
        return None  # e.g. "deleted", "warning": nothing the bridge tracks
    message_id = raw.get("id")
    if not isinstance(message_id, str) or not message_id:
        msg = "a status lacks the message id"
        raise BadRequest(msg)
    at = _timestamp(raw.get("timestamp"), "a status")
    code: str | None = None
    reason: str | None = None
    errors = raw.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        code, reason = _error_words(errors[0])
    return StatusUpdate(
        platform=WHATSAPP,
        account=account,
        external_id=ExternalMessageId(message_id),
        status=status,
        at=at,
        code=code,
        reason=reason,
    )


def _error_words(error: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The code (as text) and a reason for staff from a Cloud API error object."""
    raw_code = error.get("code")
    number = int_or_none(raw_code)
    if number is None and isinstance(raw_code, str) and _DIGITS.fullmatch(raw_code):
        number = int(raw_code)
    code = str(number) if number is not None else None
    words = ERROR_WORDS.get(number) if number is not None else None
    if words is None:
        details = error.get("error_data")
        words = (
            opt_str(error, "title")
            or opt_str(error, "message")
            or (opt_str(details, "details") if isinstance(details, Mapping) else None)
        )
    return code, words


def _timestamp(value: Any, what: str) -> datetime:
    """A Cloud API timestamp: epoch seconds as a string (integers are taken too)."""
    seconds: int | None = None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > _MAX_DIGITS:  # int() refuses thousands of digits with a ValueError
            msg = f"{what} has an impossible timestamp"
            raise BadRequest(msg)
        seconds = int(value)
    elif int_or_none(value) is not None:
        seconds = value
    if seconds is None:
        msg = f"{what} lacks a timestamp"
        raise BadRequest(msg)
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        msg = f"{what} has an impossible timestamp"
        raise BadRequest(msg) from None


def _degrees(value: Any) -> float | None:
    """A coordinate: a JSON number (a bool is not one)."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return value if is_number else None

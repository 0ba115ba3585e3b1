"""Parsing of Messenger webhook payloads into the bridge's inbound events."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.errors import BadRequest
from bridge.types import (
    MESSENGER,
    AccountId,
    Attachment,
    ChatId,
    CustomerProfile,
    DeliveryStatus,
    ExternalMessageId,
    InboundEdit,
    InboundEvent,
    InboundMessage,
    InboundReaction,
    MediaKind,
    WatermarkUpdate,
)
from connectors.wire import int_or_none, map_point, opt_str, reaction_emoji, storable

_ATTACHMENT_KINDS = {
    "image": MediaKind.IMAGE,
    "video": MediaKind.VIDEO,
    "audio": MediaKind.AUDIO,
    "file": MediaKind.DOCUMENT,
}

_LIKE_STICKER = 369239263222822
_SHARED_POSTS = {
    "post": "a Facebook post",
    "ig_post": "an Instagram post",
    "reel": "a Facebook reel",
    "ig_reel": "an Instagram reel",
}

_REFERRAL_SOURCES = {
    "SHORTLINK": "(opened the chat from the link m.me/…?ref={ref})",
    "ADS": "(opened the chat from an ad, ref {ref})",
    "CUSTOMER_CHAT_PLUGIN": "(opened the chat from the chat plugin on a website, ref {ref})",
}


def parse_webhook(payload: Any, pages: Collection[str]) -> list[InboundEvent]:
    """Turn one Messenger webhook body into bridge events for the pages in `pages`."""
    if not isinstance(payload, Mapping):
        msg = "a webhook body must be a JSON object"
        raise BadRequest(msg)
    if payload.get("object") != "page":
        msg = "the webhook object is not 'page'"
        raise BadRequest(msg)
    if not storable(payload):
        msg = "the webhook holds a lone surrogate, which is no text"
        raise BadRequest(msg)
    entries = payload.get("entry")
    if not isinstance(entries, list):
        msg = "the webhook body has no entry list"
        raise BadRequest(msg)
    events: list[InboundEvent] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            msg = "an entry is not an object"
            raise BadRequest(msg)
        page = graph_id(entry.get("id"))
        if page is None:
            msg = "an entry has no page id"
            raise BadRequest(msg)
        if page not in pages:
            continue  # a page this bridge does not serve (another app subscription)
        messaging = entry.get("messaging")
        if messaging is None:
            continue  # page feed `changes` or handover `standby`: not customer messages
        if not isinstance(messaging, list):
            msg = "entry.messaging is not a list"
            raise BadRequest(msg)
        for raw in messaging:
            event = _parse_event(raw, AccountId(page))
            if event is not None:
                events.append(event)
    return events


def _parse_event(raw: Any, page: AccountId) -> InboundEvent | None:
    if not isinstance(raw, Mapping):
        msg = "a messaging event is not an object"
        raise BadRequest(msg)
    message = raw.get("message")
    if isinstance(message, Mapping) and message.get("is_echo") is True:
        return None  # our own sends come back as echoes; they are in the thread already
    if "message" in raw:
        return _parse_message(raw, page)
    if "message_edit" in raw:
        return _parse_edit(raw, page)
    if "postback" in raw:
        return _parse_postback(raw, page)
    if "referral" in raw:
        return _parse_referral(raw, page)
    if "delivery" in raw:
        return _parse_watermark(raw, page, "delivery", DeliveryStatus.DELIVERED)
    if "read" in raw:
        return _parse_watermark(raw, page, "read", DeliveryStatus.READ)
    if "reaction" in raw:
        return _parse_reaction(raw, page)
    # optin, account_linking, policy_enforcement, handover...: not for the bridge.
    return None


def _parse_message(raw: Mapping[str, Any], page: AccountId) -> InboundMessage | None:
    message = _object(raw, "message")
    psid, sent_at = _sender(raw), _timestamp(raw)
    mid = graph_id(message.get("mid"))
    if mid is None:
        msg = "a message has no mid"
        raise BadRequest(msg)
    text = opt_str(message, "text") or ""
    attachments, notes = _attachments(message.get("attachments"))
    # quick_reply.payload is ignored: the text carries what the customer tapped.
    if notes:
        text = "\n".join([text, *notes]) if text else "\n".join(notes)
    if not text and not attachments:
        return None  # e.g. only an unknown attachment type
    return InboundMessage(
        platform=MESSENGER,
        account=page,
        chat_id=psid,
        external_id=ExternalMessageId(mid),
        profile=fallback_profile(psid),
        text=text,
        sent_at=sent_at,
        attachments=attachments,
        reply_to=_reply_to(message),
    )


def _reply_to(message: Mapping[str, Any]) -> ExternalMessageId | None:
    """The message a reply answers: `reply_to.mid` (a story reply has a `story` instead)."""
    replied = message.get("reply_to")
    mid = graph_id(replied.get("mid")) if isinstance(replied, Mapping) else None
    return ExternalMessageId(mid) if mid else None


def _parse_reaction(raw: Mapping[str, Any], page: AccountId) -> InboundReaction | None:
    """A message_reactions event: `react` sets the person's reaction on `mid` (its `emoji`),
    `unreact` takes it back (the event may then carry no emoji)."""
    reaction = _object(raw, "reaction")
    psid = _sender(raw)
    if str(psid) == str(page):
        return None  # the Page's own reaction
    mid = graph_id(reaction.get("mid"))
    action = reaction.get("action")
    if mid is None or action not in ("react", "unreact"):
        msg = "a reaction lacks mid, or its action is neither react nor unreact"
        raise BadRequest(msg)
    emoji = opt_str(reaction, "emoji") if action == "react" else None
    return InboundReaction(
        platform=MESSENGER,
        account=page,
        chat_id=psid,
        target=ExternalMessageId(mid),
        emoji=reaction_emoji([emoji]),
        at=_timestamp(raw),
    )


def _attachments(raw: Any) -> tuple[tuple[Attachment, ...], list[str]]:
    """Files to forward, and sentences for what can only be described (links, places, stickers)."""
    if raw is None:
        return (), []
    if not isinstance(raw, list):
        msg = "message.attachments is not a list"
        raise BadRequest(msg)
    files: list[Attachment] = []
    notes: list[str] = []
    stickers: set[str] = set()
    for item in raw:
        if not isinstance(item, Mapping):
            msg = "an attachment is not an object"
            raise BadRequest(msg)
        kind = item.get("type")
        payload = item.get("payload")
        body: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
        url = opt_str(body, "url")
        if kind == "sticker" or (kind == "image" and "sticker_id" in body):
            # Stickers came as images with a sticker_id; since 2026 they come as `sticker`
            # attachments, and during the change as both (…/webhook-events/messages).
            sticker = str(body.get("sticker_id") or url)
            if sticker not in stickers:
                stickers.add(sticker)
                notes.append(_sticker_note(body.get("sticker_id")))
                if url:
                    files.append(Attachment(kind=MediaKind.IMAGE, ref=url))
        elif isinstance(kind, str) and kind in _ATTACHMENT_KINDS:
            if url:
                files.append(Attachment(kind=_ATTACHMENT_KINDS[kind], ref=url))
        else:
            note = _described(kind, item, body)
            if note:
                notes.append(note)
    return tuple(files), notes


def _described(kind: Any, item: Mapping[str, Any], body: Mapping[str, Any]) -> str | None:
    """A sentence for an attachment that is no file; None for kinds staff need not see."""
    if kind == "fallback":
        # A shared link Messenger could not render: its title and URL, which older webhooks
        # put beside the payload and newer ones inside it.
        title = opt_str(item, "title") or opt_str(body, "title")
        url = opt_str(item, "url") or opt_str(item, "URL") or opt_str(body, "url")
        words = " ".join(part for part in (title, url) if part)
        return f"(shared a link: {words})" if words else None
    if kind == "location":
        coordinates = body.get("coordinates")
        where: Mapping[str, Any] = coordinates if isinstance(coordinates, Mapping) else {}
        lat, lon = _number(where.get("lat")), _number(where.get("long"))
        point = map_point(lat, lon) if lat is not None and lon is not None else None
        if point is None:
            return None
        # Pins dropped by hand are titled "Pinned Location"; a picked place by its name.
        title = (opt_str(body, "title") or opt_str(item, "title") or "").strip()
        return f"(shared a location: {title + ', ' if title else ''}{point})"
    if kind == "template":
        title = opt_str(item, "title")
        return f"(shared: {title})" if title else None
    if isinstance(kind, str) and kind in _SHARED_POSTS:
        # A post or reel shared into the chat carries its link (and a post its title).
        words = " ".join(part for part in (opt_str(body, "title"), opt_str(body, "url")) if part)
        return f"(shared {_SHARED_POSTS[kind]}: {words})" if words else None
    return None


def _sticker_note(sticker_id: Any) -> str:
    # The docs name one sticker id, 369239263222822, the Like sticker (a thumbs-up); other
    # ids are in no public list, so staff see the picture alone.
    if sticker_id == _LIKE_STICKER:
        return "(sent a sticker: 👍)"
    return "(sent a sticker)"


def _parse_edit(raw: Mapping[str, Any], page: AccountId) -> InboundEdit | None:
    edit = _object(raw, "message_edit")
    psid, edited_at = _sender(raw), _timestamp(raw)
    mid = graph_id(edit.get("mid"))
    if mid is None:
        msg = "a message_edit has no mid"
        raise BadRequest(msg)
    text = opt_str(edit, "text")
    if text is None:
        return None
    return InboundEdit(
        platform=MESSENGER,
        account=page,
        chat_id=psid,
        external_id=ExternalMessageId(mid),
        text=text,
        edited_at=edited_at,
    )


def _parse_postback(raw: Mapping[str, Any], page: AccountId) -> InboundMessage | None:
    postback = _object(raw, "postback")
    psid = _sender(raw)
    stamp = int_or_none(raw.get("timestamp"))
    sent_at = _timestamp(raw)
    # The button's title is what the customer saw and tapped; the payload is for machines.
    text = opt_str(postback, "title") or opt_str(postback, "payload")
    if not text:
        return None
    mid = graph_id(postback.get("mid")) or f"postback:{psid}:{stamp}"
    referral = postback.get("referral")
    ref = opt_str(referral, "ref") if isinstance(referral, Mapping) else None
    return InboundMessage(
        platform=MESSENGER,
        account=page,
        chat_id=psid,
        external_id=ExternalMessageId(mid),
        profile=fallback_profile(psid),
        text=text,
        sent_at=sent_at,
        start_payload=ref or None,
    )


def _parse_referral(raw: Mapping[str, Any], page: AccountId) -> InboundMessage | None:
    referral = _object(raw, "referral")
    ref = opt_str(referral, "ref")
    if not ref:
        return None  # an ad or plugin opening without a ref tells staff nothing
    psid = _sender(raw)
    stamp = int_or_none(raw.get("timestamp"))
    sent_at = _timestamp(raw)
    source = opt_str(referral, "source") or ""
    wording = _REFERRAL_SOURCES.get(source, "(opened the chat with the ref {ref})")
    return InboundMessage(
        platform=MESSENGER,
        account=page,
        chat_id=psid,
        external_id=ExternalMessageId(f"referral:{psid}:{stamp}"),
        profile=fallback_profile(psid),
        text=wording.format(ref=ref),
        sent_at=sent_at,
        start_payload=ref,
    )


def _parse_watermark(
    raw: Mapping[str, Any], page: AccountId, field: str, status: DeliveryStatus
) -> WatermarkUpdate:
    # Messenger reports delivery and reading as "everything before this time", not per mid.
    body = _object(raw, field)
    psid = _sender(raw)
    watermark = _ms_datetime(body.get("watermark"), f"{field}.watermark")
    return WatermarkUpdate(
        platform=MESSENGER, account=page, chat_id=psid, status=status, watermark=watermark
    )


def fallback_profile(psid: str) -> CustomerProfile:
    """The profile of a person whose name is not known (the webhook carries no names)."""
    return CustomerProfile(display_name=f"Messenger user {psid}")


def _object(raw: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = raw.get(field)
    if not isinstance(value, Mapping):
        msg = f"{field} is not an object"
        raise BadRequest(msg)
    return value


def _sender(raw: Mapping[str, Any]) -> ChatId:
    sender = raw.get("sender")
    psid = graph_id(sender.get("id")) if isinstance(sender, Mapping) else None
    if psid is None:
        msg = "a messaging event has no sender.id"
        raise BadRequest(msg)
    return ChatId(psid)


def _timestamp(raw: Mapping[str, Any]) -> datetime:
    return _ms_datetime(raw.get("timestamp"), "timestamp")


def _ms_datetime(value: Any, field: str) -> datetime:
    number = _number(value)
    if number is None:
        msg = f"{field} is not a number of milliseconds"
        raise BadRequest(msg)
    try:
        return datetime.fromtimestamp(number / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        msg = f"{field} is out of range"
        raise BadRequest(msg) from None


def graph_id(value: Any) -> str | None:
    """Graph ids are strings of digits (mids are strings too); tolerate integers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and abs(value) > 2**63:
        return None  # float() of a huge integer overflows; no Graph number is that large
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)

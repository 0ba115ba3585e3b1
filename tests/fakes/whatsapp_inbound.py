"""The webhook bodies the fake WhatsApp posts, built from the samples in `tests/corpus/whatsapp/`.

Each builder takes a sample of what Meta sends and fills in the fake's ids, numbers and texts,
so that the bodies keep the shape of the platform's own.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from tests.fakes.meta import corpus_sample

# The corpus sample each media message type is built from.
_MEDIA_SAMPLES: Mapping[str, str] = {
    "image": "image",
    "document": "document",
    "audio": "audio_voice",
    "video": "video",
    "sticker": "sticker",
}


class InboundPayloads:
    """The fake WhatsApp's inbound side: `value.messages[]`, `value.statuses[]`, envelopes."""

    sent: list[dict[str, Any]]
    media: dict[str, tuple[bytes, str, str | None]]
    phone_number_ids: tuple[str, ...]
    waba_id: str
    _root: str | None

    def sent_to(self, wa_id: str) -> list[dict[str, Any]]:
        """The message bodies accepted for one customer, oldest first."""
        return [body for body in self.sent if body.get("to") == wa_id]

    def contact(self, wa_id: str, name: str = "Customer") -> dict[str, Any]:
        """A `value.contacts[]` entry: the customer's profile name."""
        [contact] = _sample_value("text")["contacts"]
        contact["profile"]["name"] = name
        contact["wa_id"] = wa_id
        return dict(contact)

    def sample_message(self, sample: str, wa_id: str) -> dict[str, Any]:
        """The message of a corpus sample as this customer sends it now, with a new wamid.

        A reply to one of the business's messages (`context`) points at the last message sent
        to the customer; without one, the context is dropped.
        """
        [message] = _sample_value(sample)["messages"]
        message.update({"from": wa_id, "id": new_wamid(), "timestamp": str(int(time.time()))})
        if "context" in message:
            sent = self.sent_to(wa_id)
            if sent:
                number = sent[-1]["_phone_number_id"]
                message["context"] = {"from": f"1555{number}", "id": sent[-1]["_id"]}
            else:
                del message["context"]
        return dict(message)

    def text_message(self, wa_id: str, text: str) -> dict[str, Any]:
        """A `value.messages[]` text message with a new wamid."""
        message = self.sample_message("text", wa_id)
        message["text"]["body"] = text
        return message

    def media_message(
        self,
        wa_id: str,
        kind: str,
        data: bytes,
        mime: str,
        *,
        caption: str | None = None,
        filename: str | None = None,
        voice: bool = False,
    ) -> dict[str, Any]:
        """A `value.messages[]` media message; the bytes are stored under a new media id."""
        kind = str(kind)
        media_id = new_media_id()
        self.media[media_id] = (data, mime, filename)
        message = self.sample_message(_MEDIA_SAMPLES[kind], wa_id)
        media = message[kind]
        media.update(
            {
                "mime_type": mime,
                "sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
                "id": media_id,
            }
        )
        # Webhooks now carry the media URL too; the fake's serves the bytes with the token.
        if self._root is not None:
            media["url"] = f"{self._root}/_files/{media_id}"
        else:
            del media["url"]
        media.pop("caption", None)
        if caption is not None and kind in ("image", "video", "document"):
            media["caption"] = caption
        media.pop("filename", None)
        if filename is not None and kind == "document":
            media["filename"] = filename
        if kind == "audio":
            media["voice"] = voice
        if kind == "sticker":
            media["animated"] = False
        return message

    def location_message(
        self,
        wa_id: str,
        latitude: float,
        longitude: float,
        *,
        name: str | None = None,
        address: str | None = None,
        url: str | None = None,
    ) -> dict[str, Any]:
        """A `value.messages[]` location: a picked place has a name and address, a pin not."""
        message = self.sample_message("location", wa_id)
        place = {"address": address, "latitude": latitude, "longitude": longitude}
        place |= {"name": name, "url": url}
        message["location"] = {key: value for key, value in place.items() if value is not None}
        return message

    def reply_message(self, wa_id: str, sample: str, title: str, reply_id: str) -> dict[str, Any]:
        """A tap on a button or list row the business sent: `interactive_button_reply`,
        `interactive_list_reply` or (a template's quick-reply button) `button_template_quick_reply`.
        """
        message = self.sample_message(sample, wa_id)
        if message["type"] == "button":
            message["button"] = {"payload": reply_id, "text": title}
        else:
            interactive = message["interactive"]
            reply = interactive[interactive["type"]]
            reply.update({"id": reply_id, "title": title})
            reply.pop("description", None)
        return message

    def status_object(
        self,
        wamid: str,
        status: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        recipient: str | None = None,
    ) -> dict[str, Any]:
        """A `value.statuses[]` entry about a message the business sent."""
        record = next((body for body in self.sent if body["_id"] == wamid), None)
        if recipient is None:
            recipient = str(record["to"]) if record is not None else "0"
        sample = f"status_{status}" if status in ("sent", "delivered", "failed") else "status_read"
        [entry] = _sample_value(sample)["statuses"]
        entry.update(
            {"id": wamid, "status": status, "timestamp": str(int(time.time()))}
            | {"recipient_id": recipient}
        )
        # Replies inside the customer's window are service messages, free of charge.
        if "conversation" in entry:
            entry["conversation"]["id"] = secrets.token_hex(16)
            entry["conversation"]["origin"]["type"] = "service"
        if "pricing" in entry:
            entry["pricing"].update({"type": "free_customer_service", "category": "service"})
        entry.pop("errors", None)
        if errors is not None:
            entry["errors"] = errors
        return dict(entry)

    def build_payload(
        self,
        *,
        messages: Iterable[Mapping[str, Any]] = (),
        contacts: Iterable[Mapping[str, Any]] = (),
        statuses: Iterable[Mapping[str, Any]] = (),
        phone_number_id: str | None = None,
    ) -> dict[str, Any]:
        """The webhook envelope around one `messages` change for a number."""
        number = phone_number_id or self.phone_number_ids[0]
        payload = corpus_sample("whatsapp", "text")
        [entry] = payload["entry"]
        [change] = entry["changes"]
        entry["id"] = self.waba_id
        value = change["value"]
        value["metadata"] = {"display_phone_number": f"1555{number}", "phone_number_id": number}
        del value["contacts"], value["messages"]
        if contacts:
            value["contacts"] = [dict(c) for c in contacts]
        if messages:
            value["messages"] = [dict(m) for m in messages]
        if statuses:
            value["statuses"] = [dict(s) for s in statuses]
        return payload


def _sample_value(name: str) -> dict[str, Any]:
    """The `value` of the one change of a WhatsApp corpus sample, to fill in."""
    [entry] = corpus_sample("whatsapp", name)["entry"]
    [change] = entry["changes"]
    value: dict[str, Any] = change["value"]
    return value


def new_wamid() -> str:
    """A new message id: real wamids are base64 of a protobuf (letters, digits, +, / and =)."""
    return "wamid.HBgL" + base64.b64encode(secrets.token_bytes(30)).decode()


def new_media_id() -> str:
    """A new media id: digits, as Meta's are."""
    return str(secrets.randbelow(9 * 10**15) + 10**15)

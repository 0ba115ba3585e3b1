"""Conversations and messages: read them, and send a contact a message the way an agent's reply
goes (outbox, mirrored into the contact's threads, platform windows, blacklist, opt-out)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from bridge.api.errors import ApiError, not_found
from bridge.api.framework import ORIGIN, Call, Resource
from bridge.api.idempotency import Replay
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import Body, Record
from bridge.pipeline import Queued
from bridge.services import contacts, conversations
from bridge.services.templates import prepare_template, template_language, template_name
from bridge.types import WHATSAPP, ContactId, Role, TemplateCall
from storage import ContactRecord, Tx
from storage.history import ConversationLine, MessageLine

log = logging.getLogger(__name__)

resource = Resource(
    "Conversations",
    "A contact's conversations (one thread each) and their messages; sending to a contact.",
)

TEXT_MAX = 4096  # the most any of the messengers takes in one text message
PARAMS_MAX = 20


class Conversation(Record):
    """One support case with a contact (a thread per staff surface)."""

    id: int
    contact_id: int
    status: Literal["open", "closed"]
    opened_at: datetime
    closed_at: datetime | None
    previous_id: int | None = Field(description="The contact's conversation before this one.")
    last_inbound_at: datetime | None = Field(description="The customer's latest message.")


class ConversationPage(Page):
    """A page of conversations, oldest first."""

    items: list[Conversation]


class Attachment(Record):
    """A file of a message."""

    kind: str
    filename: str | None
    mime_type: str | None
    size: int | None


class Message(Record):
    """A message: from the customer (in), to the customer (out) or an internal note."""

    id: int
    conversation_id: int
    contact_id: int
    direction: Literal["in", "out", "note"]
    platform: str
    account: str
    author: str | None = Field(description="The customer, a staff member or an API key.")
    text: str
    attachments: list[Attachment]
    sent_at: datetime
    edited_at: datetime | None
    deleted: bool
    status: str | None = Field(
        description="Outgoing messages: queued, sent, delivered, read or failed."
    )
    error_code: str | None
    error_reason: str | None
    external_id: str | None = Field(description="The platform's id of the message, once known.")


class MessagePage(Page):
    """A page of messages, oldest first."""

    items: list[Message]


class TemplateSend(Body):
    """A WhatsApp message template (allowed outside the 24-hour window)."""

    name: str = Field(min_length=1, max_length=512, examples=["order_update"])
    language: str | None = Field(
        None,
        min_length=2,
        max_length=16,
        description="en_US, de, …; omitted: the only language the template has.",
    )
    params: list[str] = Field(default_factory=list, max_length=PARAMS_MAX)


class SendMessage(Body):
    """A text, or a template, for the contact: one of the two."""

    text: str | None = Field(None, min_length=1, max_length=TEXT_MAX)
    template: TemplateSend | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SendMessage:
        if (self.text is None) == (self.template is None):
            msg = "give either text or template"
            raise ValueError(msg)
        if self.text is not None and not self.text.strip():
            msg = "the text is empty"
            raise ValueError(msg)
        return self


def conversation(line: ConversationLine) -> Conversation:
    """The API form of a conversation."""
    return Conversation(
        id=line.id,
        contact_id=line.contact_id,
        status="open" if line.status == "open" else "closed",
        opened_at=line.opened_at,
        closed_at=line.closed_at,
        previous_id=line.previous_id,
        last_inbound_at=line.last_inbound_at,
    )


def message(line: MessageLine, contact_id: int) -> Message:
    """The API form of a message."""
    direction: Literal["in", "out", "note"] = (
        "in" if line.direction == "in" else "note" if line.direction == "note" else "out"
    )
    return Message(
        id=line.id,
        conversation_id=line.conversation_id,
        contact_id=contact_id,
        direction=direction,
        platform=line.platform,
        account=line.account,
        author=line.author,
        text=line.text,
        attachments=[
            Attachment(
                kind=str(a.get("kind", "document")),
                filename=a.get("filename"),
                mime_type=a.get("mime_type"),
                size=a.get("size") if isinstance(a.get("size"), int) else None,
            )
            for a in line.attachments
        ],
        sent_at=line.sent_at,
        edited_at=line.edited_at,
        deleted=line.deleted,
        status=line.status,
        error_code=line.error_code,
        error_reason=line.error_reason,
        external_id=line.external_id,
    )


async def _contact(call: Call, contact_id: int) -> ContactRecord:
    found = await contacts.contact(call.services, ContactId(contact_id))
    if found is None:
        raise not_found(f"there is no contact {contact_id}")
    return found


async def _conversation(call: Call) -> ConversationLine:
    conversation_id = call.id("conversation_id")
    found = await conversations.conversation(call.services, conversation_id)
    if found is None:
        raise not_found(f"there is no conversation {conversation_id}")
    return found


@resource.get(
    "/contacts/{contact_id}/conversations",
    summary="List a contact's conversations",
    role=Role.AGENT,
    query=PageQuery,
    response=ConversationPage,
)
async def list_conversations(call: Call) -> ConversationPage:
    """Oldest first; the open one (if any) is the last."""
    contact = await _contact(call, call.id("contact_id"))
    after, limit = call.after(), call.limit
    rows = await conversations.conversations_of(call.services, contact.id, after, limit + 1)
    return call.page(ConversationPage, rows, key=lambda c: int(c.id), item=conversation)


@resource.get(
    "/conversations/{conversation_id}",
    summary="Show a conversation",
    role=Role.AGENT,
    response=Conversation,
)
async def show_conversation(call: Call) -> Conversation:
    """Its state and times."""
    return conversation(await _conversation(call))


@resource.get(
    "/conversations/{conversation_id}/messages",
    summary="List a conversation's messages",
    role=Role.AGENT,
    query=PageQuery,
    response=MessagePage,
)
async def list_messages(call: Call) -> MessagePage:
    """Oldest first, notes and deleted messages included (they say so)."""
    found = await _conversation(call)
    after, limit = call.after(), call.limit
    rows = await conversations.messages_of(call.services, found.id, after, limit + 1)
    return call.page(
        MessagePage, rows, key=lambda m: int(m.id), item=lambda m: message(m, found.contact_id)
    )


@resource.get(
    "/messages/{message_id}",
    summary="Show a message (and its delivery status)",
    role=Role.AGENT,
    response=Message,
)
async def show_message(call: Call) -> Message:
    """Poll this after sending to follow the status: queued → sent → delivered → read."""
    message_id = call.id("message_id")
    found = await conversations.message(call.services, message_id)
    if found is None:
        raise not_found(f"there is no message {message_id}")
    return message(found[0], found[1].contact_id)


@resource.post(
    "/contacts/{contact_id}/messages",
    summary="Send a contact a text or a WhatsApp template",
    role=Role.AGENT,
    body=SendMessage,
    response=Message,
    status=202,
    idempotent=True,
)
async def send_message(call: Call) -> Message | Replay:
    """Goes the way an agent's reply goes: queued for the customer's messenger and shown in
    the contact's threads under the key's name (a new conversation and thread when none is
    open). Refused with 422 when the contact is blacklisted for outgoing messages
    (`blacklisted`), has opted out (`opted_out`), or the platform's window is closed
    (`window_closed`: on WhatsApp, 24 hours after the customer's last message only a template
    may be sent). The answer is the queued message; follow its status with
    `GET /messages/{message_id}`."""
    contact = await _contact(call, call.id("contact_id"))
    body = call.body(SendMessage)
    template: TemplateCall | None = None
    text = body.text or ""
    if body.template is not None:
        with call.field("template.name"):
            name = template_name(body.template.name)
        language = None
        if body.template.language is not None:
            with call.field("template.language"):
                language = template_language(body.template.language)
        with call.field("template.params"):
            template, text = await prepare_template(
                call.services, name, language, body.template.params, contact
            )
    services, author = call.services, call.key_name

    def write(tx: Tx) -> Message | Queued:
        sent = conversations.send_in(
            services, tx, contact.id, origin=ORIGIN, author=author, text=text, template=template
        )
        if sent is None:
            raise not_found(f"there is no contact {contact.id}")
        if sent.line is None:
            return sent.queued  # nothing was written: answered below, and not kept
        return message(sent.line, contact.id)

    done = await call.write_once(write)
    if isinstance(done, Queued):
        raise await _refusal(call, contact, done)
    return done


async def _refusal(call: Call, contact: ContactRecord, queued: Queued) -> ApiError:
    """The 422 for a send the bridge refused; a closed WhatsApp window names the templates."""
    text = f"Not sent: {queued.refusal}"
    if queued.code == "window_closed" and contact.platform == WHATSAPP:
        connector = call.services.connector(contact.platform, contact.account)
        names: list[str] = []
        if connector is not None:
            try:
                names = [
                    f"{t.name}:{t.language}"
                    for t in await connector.templates()
                    if t.status.upper() == "APPROVED"
                ]
            except Exception as exc:
                log.warning("templates of WhatsApp number %s: %s", contact.account, exc)
        text += (
            ' Send an approved template instead: {"template": {"name": "…", "language": "…",'
            ' "params": ["…"]}}.'
        )
        if names:
            text += " Approved templates: " + ", ".join(names[:15]) + "."
    return ApiError(422, queued.code or "refused", text)

"""Matrix events as the bridge writes them: HTML bodies of replies and contact cards, thread
relations, edits, and the transaction ids that make a retried send the same event. Pure.
"""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

from bridge.staffio import MENTION, Reply
from bridge.types import ContactCard, ConversationStatus, MirrorPost
from connectors.markup import matrix_html
from connectors.markup import plain as markup_plain
from connectors.staff import (
    OPTED_OUT,
    card_address,
    card_blocked,
    card_handle,
    card_status,
    carries,
)

# The outbox row an event was sent for, in the event's content: how a send that may have gone
# out before a crash is found again.
MARKER = "org.supportbridge.outbox"
HTML = "org.matrix.custom.html"

_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*([^*\n]+)\*")


def inline_html(text: str) -> str:
    """Escape text for HTML, rendering `code` spans and *bold* the way replies write them."""
    escaped = html.escape(MENTION.sub(r"\1", text), quote=False)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return _BOLD.sub(r"<b>\1</b>", escaped)


def plain_text(text: str) -> str:
    """A reply's text without its markup, for the plain body."""
    return MENTION.sub(r"\1", text).replace("`", "").replace("*", "")


def reply_html(reply: Reply) -> tuple[str, str]:
    """A command's reply as (plain body, HTML body)."""
    parts_html: list[str] = []
    if reply.title:
        mark = "" if reply.ok else "⚠️ "
        parts_html.append(f"<b>{mark}{inline_html(reply.title)}</b>")
    parts_html.extend(inline_html(line) for line in reply.lines)
    parts_html.extend(
        f"<b>{html.escape(label)}</b>: {inline_html(value)}" for label, value in reply.fields
    )
    plain = reply.text if reply.ok else f"⚠️ {reply.text}"
    return plain_text(plain) or "Done.", "<br>".join(parts_html) or "Done."


def card_text(card: ContactCard) -> tuple[str, str]:
    """The thread root: a contact card as (plain body, HTML body)."""
    status, handle, address = card_status(card), card_handle(card), card_address(card)
    facts = [
        ("Platform", card.platform),
        ("Username", handle),
        ("First contact", f"{card.first_contact:%Y-%m-%d %H:%M} UTC"),
        ("Messages", str(card.message_count)),
        ("Status", status),
        ("Opt-in", card.opt_in_source or "—"),
    ]
    if card.opted_out:
        facts.append(("Subscribed", OPTED_OUT))
    if card.assigned_to:
        facts.append(("Assigned to", card.assigned_to))
    if card.blocked:
        facts.append(("Blacklisted", card_blocked(card)))
    context = [f"conversation #{card.conversation_id} · {card.platform} id {address}"]
    if card.account:
        context.append(f"via {card.platform} account {card.account}")
    actions = "!reopen" if card.status is ConversationStatus.CLOSED else "!close"
    actions += " · !assign · " + ("!unblock" if card.blocked else "!block")
    plain = "\n".join(
        [
            f"{card.display_name} ({card.platform}, {handle}) · {status}",
            *(f"{label}: {value}" for label, value in facts),
            " · ".join(context),
            f"Thread actions: {actions}",
        ]
    )
    rows = "<br>".join(f"<b>{html.escape(k)}</b>: {html.escape(v)}" for k, v in facts)
    extra = " · ".join(html.escape(c) for c in context)
    if card.previous_thread_url:
        extra += f' · <a href="{html.escape(card.previous_thread_url)}">previous conversation</a>'
        plain += f"\nprevious conversation: {card.previous_thread_url}"
    formatted = (
        f"<h4>{html.escape(card.display_name or '?')}</h4>{rows}<br><i>{extra}</i>"
        f"<br><i>Thread actions: {html.escape(actions)}</i>"
    )
    return plain, formatted


def in_thread(root: str) -> dict[str, Any]:
    """The relation of a thread reply, with the fallback for clients without threads."""
    return {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }


def customer_text(text: str) -> tuple[str, str | None]:
    """A customer's text (in the staff dialect) as (plain body, HTML body); no HTML when it
    shows no formatting. Everything else the customer typed stays escaped: no tags, links or
    pills of theirs."""
    formatted = matrix_html(text)
    if formatted == html.escape(text, quote=False).replace("\n", "<br>"):
        return text, None
    return markup_plain(text), formatted


def post_content(root: str, post: MirrorPost, *, as_customer: bool) -> dict[str, Any]:
    """The text event of a mirror post in the thread of `root`."""
    content = post_message(post, as_customer=as_customer)
    content["m.relates_to"] = in_thread(root)
    if post.reply_to:
        content["m.relates_to"] = reply_in_thread(root, post.reply_to.rpartition("/")[2])
    if post.marker:
        content[MARKER] = post.marker
    return content


def post_message(post: MirrorPost, *, as_customer: bool) -> dict[str, Any]:
    """A mirror post's text content without relations (an edit's new content has none): the
    customer's own words when sent as their user, else under their name in bold; a reply
    below a quote of what it answers."""
    content: dict[str, Any]
    text, formatted_text = customer_text(post.text)
    if as_customer and not post.quote:
        content = {"msgtype": "m.text", "m.mentions": {}, "body": text}
        if formatted_text is not None:
            content = html_content("m.text", text, formatted_text)
    else:
        who = "" if as_customer else f"{post.author}: "
        shown = "" if as_customer else f"<b>{html.escape(post.author)}</b>: "
        if formatted_text is None:
            formatted_text = html.escape(post.text).replace("\n", "<br>")
        body, formatted = who + text, shown + formatted_text
        if post.quote:
            # What a reply answers, as a quote above it (plain: "> " lines, as the spec's
            # fallbacks write quotes).
            quoted = "\n".join(f"> {line}" for line in post.quote.splitlines())
            body = f"{quoted}\n\n{body}"
            block = html.escape(post.quote).replace("\n", "<br>")
            formatted = f"<blockquote>{block}</blockquote>{formatted}"
        content = html_content("m.text", body, formatted)
    return content


def reply_in_thread(root: str, event: str) -> dict[str, Any]:
    """The relation of a real reply to `event` inside the thread of `root`: the thread
    relation with `m.in_reply_to` naming the event answered and `is_falling_back` false
    (Client-Server API, "Threading": replies within threads). The quote in the body stays,
    for clients that show no replies."""
    return {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": event},
    }


def txn_id(*parts: object) -> str:
    """A transaction id from what identifies the send (an outbox row), or a fresh one."""
    if not parts or parts[-1] is None:
        return uuid.uuid4().hex
    return "sb-" + "-".join(re.sub(r"[^A-Za-z0-9._~]", "_", str(p)) for p in parts)


def html_content(msgtype: str, body: str, formatted: str) -> dict[str, Any]:
    """A message with an HTML body beside its plain one, mentioning nobody."""
    # Every event the bridge sends carries an `m.mentions` (Matrix 1.7, intentional mentions),
    # empty unless the bridge itself names someone: clients then ping nobody for an `@room` or
    # a name inside customer data.
    return {
        "msgtype": msgtype,
        "m.mentions": {},
        "body": body,
        "format": HTML,
        "formatted_body": formatted,
    }


def replacement(new: dict[str, Any], event: str) -> dict[str, Any]:
    """An edit (`m.replace`) of `event` whose new content is `new`."""
    return {
        **new,
        "body": f"* {new['body']}",
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": event},
    }


def carries_marker(event: dict[str, Any], marker: str) -> bool:
    """Whether an event's content names this outbox row."""
    content = event.get("content") or {}
    return carries(content.get(MARKER), marker)

"""Block Kit for command replies and for a conversation's contact card and its buttons.

Pure functions: they take the bridge's types and return what chat.postMessage, a slash
command's answer or chat.update take (`text` fallback plus `blocks`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from bridge.staffio import MENTION, Form, FormField, Reply, form_line
from bridge.types import ContactCard, ConversationStatus
from connectors.staff import OPTED_OUT, card_address, card_blocked, card_handle, card_status

# Block Kit limits: 3000 characters in a section's text, 2000 in a field, 10 fields in a
# section, 50 blocks in a message, 150 characters in a header.
SECTION_CHARS = 3000
FIELD_CHARS = 2000
FIELDS_PER_SECTION = 10
MAX_BLOCKS = 50
HEADER_CHARS = 150
# Slack's message `text` is cut at 40,000 characters; a fallback far shorter is plenty.
FALLBACK_CHARS = 3500

ACTION_PREFIX = "bridge_thread:"


def mrkdwn(text: str) -> str:
    """Escape text for mrkdwn (Slack's "Escaping text": &, < and >), so that data cannot
    become a mention or a link; only the mentions the bridge composed (`staff_mention`) stay live.
    """
    return MENTION.sub(lambda m: f"<@{m.group(1)}>", escape(text))


def _chunks(lines: list[str], limit: int) -> list[str]:
    """Join lines into texts of at most `limit` characters (a longer line is cut)."""
    out: list[str] = []
    current = ""
    for line in lines:
        line = line if len(line) <= limit else line[: limit - 1] + "…"
        if current and len(current) + 1 + len(line) > limit:
            out.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


def reply_blocks(reply: Reply) -> tuple[str, list[dict[str, Any]]]:
    """A command's reply as (fallback text, blocks)."""
    blocks: list[dict[str, Any]] = []
    if reply.title:
        mark = "" if reply.ok else ":warning: "
        blocks.append(_section(f"{mark}*{mrkdwn(reply.title)}*"))
    for chunk in _chunks([mrkdwn(line) for line in reply.lines], SECTION_CHARS):
        blocks.append(_section(chunk))
    fields = [
        {"type": "mrkdwn", "text": f"*{mrkdwn(label)}*\n{mrkdwn(value)}"[:FIELD_CHARS]}
        for label, value in reply.fields
    ]
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": fields[start : start + FIELDS_PER_SECTION]})
    if len(blocks) > MAX_BLOCKS:
        dropped = len(blocks) - MAX_BLOCKS + 1
        blocks = blocks[: MAX_BLOCKS - 1]
        blocks.append(_context(f"…and {dropped} more parts, cut to fit one Slack message"))
    text = reply.text or ("Done." if reply.ok else "That did not work.")
    if len(text) > FALLBACK_CHARS:
        text = text[: FALLBACK_CHARS - 1] + "…"
    return mrkdwn(text), blocks


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _button(
    label: str, command: str, *, style: str | None = None, confirm: dict[str, Any] | None = None
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        # The action id names the command, so each button of a card is unique in its block.
        "action_id": ACTION_PREFIX + command.replace(" ", "_"),
        "value": command,
    }
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = confirm
    return button


def card_actions(card: ContactCard) -> dict[str, Any]:
    """The buttons under a contact card: close or reopen, assign to me, block or unblock."""
    if card.status is ConversationStatus.OPEN:
        buttons = [_button("Close", "close", style="primary")]
    else:
        buttons = [_button("Reopen", "reopen")]
    buttons.append(_button("Assign to me", "assign me"))
    if card.blocked:
        buttons.append(_button("Unblock", "unblock"))
    else:
        buttons.append(
            _button(
                "Block",
                "block",
                style="danger",
                confirm={
                    "title": {"type": "plain_text", "text": "Block this customer?"},
                    "text": {
                        "type": "mrkdwn",
                        "text": (
                            "Their messages are kept but no longer shown here, and nothing is"
                            " sent to them until someone unblocks them."
                        ),
                    },
                    "confirm": {"type": "plain_text", "text": "Block"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                    "style": "danger",
                },
            )
        )
    return {"type": "actions", "block_id": "bridge_card", "elements": buttons}


# -- forms as modals -------------------------------------------------------------------------

FORM_CALLBACK = "bridge_form"


def _plain(text: str, limit: int = 150) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit]}


def _option(value: str, label: str) -> dict[str, Any]:
    return {"text": _plain(label, 75), "value": value[:150]}


def form_view(form: Form, channel: str | None) -> dict[str, Any]:
    """A form as a modal view; what the submission needs travels in private_metadata."""
    blocks: list[dict[str, Any]] = []
    for spec in form.fields:
        element: dict[str, Any] = {"action_id": "value"}
        initial = spec.initial
        if spec.kind in ("text", "lines"):
            element["type"] = "plain_text_input"
            element["multiline"] = spec.kind == "lines"
            if isinstance(initial, str) and initial:
                element["initial_value"] = initial[:3000]
        elif spec.kind == "select":
            element["type"] = "static_select"
            element["options"] = [_option(v, label) for v, label in spec.choices]
            chosen = [c for c in spec.choices if c[0] == initial]
            if chosen:
                element["initial_option"] = _option(*chosen[0])
        else:
            # Checkboxes show every choice at once (Block Kit allows at most 10 of them).
            checks = spec.kind == "checks" and len(spec.choices) <= 10
            element["type"] = "checkboxes" if checks else "multi_static_select"
            element["options"] = [_option(v, label) for v, label in spec.choices]
            picked = [c for c in spec.choices if isinstance(initial, tuple) and c[0] in initial]
            if picked:
                element["initial_options"] = [_option(*c) for c in picked]
        block: dict[str, Any] = {
            "type": "input",
            "block_id": spec.key,
            "label": _plain(spec.label, 2000),
            "element": element,
            "optional": spec.optional,
        }
        if spec.hint:
            block["hint"] = _plain(spec.hint, 2000)
        blocks.append(block)
    meta = {
        "command": form.command,
        "channel": channel,
        "fields": [[f.key, f.kind, f.option, f.raw, f.blank, f.joined] for f in form.fields],
    }
    return {
        "type": "modal",
        "callback_id": FORM_CALLBACK,
        "title": _plain(form.title, 24),
        "submit": _plain(form.submit, 24),
        "close": _plain("Cancel", 24),
        "private_metadata": json.dumps(meta),
        "blocks": blocks,
    }


class NotOurForm(ValueError):
    """A view submission that is not a form the bridge opened (or was tampered with)."""


def submitted(view: dict[str, Any]) -> tuple[str, str | None, list[str]]:
    """A submitted form view: (command line, channel, block ids); NotOurForm when the view is
    not in the shape the bridge wrote."""
    try:
        return _submitted(view)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise NotOurForm(f"not a form of the bridge: {exc}") from exc


def _submitted(view: dict[str, Any]) -> tuple[str, str | None, list[str]]:
    meta = json.loads(view.get("private_metadata") or "{}")
    if not isinstance(meta, dict):
        raise NotOurForm("private_metadata is not an object")
    channel = meta.get("channel")
    fields = [
        FormField(
            key=spec[0],
            label=spec[0],
            kind=spec[1],
            option=spec[2],
            raw=spec[3],
            blank=spec[4],
            joined=bool(spec[5]) if len(spec) > 5 else False,
        )
        for spec in meta.get("fields") or []
    ]
    values: dict[str, object] = {}
    for block_id, actions in ((view.get("state") or {}).get("values") or {}).items():
        action = (actions or {}).get("value") or {}
        kind = action.get("type")
        if kind == "plain_text_input":
            values[block_id] = action.get("value") or ""
        elif kind == "static_select":
            values[block_id] = (action.get("selected_option") or {}).get("value", "")
        elif kind in ("multi_static_select", "checkboxes"):
            values[block_id] = [o.get("value", "") for o in action.get("selected_options") or []]
    line = form_line(str(meta.get("command", "")), fields, values)
    return line, channel if isinstance(channel, str) else None, [f.key for f in fields]


# -- text and the contact card --------------------------------------------------------------

# A Slack user id (W… on Enterprise Grid): the only assignee the contact card mentions.
SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


_LINE_QUOTE = re.compile(r"^&gt;", re.M)


def escape(text: str) -> str:
    """Escape a customer's text for mrkdwn, so `<!channel>` and the like stay plain text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_quoting(text: str) -> str:
    """Escape a customer's text for mrkdwn, keeping a `>` that opens a line: Slack quotes such
    a line only when the `>` comes as itself (an escaped `&gt;` shows as the character), and a
    lone `>` opens no link or mention (those start with `<`)."""
    return _LINE_QUOTE.sub(">", escape(text))


def form_block(problem: str, blocks: Sequence[str]) -> str:
    """The input of a form a problem is about, to show it there."""
    text = problem.lower()
    for words, block in (
        (("regular expression", "pattern", "keyword"), "pattern"),
        (("action", "--do", "forward", "answer", "mail", "channel", "sms", "file"), "actions"),
        (("messenger",), "on"),
        (("window", "time"), "hours"),
        (("days",), "days"),
        (("limit", "every"), "limit"),
        (("priority", "number"), "priority"),
        (("name",), "name"),
    ):
        if block in blocks and any(w in text for w in words):
            return block
    return blocks[0] if blocks else "name"


def card_blocks(card: ContactCard) -> tuple[str, list[dict[str, Any]]]:
    """The thread root: a contact card as Block Kit, with its plain-text fallback."""
    status, handle = card_status(card), card_handle(card)
    fields = [
        f"*Platform*\n{card.platform}",
        f"*Username*\n{escape(handle)}",
        f"*First contact*\n{card.first_contact:%Y-%m-%d %H:%M} UTC",
        f"*Messages*\n{card.message_count}",
        f"*Status*\n{status}",
        f"*Opt-in*\n{escape(card.opt_in_source or '—')}",
    ]
    if card.opted_out:
        fields.append(f"*Subscribed*\n{OPTED_OUT}")
    if card.assigned_to:
        who = card.assigned_to
        # Only a Slack user id becomes a mention; anything else (a Matrix id) is shown as text.
        shown = f"<@{who}>" if SLACK_USER.fullmatch(who) else escape(who)
        fields.append(f"*Assigned to*\n{shown}")
    if card.blocked:
        fields.append(f"*Blacklisted*\n{card_blocked(card)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": card.display_name[:150] or "?"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    address = escape(card_address(card))
    context = [f"conversation #{card.conversation_id} · {card.platform} id `{address}`"]
    if card.account:
        context.append(f"via {card.platform} account `{escape(card.account)}`")
    if card.previous_thread_url:
        context.append(f"<{card.previous_thread_url}|previous conversation>")
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]}
    )
    blocks.append(card_actions(card))
    # The fallback `text` is mrkdwn too (notifications show it): escaped like the blocks.
    fallback = escape(f"{card.display_name} ({card.platform}, {handle}) · {status}")
    return fallback, blocks

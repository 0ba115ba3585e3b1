"""Outbox rows as the producers wrote them before the payloads were typed, one or more per job
kind and producer variant, each with how the typed builder makes the row again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storage import NewJob

# The clock of the recording, for the keys that carry the time they were made at.
RECORDED_AT = 1796663194.2596924


@dataclass(frozen=True)
class Recorded:
    """One outbox row as a producer wrote it, and how the typed builder makes it again."""

    name: str
    row: dict[str, Any]  # kind, idem_key, lane, rate_keys, payload, next_at, bulk
    build: Callable[[Any, tuple[str, ...]], NewJob]


def row(
    kind: str,
    idem_key: str,
    lane: str,
    rate_keys: list[str],
    payload: dict[str, Any],
    next_at: float = 0.0,
    bulk: bool = False,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "idem_key": idem_key,
        "lane": lane,
        "rate_keys": rate_keys,
        "payload": payload,
        "next_at": next_at,
        "bulk": bulk,
    }


SLACK_POST = ["slack:chan:C0001"]
TELEGRAM_CHAT = ["telegram:123456", "telegram:123456:chat:111"]
ANNA_CHAT = ["telegram:123456", "telegram:123456:chat:8180001"]

RECORDED = [
    Recorded(
        "staff.open",
        row(
            "staff.open",
            "open:1:slack",
            "c1:slack",
            SLACK_POST,
            {"conv": 1, "surface": "slack", "channel": None},
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "staff.open in a routed channel",
        row(
            "staff.open",
            "open:12:slack",
            "c12:slack",
            ["slack:chan:C0SALES"],
            {"conv": 12, "surface": "slack", "channel": "C0SALES"},
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "staff.post of a customer's message with a file",
        row(
            "staff.post",
            "post:880000302:slack",
            "c880000201:slack",
            SLACK_POST,
            {
                "conv": 880000201,
                "surface": "slack",
                "msg": 880000302,
                "author": "Ann",
                "text": "Label of QX-5521",
                "files": [
                    {
                        "kind": "image",
                        "ref": "AgAC1g7yvzf0b4IgAxGX0avs8xD4IXS69dsV",
                        "mime_type": "image/jpeg",
                        "size": 85,
                    }
                ],
                "platform": "telegram",
                "account": "123456",
                "chat": "7310042",
            },
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "staff.post of a customer's text",
        row(
            "staff.post",
            "post:1:slack",
            "c1:slack",
            SLACK_POST,
            {
                "conv": 1,
                "surface": "slack",
                "msg": 1,
                "author": "Ann",
                "text": "Where is my parcel?",
                "files": [],
                "platform": "telegram",
                "account": "123456",
                "chat": "111",
            },
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "staff.post echoing a reply written on the other surface",
        row(
            "staff.post",
            "echo:3:matrix",
            "c1:matrix",
            ["matrix:send"],
            {
                "conv": 1,
                "surface": "matrix",
                "msg": 3,
                "author": "UAGENT (reply in slack)",
                "text": "An agent's answer",
                "files": [],
                "origin": "slack",
            },
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "staff.card once per window",
        row(
            "staff.card",
            "card:1:slack:8983315912",
            "card1:slack",
            ["slack:update"],
            {"conv": 1, "surface": "slack"},
            next_at=1796663182.6000001,
        ),
        lambda j, keys: j.new_job(keys, window=8983315912, every=0.2),
    ),
    Recorded(
        "staff.card right away",
        row(
            "staff.card",
            f"card:4:slack:{RECORDED_AT}",
            "card4:slack",
            ["slack:update"],
            {"conv": 4, "surface": "slack"},
        ),
        lambda j, keys: j.new_job(keys, window=None, every=0.2),
    ),
    Recorded(
        "staff.edit",
        row(
            "staff.edit",
            "edit:1:slack:1796663193.0",
            "c1:slack",
            ["slack:update"],
            {"conv": 1, "surface": "slack", "msg": 1},
        ),
        lambda j, keys: j.new_job(keys, edited_at=datetime.fromtimestamp(1796663193.0, UTC)),
    ),
    Recorded(
        "staff.mark of a sent reply",
        row(
            "staff.mark",
            "mark:2:slack:sent",
            "c1:slack",
            ["slack:reactions"],
            {"surface": "slack", "ref": "C0001/1796663194.053700", "status": "sent"},
        ),
        lambda j, keys: j.new_job(1, 2, keys),
    ),
    Recorded(
        "staff.mark of a refused action",
        row(
            "staff.mark",
            "mark:refused:slack:C0001/1796663357.917300",
            "c1:slack",
            ["slack:reactions"],
            {"surface": "slack", "ref": "C0001/1796663357.917300", "status": "failed"},
        ),
        lambda j, keys: j.refused_job(1, keys),
    ),
    Recorded(
        "staff.notice",
        row(
            "staff.notice",
            "notice:rule:rule1:telegram:123456:8180001:1:slack",
            "c1:slack",
            SLACK_POST,
            {
                "conv": 1,
                "surface": "slack",
                "text": "Rule 'hours': answered automatically: Hi Anna Schmidt, we open at 8",
            },
        ),
        lambda j, keys: j.new_job("rule:rule1:telegram:123456:8180001:1", keys),
    ),
    Recorded(
        "staff.tell",
        row(
            "staff.tell",
            "tell:edit:slack:C0001/1796663362.081200",
            "c1:slack",
            SLACK_POST,
            {
                "surface": "slack",
                "thread": "C0001/1796663362.036500",
                "user": "U0ANNA1",
                "ref": "C0001/1796663362.081200",
                "text": "Your edit was not sent to the customer: changing what a customer was"
                " sent needs the agent role, and you have the none role. An admin (`UADMIN`)"
                " can give it with `/user role U0ANNA1 agent`.",
            },
        ),
        lambda j, keys: j.new_job(1, "edit", keys),
    ),
    Recorded(
        "staff.window",
        row(
            "staff.window",
            "window:2:slack",
            "c1:slack",
            SLACK_POST,
            {
                "conv": 1,
                "surface": "slack",
                "platform": "whatsapp",
                "account": "1001",
                "reason": "The customer last wrote 30 hours ago; WhatsApp allows only approved"
                " templates more than 24 hours after the customer's last message.",
            },
        ),
        lambda j, keys: j.new_job(2, keys),
    ),
    Recorded(
        "staff.post of a customer's reply, with the quote of what it answers",
        row(
            "staff.post",
            "post:7:slack",
            "c1:slack",
            SLACK_POST,
            {
                "conv": 1,
                "surface": "slack",
                "msg": 7,
                "author": "Ann",
                "text": "Yes, that one",
                "files": [],
                "platform": "telegram",
                "account": "123456",
                "chat": "111",
                "quote": "Is it the blue parcel?",
            },
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "staff.react on the agent's message",
        row(
            "staff.react",
            "react:5:slack:1",
            "c1:slack",
            ["slack:reactions"],
            {
                "conv": 1,
                "surface": "slack",
                "msg": 5,
                "author": "Ann",
                "added": ["👍"],
                "removed": [],
                "customer": "whatsapp_4915112345678",
            },
        ),
        lambda j, keys: j.new_job("1", keys),
    ),
    Recorded(
        "staff.tombstone",
        row(
            "staff.tombstone",
            "forget:slack:C0001/1796663203.229200",
            "forget:slack:C0001/1796663203.229200",
            ["slack:update"],
            {
                "surface": "slack",
                "thread": "C0001/1796663203.229200",
                "text": "This contact's data was erased on 2026-12-07 at their request (by Ada).",
            },
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "customer.send of a staff reply",
        row(
            "customer.send",
            "send:880000302",
            "c880000201:out",
            ["sms:+15005550006"],
            {
                "conv": 880000201,
                "msg": 880000302,
                "platform": "sms",
                "account": "+15005550006",
                "chat": "+14155550123",
                "text": "Here is the label",
                "files": [
                    {
                        "kind": "image",
                        "ref": "http://127.0.0.1:35709/files-pri/T0001-F00000001/download/"
                        "label-QX-5521.png",
                        "filename": "label-QX-5521.png",
                        "mime_type": "image/png",
                        "size": 85,
                    }
                ],
                "surface": "slack",
                "ref": "C0001/1796663213.809600",
                "last_in": 1796663213.615896,
            },
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "customer.send of a template",
        row(
            "customer.send",
            "send:2",
            "c1:out",
            ["whatsapp:1001", "whatsapp:1001:to:4915112345678"],
            {
                "conv": 1,
                "msg": 2,
                "platform": "whatsapp",
                "account": "1001",
                "chat": "4915112345678",
                "text": "Hello Anna S., your order A-1234 has shipped.",
                "files": [],
                "surface": "slack",
                "ref": "C0001/1796663277.945900",
                "last_in": 1796555277.0,
                "template": {
                    "name": "order_update",
                    "language": "en_US",
                    "params": ["Anna S.", "A-1234"],
                },
            },
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "customer.send through the API (no surface, and a contact that never wrote)",
        row(
            "customer.send",
            "send:9",
            "c5:out",
            TELEGRAM_CHAT,
            {
                "conv": 5,
                "msg": 9,
                "platform": "telegram",
                "account": "123456",
                "chat": "111",
                "text": "Your parcel left today.",
                "files": [],
                "surface": None,
                "ref": None,
                "last_in": None,
                "template": {"name": "shipped", "language": "", "params": []},
            },
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "customer.send through the API without a template",
        row(
            "customer.send",
            "send:2",
            "c1:out",
            ["telegram:42", "telegram:42:chat:100"],
            {
                "conv": 1,
                "msg": 2,
                "platform": "telegram",
                "account": "42",
                "chat": "100",
                "text": "right away",
                "files": [],
                "surface": None,
                "ref": None,
                "last_in": 1795597201.0,
            },
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "customer.send of the bridge's own text answer",
        row(
            "customer.send",
            "auto:telegram:123456:rule1:telegram:123456:8180001:1:0",
            "c1:out",
            ANNA_CHAT,
            {
                "conv": 1,
                "msg": 2,
                "platform": "telegram",
                "account": "123456",
                "chat": "8180001",
                "text": "Hi Anna Schmidt, we open at 8 (you said: When are you open?)",
                "files": [],
                "last_in": 1796666734.9067214,
            },
        ),
        lambda j, keys: j.new_job(keys, cause="rule1:telegram:123456:8180001:1:0"),
    ),
    Recorded(
        "customer.send of the bridge's own answer with a rule's file",
        row(
            "customer.send",
            "auto:telegram:123456:rule1:telegram:123456:8180001:1:0",
            "c1:out",
            ANNA_CHAT,
            {
                "conv": 1,
                "msg": 2,
                "platform": "telegram",
                "account": "123456",
                "chat": "8180001",
                "text": "Our prices",
                "files": [
                    {
                        "rule_file": 1,
                        "kind": "document",
                        "ref": "rule_file:1",
                        "filename": "prices.pdf",
                    }
                ],
                "last_in": 1796663174.1854992,
            },
        ),
        lambda j, keys: j.new_job(keys, cause="rule1:telegram:123456:8180001:1:0"),
    ),
    Recorded(
        "customer.edit",
        row(
            "customer.edit",
            f"cedit:2:{RECORDED_AT}",
            "c1:out",
            TELEGRAM_CHAT,
            {"conv": 1, "msg": 2},
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "customer.delete",
        row("customer.delete", "cdel:2", "c1:out", TELEGRAM_CHAT, {"conv": 1, "msg": 2}),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "rule.mail",
        row(
            "rule.mail",
            "mail:rule1:telegram:123456:8180001:1:0",
            "rulemail:1",
            ["mail"],
            {
                "to": "contracts@example.org",
                "subject": "Cancellation from Anna",
                "body": "8180001 wrote at 2026-12-07 18:06:15: Hiermit meine Kündigung zum 31.12.",
                "conv": 1,
                "rule": "cancel",
            },
        ),
        lambda j, keys: j.new_job("rule1:telegram:123456:8180001:1:0"),
    ),
    Recorded(
        "rule.http to a bot",
        row(
            "rule.http",
            "http:rule1:telegram:123456:8180001:1:0",
            "rulehttp:1",
            [],
            {
                "url": "http://127.0.0.1:43915/bot",
                # The body is the service's JSON, carried as it is (shortened here).
                "body": {"rule": "bot", "id": 1, "msgid": "8180001:1", "text": "Which way?"},
                "answer": True,
                "conv": 1,
                "contact": 1,
                "platform": "telegram",
                "account": "123456",
                "chat": "8180001",
                "rule": "bot",
                "cause": "rule1:telegram:123456:8180001:1:0",
            },
        ),
        lambda j, keys: j.new_job(),
    ),
    Recorded(
        "rule.http to a web service (no answer)",
        row(
            "rule.http",
            "http:rule1:telegram:123456:8180001:1:0",
            "rulehttp:1",
            [],
            {
                "url": "http://127.0.0.1:43665/crm",
                "body": {
                    "rule": "crm",
                    "id": 1,
                    "msgid": "8180001:1",
                    "platform": "telegram",
                    "account": "123456",
                    "contact": {
                        "id": 1,
                        "name": "Anna",
                        "username": "anna_s",
                        "address": "8180001",
                        "remark": None,
                    },
                    "conversation": 1,
                    "text": "Order 17?",
                    "media_type": "text",
                    "attachments": [],
                    "timestamp": "2026-12-07T18:05:37Z",
                },
                "answer": False,
                "conv": 1,
                "contact": 1,
                "platform": "telegram",
                "account": "123456",
                "chat": "8180001",
                "rule": "crm",
                "cause": "rule1:telegram:123456:8180001:1:0",
            },
        ),
        lambda j, keys: j.new_job(),
    ),
    Recorded(
        "rule.sms",
        row(
            "rule.sms",
            "sms:rule1:telegram:123456:8180001:1:0",
            "rulesms:1",
            ["sms:+15005550006"],
            {
                "number": "+4915199999999",
                "account": "+15005550006",
                "text": "URGENT Anna: This is urgent!",
                "conv": 1,
                "rule": "urgent",
            },
        ),
        lambda j, keys: j.new_job("rule1:telegram:123456:8180001:1:0", keys),
    ),
    Recorded(
        "broadcast.expand",
        row("broadcast.expand", "bcx:1:0", "bcx:1", [], {"b": 1}, next_at=1796670000.0),
        lambda j, keys: j.new_job(next_at=1796670000.0),
    ),
    Recorded(
        "broadcast.send",
        row(
            "broadcast.send",
            "bc:1:7",
            "bc:7",
            ["telegram:bot", "telegram:bot:chat:5000", "hold:bc:1"],
            {"b": 1, "c": 7, "p": "telegram", "a": "bot", "chat": "5000", "n": "Reader 0"},
            bulk=True,
        ),
        lambda j, keys: j.new_job(keys),
    ),
    Recorded(
        "broadcast.progress, the first",
        row(
            "broadcast.progress",
            "bcp:1:0",
            "bcp:1",
            [],
            {"b": 1, "n": 0},
            next_at=1796663237.726774,
        ),
        lambda j, keys: j.new_job(next_at=1796663237.726774),
    ),
    Recorded(
        "broadcast.publish",
        row(
            "broadcast.publish",
            "bcpub:1:facebook",
            "bcpub:1:facebook",
            ["publish:facebook"],
            {"b": 1, "t": "facebook"},
        ),
        lambda j, keys: j.new_job(next_at=0.0),
    ),
    Recorded(
        "webhook.deliver about a contact",
        row(
            "webhook.deliver",
            "wh:2:contact.opted_in:1:new",
            "wh:2",
            ["wh:2"],
            {
                "webhook": 2,
                "event": {
                    "id": "contact.opted_in:1:new",
                    "type": "contact.opted_in",
                    "created_at": "2026-12-07T17:09:49.124Z",
                    "data": {"contact_id": 1, "scope": "contact", "source": "first message"},
                },
                "contact": 1,
            },
        ),
        lambda j, keys: j.new_job(),
    ),
    Recorded(
        "webhook.deliver about no contact",
        row(
            "webhook.deliver",
            "wh:1:broadcast.finished:1",
            "wh:1",
            ["wh:1"],
            {
                "webhook": 1,
                "event": {
                    "id": "broadcast.finished:1",
                    "type": "broadcast.finished",
                    "created_at": "2026-12-07T17:10:13.326Z",
                    "data": {"broadcast_id": 1, "state": "done", "queued": 3},
                },
            },
        ),
        lambda j, keys: j.new_job(),
    ),
]

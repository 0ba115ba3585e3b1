"""Every webhook parser against payloads in its platform's wire format, valid and broken.

The payloads follow the shapes in shared/reference/platform-apis.md (and the fakes in
tests/fakes): valid ones with arbitrary unicode text, the same with fields removed, retyped,
nulled or replaced by nested junk, with extra fields, huge numbers, and plain junk. A customer-side
parser answers with the bridge's typed events or raises `BadRequest`, nothing else; a staff-side
parser (Slack, Matrix) answers with a typed staff event or ignores what it cannot read. The typed
results are checked field by field against their annotations, so no platform dict, list or number
ends up where an id or a text belongs, and texts are checked to arrive exactly as sent.

The webhooks themselves get signed bodies of the same kinds: they answer 200 or 400, never 500,
and a refused body changes nothing in the database.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bridge import pipeline
from bridge.config import MatrixSettings
from bridge.errors import BadRequest
from bridge.staffio import Reply, Request
from bridge.types import (
    AccountId,
    InboundEdit,
    InboundMessage,
    InboundReaction,
    StaffDelete,
    StaffEdit,
    StaffMessage,
    StatusUpdate,
    WatermarkUpdate,
)
from connectors import matrix, messenger, slack_text, sms, telegram, whatsapp
from connectors import slack_events as slack
from tests import connector_kit
from tests.connector_kit import serving
from tests.fakes.messenger import FakeMessenger
from tests.fakes.twilio import FakeTwilio
from tests.fakes.whatsapp import FakeWhatsApp
from tests.world import World, start_world, stop_world

# Bounded and reproducible: the same examples on every run, nothing kept between runs.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
# Valid payloads only check that the strategies speak the wire format the parsers take.
FUZZ_VALID = settings(FUZZ, max_examples=100)
# Through real HTTP, where every example is a request.
FUZZ_HTTP = settings(FUZZ, max_examples=60)

BOT = AccountId("7000000001")  # the Telegram bot's account
PNID = "1001"  # the WhatsApp phone number id the fakes use by default
PAGE = "3003"  # the Messenger page id the fakes use by default
NUMBER = "+15005550006"  # the Twilio number the fakes use by default
SERVICE = "MG" + "0" * 32
SMS_ACCOUNTS = {NUMBER: NUMBER, SERVICE: SERVICE}
ROOM = "!support:example.org"
MATRIX_BOT = "@bridge:example.org"
PUPPETS = "@customer_"


# ---------------------------------------------------------------------- building blocks

# Any code point, and more often those that trip text handling up. Lone surrogates, which
# JSON carries as `\ud800` escapes and UTF-8 cannot, come in through the "text" edit below.
any_char = st.characters()
odd_chars = st.sampled_from(["\x00", "\u202e", "\u0301", "\ufeff", "😀", "\r", "&", "<", "\\"])
chars = st.one_of(any_char, any_char, any_char, odd_chars)
texts = st.text(chars, max_size=40)
words = st.text(chars, min_size=1, max_size=40)
lone_surrogates = st.sampled_from(["\ud83d", "x\udc00y", "\udfff\ud800"])
# Form values arrive decoded from UTF-8, which cannot hold a lone surrogate.
form_texts = st.text(max_size=40)
keys = st.text(any_char, max_size=8)

huge_ints = st.sampled_from(
    [2**31, -(2**31) - 1, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**20, -(10**20), 10**400]
)
odd_floats = st.sampled_from([1e308, -1e308, math.inf, -math.inf, math.nan, 5e-324, -0.0, 0.5])
huge_numbers = huge_ints | odd_floats
# Strings where numbers belong: digits beyond any range, non-ASCII digits, almost-numbers.
number_strings = st.sampled_from(["9" * 5000, "9" * 30, "²", "٣", "1e3", "-1", " 1", ""])
scalars = (
    st.none() | st.booleans() | st.integers() | huge_numbers | st.floats() | texts | number_strings
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path (keys and indexes) to every node of a JSON value, the root included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


_DROP = object()  # an edit that removes the node
_EACH = object()  # each node its own value


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of `value` with the node at `path` replaced by `new`, or removed for _DROP."""
    if not path:
        return None if new is _DROP else new
    head, rest = path[0], path[1:]
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    if rest:
        copy[head] = _replaced(value[head], rest, new)
    elif new is _DROP:
        del copy[head]
    else:
        copy[head] = new
    return copy


def _retypings(node: Any) -> list[Any]:
    """The node as other JSON types: what a sloppy client or a changed API might send."""
    if isinstance(node, bool):
        return [str(node).lower(), int(node), None]
    if isinstance(node, int | float):
        return [str(node), [node], {"value": node}, bool(node), None]
    if isinstance(node, str):
        return [[node], {"text": node}, len(node), True, None]
    if isinstance(node, dict):
        return [list(node.values()), json.dumps(node, default=str), [], None]
    if isinstance(node, list):
        return [{str(i): item for i, item in enumerate(node)}, node[:1], "", None]
    return ["", 0, {}, []]


def _is_number(node: Any) -> bool:
    return isinstance(node, int | float) and not isinstance(node, bool)


def _numberish(node: Any) -> bool:
    """A number, or a string of digits (Cloud API timestamps, ids)."""
    return _is_number(node) or (isinstance(node, str) and node.isdigit())


# What can happen to one node, and which nodes it can happen to.
_EDITS: dict[str, Callable[[Any], bool]] = {
    "huge": _is_number,
    "float": _is_number,
    "digits": _numberish,
    "text": lambda node: isinstance(node, str),
    "junk": lambda node: True,
    "retype": lambda node: True,
    "drop": lambda node: True,
    "extra": lambda node: isinstance(node, dict | list),
}
_LEAF_EDITS = ("huge", "float", "digits", "text")
# Value edits twice as often: they are what a parser that checks types still trips over.
_HOW = [*_LEAF_EDITS, *_EDITS]


@st.composite
def _broken(
    draw: st.DrawFn, valid: st.SearchStrategy[Any], keep: Callable[[tuple[Any, ...]], bool]
) -> Any:
    """A valid payload with nodes set to an extreme (huge numbers, digit strings no int() takes,
    long texts), removed, retyped, nulled, replaced by junk or given extra fields.

    An edit goes to one node; one that changes only values (huge numbers, digit strings, long
    texts) may go to about half or all of the nodes it fits instead (each its own value, or all
    the same): a parser stops at the first field it refuses, so the field that breaks it must
    often be among several, or all of them must be equally odd. Those spread edits spare the
    nodes `keep` names: the ones that route a body (a changed phone number id makes the whole
    body another number's, and nothing in it is read).
    """
    value = draw(valid)
    for _ in range(draw(st.integers(1, 2))):
        how = draw(st.sampled_from(_HOW))
        paths = [p for p in _paths(value) if _EDITS[how](_at(value, p)) and (p or how != "drop")]
        if not paths:
            continue
        spread = "one"
        if how in _LEAF_EDITS:
            spread = draw(st.sampled_from(["one", "some", "all", "same"]))
        if spread == "one":
            # About uniformly: sampled_from leans hard towards the first nodes.
            chosen = [paths[draw(st.integers(0, 2**24)) % len(paths)]]
        else:
            chosen = [p for p in paths if not keep(p) and (spread != "some" or draw(st.booleans()))]
        same = draw(_edit(how, None)) if spread == "same" else _EACH
        # Deepest first, so that a node's children are edited before the node itself; a path
        # an earlier edit of this round made go away (a dropped list item) is skipped.
        for path in sorted(chosen, key=len, reverse=True):
            try:
                node = _at(value, path)
            except (LookupError, TypeError):
                continue
            value = _replaced(value, path, draw(_edit(how, node)) if same is _EACH else same)
    return value


def _edit(how: str, node: Any) -> st.SearchStrategy[Any]:
    if how == "huge":
        return huge_ints
    if how == "float":
        return odd_floats
    if how == "digits":
        return number_strings
    if how == "text":
        return st.sampled_from(["", " ", "\n"]) | lone_surrogates | st.text(min_size=300)
    if how == "drop":
        return st.just(_DROP)
    if how == "retype":
        return st.sampled_from(_retypings(node))
    if how == "extra" and isinstance(node, dict):
        names = st.sampled_from(sorted(map(str, node)) or ["x"])
        return st.tuples(keys | names, junk).map(lambda item: {**node, item[0]: item[1]})
    if how == "extra":
        return junk.map(lambda item: [*node, item])
    return junk


def _nothing(path: tuple[Any, ...]) -> bool:
    return False


def wire(
    valid: st.SearchStrategy[Any], keep: Callable[[tuple[Any, ...]], bool] = _nothing
) -> st.SearchStrategy[Any]:
    """Payloads for a parser: valid ones, broken ones (most), and plain junk."""
    broken = _broken(valid, keep)
    return st.one_of(valid, broken, broken, broken, broken, broken, junk)


# ---------------------------------------------------------------------- typed results


def check_typed(value: Any) -> None:
    """Every field of a bridge dataclass holds what its annotation says, recursively.

    A NewType'd id must be a str, an int an int (not a bool), a datetime an aware one: this is
    where a platform dict, list or number that leaked into the result would show. A str must
    also be storable: JSON's `\\ud800` escapes decode to lone surrogates, which no database
    takes.
    """
    hints = typing.get_type_hints(type(value))
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        assert _conforms(
            item, hints[field.name]
        ), f"{type(value).__name__}.{field.name} = {item!r} is not a {hints[field.name]}"


def _conforms(item: Any, hint: Any) -> bool:
    supertype = getattr(hint, "__supertype__", None)
    if supertype is not None:  # a NewType such as ChatId
        return _conforms(item, supertype)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(item, arg) for arg in typing.get_args(hint))
    if origin is tuple:
        member = typing.get_args(hint)[0]
        return isinstance(item, tuple) and all(_conforms(one, member) for one in item)
    if hint is type(None):
        return item is None
    if hint is int:
        return isinstance(item, int) and not isinstance(item, bool)
    if hint is datetime:
        return isinstance(item, datetime) and item.tzinfo is not None
    if hint is str:
        return isinstance(item, str) and _storable(item)
    if dataclasses.is_dataclass(hint):
        if not isinstance(item, hint):
            return False
        check_typed(item)
        return True
    return isinstance(item, hint)


def _storable(text: str) -> bool:
    """Whether UTF-8, and so a database, can hold the text: a lone surrogate it cannot."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _str(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, str) else None


REFUSED = object()


def parsed_or_refused(parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The parser's answer, or REFUSED when it raised BadRequest; any other exception fails."""
    try:
        return parse(*args, **kwargs)
    except BadRequest:
        return REFUSED


# ---------------------------------------------------------------------- Telegram

tg_ids = st.integers(1, 2**52)
tg_times = st.integers(0, 2**32)
tg_names = st.fixed_dictionaries(
    {"first_name": words},
    optional={
        "last_name": texts,
        "username": st.from_regex(r"[A-Za-z][A-Za-z0-9_]{4,31}", fullmatch=True),
    },
)
tg_files = st.fixed_dictionaries(
    {"file_id": st.from_regex(r"[A-Za-z0-9_-]{8,40}", fullmatch=True), "file_unique_id": words},
    optional={"file_size": st.integers(0, 2**31), "file_name": texts, "mime_type": texts},
)
tg_photo = st.lists(
    st.builds(
        lambda f, w, h: {**f, "width": w, "height": h},
        tg_files,
        st.integers(1, 10000),
        st.integers(1, 10000),
    ),
    min_size=1,
    max_size=4,
)
tg_content = st.one_of(
    st.fixed_dictionaries({"text": words}),
    st.fixed_dictionaries(
        {"text": st.from_regex(r"/start( [A-Za-z0-9_-]{1,64})?", fullmatch=True)},
        optional={"entities": st.just([{"type": "bot_command", "offset": 0, "length": 6}])},
    ),
    st.fixed_dictionaries({"photo": tg_photo}, optional={"caption": texts}),
    st.builds(
        lambda field, media, caption: {field: media, **caption},
        st.sampled_from(["document", "video", "voice", "audio", "video_note", "animation"]),
        tg_files,
        st.fixed_dictionaries({}, optional={"caption": texts}),
    ),
    st.fixed_dictionaries({"sticker": tg_files}),
    st.fixed_dictionaries({"location": st.fixed_dictionaries({"latitude": st.floats(-90, 90)})}),
)


@st.composite
def tg_updates(draw: st.DrawFn) -> dict[str, Any]:
    """An Update as the Bot API sends it: a message or an edit in a chat, or another kind."""
    person = draw(tg_names)
    user_id = draw(tg_ids)
    chat_type = draw(st.sampled_from(["private", "private", "private", "group", "supergroup"]))
    chat = {"id": user_id if chat_type == "private" else -draw(tg_ids), "type": chat_type}
    if chat_type == "private":
        chat.update(person)
    else:
        chat["title"] = draw(texts)
    message: dict[str, Any] = {
        "message_id": draw(st.integers(1, 2**31)),
        "from": {"id": user_id, "is_bot": draw(st.booleans()) and draw(st.booleans()), **person},
        "chat": chat,
        "date": draw(tg_times),
        **draw(tg_content),
    }
    kind = draw(st.sampled_from(["message", "message", "edited_message", "channel_post"]))
    if kind == "edited_message":
        message["edit_date"] = message["date"] + draw(st.integers(0, 10**6))
    return {"update_id": draw(st.integers(0, 2**31)), kind: message}


def check_telegram(payload: Any, event: Any) -> None:
    """A Telegram event says what its update says: ids, text, files."""
    if event is None:
        return
    check_typed(event)
    message = payload["message"] if "message" in payload else payload["edited_message"]
    chat_id = str(message["chat"]["id"])
    assert event.platform == "telegram" and event.account == BOT
    assert event.chat_id == chat_id and chat_id.lstrip("-").isdigit()
    assert event.external_id == f"{chat_id}:{message['message_id']}"
    text, caption = _str(message, "text"), _str(message, "caption")
    if isinstance(event, InboundMessage):
        shown = text or caption or ""
        if event.text != shown:
            # A sticker, location or contact is shown as a line of its own, before any text.
            assert event.text.endswith(shown)
            line = event.text[: len(event.text) - len(shown)]
            assert line.startswith(("[sticker]", "[location]", "[contact]"))
            assert not shown or line.endswith("\n")
        file_ids = {f.get("file_id") for f in _media_of(message)}
        assert all(a.ref in file_ids for a in event.attachments)
        assert event.text or event.attachments
    else:
        assert isinstance(event, InboundEdit)
        assert event.text == (text if text is not None else caption)


def _media_of(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = [m for m in message.get("photo") or [] if isinstance(m, Mapping)]
    for field in ("document", "video", "video_note", "audio", "voice", "sticker"):
        if isinstance(message.get(field), Mapping):
            found.append(message[field])
    return found


@FUZZ_VALID
@given(payload=tg_updates())
def test_telegram_accepts_every_valid_update(payload):
    event = telegram.parse_update(payload, BOT)
    check_telegram(payload, event)
    if "channel_post" in payload or payload.get("message", {}).get("chat", {}).get("type") in (
        "group",
        "supergroup",
    ):
        assert event is None


@FUZZ
@given(payload=wire(tg_updates(), keep=lambda path: path == ("update_id",)))
def test_telegram_parse_update_answers_an_event_or_bad_request(payload):
    event = parsed_or_refused(telegram.parse_update, payload, BOT)
    if event is not REFUSED:
        check_telegram(payload, event)


# ---------------------------------------------------------------------- WhatsApp Cloud API

wa_ids = st.from_regex(r"[1-9][0-9]{7,14}", fullmatch=True)
wamids = st.from_regex(r"wamid\.[A-Za-z0-9_=-]{8,60}", fullmatch=True)
wa_times = st.integers(0, 2**32).map(str)
wa_media = st.fixed_dictionaries(
    {
        "id": st.from_regex(r"[1-9][0-9]{5,16}", fullmatch=True),
        "mime_type": st.sampled_from(["image/jpeg", "audio/ogg; codecs=opus", "video/mp4", "x/y"]),
        "sha256": st.from_regex(r"[A-Za-z0-9+/]{43}=", fullmatch=True),
    },
    optional={
        "caption": texts,
        "filename": texts,
        "voice": st.booleans(),
        "animated": st.booleans(),
        "file_size": st.integers(0, 2**31),
    },
)
wa_content = st.one_of(
    st.builds(lambda body: {"type": "text", "text": {"body": body}}, texts),
    st.sampled_from(["image", "document", "audio", "video", "sticker"]).flatmap(
        lambda kind: wa_media.map(lambda media: {"type": kind, kind: media})
    ),
    st.builds(
        lambda text, payload: {"type": "button", "button": {"text": text, "payload": payload}},
        texts,
        texts,
    ),
    st.builds(
        lambda kind, title, extra: {
            "type": "interactive",
            "interactive": {"type": kind, kind: {"id": "opt-1", "title": title, **extra}},
        },
        st.sampled_from(["button_reply", "list_reply", "nfm_reply"]),
        texts,
        st.fixed_dictionaries({}, optional={"description": texts}),
    ),
    st.builds(
        lambda lat, lon, extra: {
            "type": "location",
            "location": {"latitude": lat, "longitude": lon, **extra},
        },
        st.floats(-90, 90),
        st.floats(-180, 180),
        st.fixed_dictionaries({}, optional={"name": texts, "address": texts, "url": texts}),
    ),
    st.builds(
        lambda cards: {"type": "contacts", "contacts": cards},
        st.lists(
            st.fixed_dictionaries(
                {"name": st.fixed_dictionaries({"formatted_name": texts, "first_name": texts})},
                optional={
                    "phones": st.lists(
                        st.fixed_dictionaries(
                            {"phone": texts, "type": st.just("CELL")}, optional={"wa_id": wa_ids}
                        ),
                        max_size=2,
                    )
                },
            ),
            min_size=1,
            max_size=2,
        ),
    ),
    st.builds(
        lambda mid, emoji: {"type": "reaction", "reaction": {"message_id": mid, "emoji": emoji}},
        wamids,
        texts,
    ),
    st.just(
        {
            "type": "unsupported",
            "errors": [{"code": 131051, "title": "Message type unknown"}],
        }
    ),
)
wa_messages = st.builds(
    lambda sender, mid, at, content, extra: {
        "from": sender,
        "id": mid,
        "timestamp": at,
        **content,
        **extra,
    },
    wa_ids,
    wamids,
    wa_times,
    wa_content,
    st.fixed_dictionaries({}, optional={"context": st.fixed_dictionaries({"id": wamids})}),
)
wa_errors = st.fixed_dictionaries(
    {"code": st.sampled_from([131026, 131047, 131050, 130472, 1]) | st.integers(0, 200000)},
    optional={
        "title": texts,
        "message": texts,
        "error_data": st.fixed_dictionaries({"details": texts}),
    },
)
wa_statuses = st.builds(
    lambda mid, word, at, to, extra: {
        "id": mid,
        "status": word,
        "timestamp": at,
        "recipient_id": to,
        **extra,
    },
    wamids,
    st.sampled_from(["sent", "delivered", "read", "failed", "deleted", "warning"]),
    wa_times,
    wa_ids,
    st.fixed_dictionaries(
        {},
        optional={
            "errors": st.lists(wa_errors, min_size=1, max_size=2),
            "conversation": st.fixed_dictionaries(
                {"id": st.text("0123456789abcdef", min_size=32, max_size=32)}
            ),
            "pricing": st.just({"billable": True, "pricing_model": "CBP", "category": "service"}),
        },
    ),
)


# What makes a body a Cloud API webhook for a number of the bridge.
WA_ROUTING = {("object",), ("field",), ("phone_number_id",)}


@st.composite
def wa_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A Cloud API webhook body: one or two changes with messages, statuses and contacts."""
    changes = []
    for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
        messages = draw(st.lists(wa_messages, max_size=2))
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550001001",
                "phone_number_id": draw(st.sampled_from([PNID, PNID, PNID, "1002"])),
            },
        }
        if messages:
            value["messages"] = messages
            value["contacts"] = [
                {"profile": {"name": draw(texts)}, "wa_id": message["from"]} for message in messages
            ]
        statuses = draw(st.lists(wa_statuses, max_size=2))
        if statuses:
            value["statuses"] = statuses
        field = draw(st.sampled_from(["messages", "messages", "messages", "account_update"]))
        changes.append({"field": field, "value": value})
    return {"object": "whatsapp_business_account", "entry": [{"id": "2002", "changes": changes}]}


def check_whatsapp(payload: Any, events: Any) -> None:
    """Each WhatsApp event comes from a message or status of the body, text as sent."""
    assert isinstance(events, list)
    messages, statuses = [], []
    for entry in payload["entry"]:
        for change in entry["changes"]:
            value = change.get("value") if change.get("field") == "messages" else None
            if isinstance(value, Mapping) and value["metadata"]["phone_number_id"] == PNID:
                messages += value.get("messages") or []
                statuses += value.get("statuses") or []
    for event in events:
        check_typed(event)
        assert event.platform == "whatsapp" and event.account == PNID
        if isinstance(event, InboundMessage):
            sources = [
                m for m in messages if m["id"] == event.external_id and m["from"] == event.chat_id
            ]
            assert sources, f"{event.external_id} is in no message of the body"
            # A text message's text arrives as it was sent.
            assert any(m.get("type") != "text" or m["text"]["body"] == event.text for m in sources)
            assert event.profile.display_name
        elif isinstance(event, InboundReaction):
            reactions = [m["reaction"] for m in messages if m.get("type") == "reaction"]
            assert any(
                r["message_id"] == event.target and event.emoji in ((r.get("emoji"),), ())
                for r in reactions
            )
        else:
            assert isinstance(event, StatusUpdate)
            assert any(s["id"] == event.external_id for s in statuses)
            assert event.code is None or event.code.removeprefix("-").isdigit()


@FUZZ_VALID
@given(payload=wa_bodies())
def test_whatsapp_accepts_every_valid_body(payload):
    events = whatsapp.parse_webhook(payload, {PNID})
    check_whatsapp(payload, events)


@FUZZ
@given(payload=wire(wa_bodies(), keep=lambda path: path[-1:] in WA_ROUTING))
def test_whatsapp_parse_webhook_answers_events_or_bad_request(payload):
    events = parsed_or_refused(whatsapp.parse_webhook, payload, {PNID})
    if events is not REFUSED:
        check_whatsapp(payload, events)


# ---------------------------------------------------------------------- Messenger

psids = st.from_regex(r"[1-9][0-9]{14,16}", fullmatch=True)
fb_mids = st.from_regex(r"m_[A-Za-z0-9_-]{10,80}", fullmatch=True)
fb_times = st.integers(0, 2**45)
fb_urls = st.from_regex(r"https://scontent\.xx\.fbcdn\.net/v/[a-z0-9]{1,20}\.jpg", fullmatch=True)
fb_attachments = st.one_of(
    st.builds(
        lambda kind, url: {"type": kind, "payload": {"url": url}},
        st.sampled_from(["image", "video", "audio", "file"]),
        fb_urls,
    ),
    st.builds(
        lambda url, sticker: {"type": "image", "payload": {"url": url, "sticker_id": sticker}},
        fb_urls,
        st.integers(1, 2**50),
    ),
    st.builds(
        lambda title, url: {"type": "fallback", "title": title, "url": url, "payload": None},
        texts,
        texts,
    ),
    st.builds(
        lambda lat, lon: {
            "type": "location",
            "payload": {"coordinates": {"lat": lat, "long": lon}},
        },
        st.floats(-90, 90),
        st.floats(-180, 180),
    ),
    st.builds(
        lambda title: {"type": "template", "title": title, "payload": {"template_type": "generic"}},
        texts,
    ),
)
fb_kinds = st.one_of(
    st.builds(
        lambda mid, extra: {"message": {"mid": mid, **extra}},
        fb_mids,
        st.fixed_dictionaries(
            {},
            optional={
                "text": texts,
                "attachments": st.lists(fb_attachments, min_size=1, max_size=3),
                "quick_reply": st.fixed_dictionaries({"payload": texts}),
                "is_echo": st.booleans(),
                "reply_to": st.fixed_dictionaries({"mid": fb_mids}),
            },
        ),
    ),
    st.builds(
        lambda mid, text, n: {"message_edit": {"mid": mid, "text": text, "num_edit": n}},
        fb_mids,
        texts,
        st.integers(1, 5),
    ),
    st.builds(
        lambda title, payload, extra: {"postback": {"title": title, "payload": payload, **extra}},
        texts,
        texts,
        st.fixed_dictionaries(
            {},
            optional={
                "mid": fb_mids,
                "referral": st.fixed_dictionaries(
                    {"ref": texts, "source": st.just("SHORTLINK"), "type": st.just("OPEN_THREAD")}
                ),
            },
        ),
    ),
    st.builds(
        lambda ref, source: {"referral": {"ref": ref, "source": source, "type": "OPEN_THREAD"}},
        texts,
        st.sampled_from(["SHORTLINK", "ADS", "CUSTOMER_CHAT_PLUGIN", "DISCOVER_TAB"]),
    ),
    st.builds(
        lambda mids, watermark: {"delivery": {"mids": mids, "watermark": watermark}},
        st.lists(fb_mids, max_size=2),
        fb_times,
    ),
    st.builds(lambda watermark: {"read": {"watermark": watermark}}, fb_times),
    st.builds(
        lambda mid: {"reaction": {"mid": mid, "action": "react", "emoji": "x"}},
        fb_mids,
    ),
)
fb_events = st.builds(
    lambda psid, at, kind: {
        "sender": {"id": psid},
        "recipient": {"id": PAGE},
        "timestamp": at,
        **kind,
    },
    psids,
    fb_times,
    fb_kinds,
)
fb_bodies = st.builds(
    lambda entries: {"object": "page", "entry": entries},
    st.lists(
        st.builds(
            lambda page, at, events: {"id": page, "time": at, "messaging": events},
            st.sampled_from([PAGE, PAGE, int(PAGE), "4004"]),
            fb_times,
            st.lists(fb_events, min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=2,
    ),
)


def check_messenger(payload: Any, events: Any) -> None:
    """Each Messenger event comes from an event of the body, text as sent."""
    assert isinstance(events, list)
    raw = [
        event
        for entry in payload["entry"]
        if str(entry.get("id")) == PAGE
        for event in entry.get("messaging") or []
        if isinstance(event, Mapping)
    ]
    senders = {str(one["sender"].get("id")) for one in raw if isinstance(one.get("sender"), dict)}
    for event in events:
        check_typed(event)
        assert event.platform == "messenger" and event.account == PAGE
        assert event.chat_id in senders
        if isinstance(event, InboundEdit):
            edits = [one.get("message_edit") for one in raw]
            assert any(_str(edit, "mid") == event.external_id for edit in edits)
            assert any(_str(edit, "text") == event.text for edit in edits)
        elif isinstance(event, InboundMessage) and event.external_id.startswith("referral:"):
            refs = [_str(one.get("referral"), "ref") for one in raw]
            assert event.start_payload in refs
        elif isinstance(event, InboundMessage):
            messages = [one.get("message") for one in raw]
            postbacks = [one.get("postback") for one in raw]
            sent = [m for m in messages if _str(m, "mid") == event.external_id]
            tapped = [_str(p, "title") or _str(p, "payload") for p in postbacks]
            # Described attachments (links, places) follow the text on lines of their own.
            assert event.text in tapped or any(
                event.text == (_str(m, "text") or "")
                or event.text.startswith(f"{_str(m, 'text') or ''}\n")
                or not _str(m, "text")
                for m in sent
            )
        elif isinstance(event, InboundReaction):
            reactions = [one.get("reaction") for one in raw]
            assert any(_str(r, "mid") == event.target for r in reactions)
        else:
            assert isinstance(event, WatermarkUpdate)


@FUZZ_VALID
@given(payload=fb_bodies)
def test_messenger_accepts_every_valid_body(payload):
    events = messenger.parse_webhook(payload, {PAGE})
    check_messenger(payload, events)


@FUZZ
@given(payload=wire(fb_bodies, keep=lambda path: path == ("object",) or path[2:] == ("id",)))
def test_messenger_parse_webhook_answers_events_or_bad_request(payload):
    events = parsed_or_refused(messenger.parse_webhook, payload, {PAGE})
    if events is not REFUSED:
        check_messenger(payload, events)


# ---------------------------------------------------------------------- Twilio

twilio_sids = st.from_regex(r"(SM|MM)[0-9a-f]{32}", fullmatch=True)
customers = st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True) | st.sampled_from(["55555"])
media_types = st.sampled_from(["image/jpeg", "video/mp4", "audio/amr", "text/vcard", ""])


@st.composite
def twilio_messages(draw: st.DrawFn) -> dict[str, str]:
    """An incoming-message webhook's form as Twilio posts it (an SMS or an MMS)."""
    sid = draw(twilio_sids)
    body = draw(form_texts)
    media = draw(st.lists(media_types, max_size=3))
    form = {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": str(len(media)),
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": draw(st.sampled_from([NUMBER, NUMBER, NUMBER[1:], "+15005550001"])),
        "NumSegments": str(max(1, -(-len(body) // 160))),
        "MessageSid": sid,
        "AccountSid": "AC" + "0123456789abcdef" * 2,
        "From": draw(customers),
        "ApiVersion": "2010-04-01",
    }
    for index, kind in enumerate(media):
        form[f"MediaContentType{index}"] = kind
        form[f"MediaUrl{index}"] = f"https://api.twilio.com/2010-04-01/Media/ME{index:032d}"
    if draw(st.booleans()):
        form["MessagingServiceSid"] = draw(st.sampled_from([SERVICE, "MG" + "1" * 32]))
    return form


@st.composite
def twilio_statuses(draw: st.DrawFn) -> dict[str, str]:
    """A status callback's form."""
    sid = draw(twilio_sids)
    word = draw(
        st.sampled_from(
            ["queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled"]
        )
    )
    form = {
        "SmsSid": sid,
        "SmsStatus": word,
        "MessageStatus": word,
        "To": draw(customers),
        "MessageSid": sid,
        "AccountSid": "AC" + "0123456789abcdef" * 2,
        "From": draw(st.sampled_from([NUMBER, NUMBER, "+15005550001"])),
        "ApiVersion": "2010-04-01",
    }
    if word in ("failed", "undelivered") and draw(st.booleans()):
        form["ErrorCode"] = draw(st.sampled_from(["30003", "30007", "21610"]) | form_texts)
    if draw(st.booleans()):
        form["MessagingServiceSid"] = SERVICE
    return form


@st.composite
def _broken_form(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, str]]) -> dict[str, str]:
    """A valid form with fields removed, emptied, set to odd numbers or text, or added."""
    form = dict(draw(valid))
    names = sorted(form)
    for _ in range(draw(st.integers(1, 3))):
        name = names[draw(st.integers(0, 2**24)) % len(names)]
        how = draw(st.sampled_from(["digits", "drop", "text", "extra"]))
        if how == "drop":
            form.pop(name, None)
        elif how == "digits":
            form[name] = draw(number_strings)
        elif how == "text":
            form[name] = draw(form_texts)
        else:
            extra = draw(
                st.sampled_from(["NumMedia", "MediaUrl0", "MediaUrl3", "ErrorCode", "Body"])
                | st.text(max_size=12)
            )
            form[extra] = draw(form_texts | number_strings)
    return form


def forms(valid: st.SearchStrategy[dict[str, str]]) -> st.SearchStrategy[dict[str, str]]:
    """Forms for a parser: valid, broken, and any mapping of strings (a form is only strings)."""
    broken = _broken_form(valid)
    return st.one_of(valid, broken, broken, st.dictionaries(form_texts, form_texts, max_size=6))


def check_sms_message(form: Mapping[str, str], event: Any) -> None:
    """An SMS event says what its form says: sid, sender, text, media."""
    if event is None:
        return
    check_typed(event)
    assert event.platform == "sms" and event.account in SMS_ACCOUNTS.values()
    assert event.external_id == (form.get("MessageSid") or form.get("SmsSid"))
    assert event.chat_id == form["From"]
    assert event.text == form.get("Body", "")
    assert [a.ref for a in event.attachments] == [
        form[f"MediaUrl{i}"] for i in range(len(event.attachments))
    ]
    assert event.text.strip() or event.attachments


def check_sms_status(form: Mapping[str, str], event: Any) -> None:
    """An SMS status says what its callback says."""
    if event is None:
        return
    check_typed(event)
    assert event.platform == "sms" and event.account in SMS_ACCOUNTS.values()
    assert event.external_id == (form.get("MessageSid") or form.get("SmsSid"))
    assert event.code is None or event.code == form["ErrorCode"].strip()
    assert event.opted_out == (event.code == "21610")


@FUZZ_VALID
@given(form=twilio_messages())
def test_twilio_accepts_every_valid_message(form):
    event = sms.parse_message(form, SMS_ACCOUNTS)
    check_sms_message(form, event)


@FUZZ_VALID
@given(form=twilio_statuses())
def test_twilio_accepts_every_valid_status(form):
    event = sms.parse_status(form, SMS_ACCOUNTS)
    check_sms_status(form, event)


@FUZZ
@given(form=forms(twilio_messages()))
def test_twilio_parse_message_answers_a_message_or_bad_request(form):
    event = parsed_or_refused(sms.parse_message, form, SMS_ACCOUNTS)
    if event is not REFUSED:
        check_sms_message(form, event)


@FUZZ
@given(form=forms(twilio_statuses()))
def test_twilio_parse_status_answers_a_status_or_bad_request(form):
    event = parsed_or_refused(sms.parse_status, form, SMS_ACCOUNTS)
    if event is not REFUSED:
        check_sms_status(form, event)


# ---------------------------------------------------------------------- Slack

slack_channels = st.from_regex(r"C[A-Z0-9]{8,10}", fullmatch=True)
slack_users = st.from_regex(r"U[A-Z0-9]{8,10}", fullmatch=True)
slack_ts = st.builds(
    lambda s, us: f"{s}.{us:06d}", st.integers(10**9, 2 * 10**9), st.integers(0, 999999)
)
slack_files = st.fixed_dictionaries(
    {
        "id": st.from_regex(r"F[A-Z0-9]{8,10}", fullmatch=True),
        "name": texts,
        "mimetype": st.sampled_from(["image/png", "application/pdf", "audio/webm", ""]),
        "size": st.integers(0, 2**40),
        "url_private": st.just("https://files.slack.com/files-pri/T1-F1/a.png"),
    },
    optional={
        "url_private_download": st.just("https://files.slack.com/files-pri/T1-F1/download/a")
    },
)


@st.composite
def slack_events(draw: st.DrawFn) -> dict[str, Any]:
    """A `message` event as the Events API sends it: a reply, an edit, a deletion, or another."""
    channel, user = draw(slack_channels), draw(slack_users)
    ts, thread_ts = draw(slack_ts), draw(slack_ts)
    kind = draw(st.sampled_from(["reply", "reply", "files", "changed", "deleted", "bot", "other"]))
    base = {"type": "message", "channel": channel, "ts": ts, "event_ts": ts}
    if kind in ("reply", "files", "bot"):
        event = {**base, "user": user, "text": draw(texts), "thread_ts": thread_ts, "team": "T1"}
        if kind == "files":
            event["subtype"] = "file_share"
            event["files"] = draw(st.lists(slack_files, min_size=1, max_size=2))
        if kind == "bot":
            event["subtype"] = "bot_message"
            event["bot_id"] = "B0001"
        return event
    if kind == "changed":
        inner = {"type": "message", "user": user, "text": draw(texts), "ts": thread_ts}
        inner["edited"] = {"user": user, "ts": ts}
        return {**base, "subtype": "message_changed", "hidden": True, "message": inner}
    if kind == "deleted":
        return {**base, "subtype": "message_deleted", "hidden": True, "deleted_ts": thread_ts}
    return {"type": draw(st.sampled_from(["reaction_added", "app_mention"])), "user": user}


def check_slack(event: Any, parsed: Any) -> None:
    """A Slack staff event says what its event says: channel, timestamps, author, text."""
    if parsed is None:
        return
    check_typed(parsed)
    assert parsed.surface == "slack"
    channel = event["channel"]
    assert isinstance(channel, str) and channel
    if isinstance(parsed, StaffMessage):
        ts, thread_ts, user = event["ts"], event["thread_ts"], event["user"]
        assert all(isinstance(v, str) and v for v in (ts, thread_ts, user))
        assert parsed.ref == f"{channel}/{ts}" and parsed.thread == f"{channel}/{thread_ts}"
        assert parsed.author == user
        assert parsed.text == slack_text.readable(_str(event, "text") or "")
    elif isinstance(parsed, StaffEdit):
        inner = event["message"]
        assert isinstance(inner["ts"], str) and parsed.ref == f"{channel}/{inner['ts']}"
        assert parsed.text == slack_text.readable(_str(inner, "text") or "")
    else:
        assert isinstance(parsed, StaffDelete)
        assert isinstance(event["deleted_ts"], str)
        assert parsed.ref == f"{channel}/{event['deleted_ts']}"


@FUZZ_VALID
@given(event=slack_events())
def test_slack_reads_every_valid_message_event(event):
    check_slack(event, slack.parse_event(event))


@FUZZ
@given(event=wire(slack_events(), keep=lambda path: path in (("type",), ("subtype",))))
def test_slack_parse_event_answers_a_staff_event_or_ignores_it(event):
    # Bolt hands over any JSON object; what the bridge cannot read it ignores (a raise would
    # answer Slack 500, and Slack would deliver the same event again and again).
    assume(isinstance(event, dict))
    check_slack(event, slack.parse_event(event))


# ---------------------------------------------------------------------- Matrix

mx_users = st.from_regex(r"@[a-z0-9._=-]{1,20}:example\.org", fullmatch=True)
mx_event_ids = st.from_regex(r"\$[A-Za-z0-9_-]{20,43}", fullmatch=True)


@st.composite
def mx_events(draw: st.DrawFn) -> dict[str, Any]:
    """A room timeline event: a message (in a thread, a reply, an edit, a file), a redaction."""
    sender = draw(mx_users | st.sampled_from([MATRIX_BOT, f"{PUPPETS}telegram_1:example.org"]))
    kind = draw(st.sampled_from(["thread", "thread", "command", "reply", "edit", "file", "redact"]))
    content: dict[str, Any] = {"msgtype": "m.text", "body": draw(texts)}
    root = draw(mx_event_ids)
    if kind == "thread":
        content["msgtype"] = draw(st.sampled_from(["m.text", "m.text", "m.emote", "m.notice"]))
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": draw(mx_event_ids)},
        }
    elif kind == "command":
        content["body"] = "!" + draw(
            st.from_regex(r"[a-z]{1,10}( [a-z0-9 ]{0,20})?", fullmatch=True)
        )
        if draw(st.booleans()):
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": root}
    elif kind == "reply":
        content["body"] = f"> <{draw(mx_users)}> {draw(texts)}\n\n{content['body']}"
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": root}}
    elif kind == "edit":
        new_body = draw(texts)
        content["body"] = f" * {new_body}"
        content["m.new_content"] = {"msgtype": "m.text", "body": new_body}
        content["m.relates_to"] = {"rel_type": "m.replace", "event_id": root}
    elif kind == "file":
        content["msgtype"] = draw(st.sampled_from(["m.image", "m.file", "m.audio", "m.video"]))
        content["url"] = "mxc://example.org/" + draw(
            st.from_regex(r"[A-Za-z]{10,24}", fullmatch=True)
        )
        content["info"] = {"mimetype": "image/png", "size": draw(st.integers(0, 2**40))}
        if draw(st.booleans()):
            content["filename"] = draw(texts)
        content["m.relates_to"] = {"rel_type": "m.thread", "event_id": root}
    event: dict[str, Any] = {
        "type": "m.room.message",
        "sender": sender,
        "event_id": draw(mx_event_ids),
        "room_id": ROOM,
        "origin_server_ts": draw(st.integers(0, 2**42)),
        "content": content,
        "unsigned": {"age": draw(st.integers(0, 10**6))},
    }
    if kind == "redact":
        event["type"] = "m.room.redaction"
        event["content"] = {"redacts": root} if draw(st.booleans()) else {}
        if "redacts" not in event["content"]:
            event["redacts"] = root
    return event


def check_matrix(event: Any, parsed: Any) -> None:
    """A Matrix staff event or command says what its event says."""
    if parsed is None:
        return
    check_typed(parsed)
    sender, content = event["sender"], event["content"]
    assert sender != MATRIX_BOT and not sender.startswith(PUPPETS)
    if isinstance(parsed, matrix.CommandLine):
        assert parsed.sender == sender and parsed.room == ROOM
        assert parsed.ref == f"{ROOM}/{event['event_id']}"
        return
    assert parsed.surface == "matrix"
    if isinstance(parsed, StaffDelete):
        target = event.get("redacts") or content.get("redacts")
        assert parsed.ref == f"{ROOM}/{target}"
    elif isinstance(parsed, StaffEdit):
        assert parsed.ref == f"{ROOM}/{content['m.relates_to']['event_id']}"
        assert parsed.text == content["m.new_content"]["body"]
    else:
        assert isinstance(parsed, StaffMessage)
        relation = content["m.relates_to"]
        assert parsed.thread == f"{ROOM}/{relation['event_id']}"
        assert parsed.ref == f"{ROOM}/{event['event_id']}" and parsed.author == sender
        # In a thread the text arrives as typed; a file's body may be its name instead.
        assert parsed.text == content["body"] or (parsed.attachments and not parsed.text)


@FUZZ_VALID
@given(event=mx_events())
def test_matrix_reads_every_valid_event(event):
    check_matrix(event, matrix.parse_event(ROOM, event, MATRIX_BOT, PUPPETS))


@FUZZ
@given(event=wire(mx_events(), keep=lambda path: path in (("type",), ("sender",))))
def test_matrix_parse_event_answers_a_staff_event_or_ignores_it(event):
    # Timeline events come from /sync or an appservice transaction: anything unreadable is
    # ignored, since a raise would hold up the sync (or make the homeserver resend for ever).
    assume(isinstance(event, dict))
    check_matrix(event, matrix.parse_event(ROOM, event, MATRIX_BOT, PUPPETS))


# ---------------------------------------------------------------------- through real HTTP

# Only webhooks insert into these (a stored customer message), whatever the dispatcher and the
# card refreshes do meanwhile for earlier examples.
INBOUND_TABLES = ("contacts", "conversations", "messages")


@pytest.fixture
async def world(tmp_path):
    """The bridge with Telegram (webhook), WhatsApp, Messenger and Twilio on their fakes."""
    w = await start_world(
        tmp_path, whatsapp=FakeWhatsApp(), messenger=FakeMessenger(), sms=FakeTwilio()
    )
    yield w
    await stop_world(w)


async def row_counts(world: World, tables: tuple[str, ...] | None = None) -> dict[str, int]:
    """Rows per table: of the given tables, or of every table of the bridge."""
    if tables is None:
        names = await world.sql("select name from sqlite_master where type = 'table'")
        tables = tuple(name for (name,) in names if not name.startswith("sqlite_"))
    return {table: (await world.sql(f"select count(*) from {table}"))[0][0] for table in tables}


def _dumps(payload: Any) -> bytes:
    # As a sender that writes NaN and Infinity would (Python's json reads them back).
    return json.dumps(payload).encode()


async def post_telegram(world: World, payload: Any) -> int:
    return await world.tg.deliver(payload if isinstance(payload, bytes) else _dumps(payload))


async def post_whatsapp(world: World, payload: Any) -> int:
    assert world.wa is not None
    return await world.wa.deliver(payload if isinstance(payload, bytes) else _dumps(payload))


async def post_messenger(world: World, payload: Any) -> int:
    assert world.fb is not None
    return await world.fb.deliver(payload if isinstance(payload, bytes) else _dumps(payload))


async def post_sms(world: World, form: Mapping[str, str], *, status: bool = False) -> int:
    assert world.sms is not None
    return await world.sms.deliver(world.sms.status_url if status else world.sms.webhook_url, form)


_TG_HEAD = {"message_id": 7, "from": {"id": 42, "is_bot": False, "first_name": "Ann"}}
_TG_CHAT = {"id": 42, "type": "private", "first_name": "Ann"}
_WA_HEAD = {"from": "4915100000001", "id": "wamid.HBgM", "timestamp": "1700000000"}


def _wa(message: Any = None, status: Any = None) -> dict[str, Any]:
    value: dict[str, Any] = {"metadata": {"phone_number_id": PNID}}
    if message is not None:
        value["messages"] = [message]
    if status is not None:
        value["statuses"] = [status]
    change = {"field": "messages", "value": value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "2002", "changes": [change]}]}


_SMS = {"MessageSid": "SM" + "1" * 32, "From": "+14155550100", "To": NUMBER, "Body": "hi"}

# Signed by the platform's secret, and still not a webhook the bridge can take.
MALFORMED = [
    ("telegram", b"{broken"),
    ("telegram", b"[]"),
    ("telegram", {"message": {**_TG_HEAD, "chat": _TG_CHAT, "date": 1, "text": "x"}}),
    ("telegram", {"update_id": 1, "message": "hello"}),
    ("telegram", {"update_id": 1, "message": {**_TG_HEAD, "chat": [42], "date": 1, "text": "x"}}),
    ("telegram", {"update_id": 1, "message": {**_TG_HEAD, "chat": _TG_CHAT, "date": 10**20}}),
    ("telegram", {"update_id": 1, "message": {**_TG_HEAD, "chat": _TG_CHAT, "date": -(10**12)}}),
    (
        "telegram",
        {
            "update_id": 1,
            "edited_message": {
                **_TG_HEAD,
                "chat": _TG_CHAT,
                "date": 1,
                "edit_date": 2**63,
                "text": "x",
            },
        },
    ),
    (
        "telegram",
        {"update_id": 1, "message": {**_TG_HEAD, "chat": _TG_CHAT, "date": 1, "photo": [1]}},
    ),
    ("whatsapp", b"{broken"),
    ("whatsapp", {"object": "whatsapp_business_account", "entry": 5}),
    ("whatsapp", _wa({**_WA_HEAD, "timestamp": "9" * 5000, "type": "text", "text": {"body": "x"}})),
    ("whatsapp", _wa({**_WA_HEAD, "timestamp": "9" * 30, "type": "text", "text": {"body": "x"}})),
    ("whatsapp", _wa({**_WA_HEAD, "type": "text", "text": ["x"]})),
    ("whatsapp", _wa({**_WA_HEAD, "type": "image", "image": {"id": 5}})),
    ("whatsapp", _wa(status={"id": "wamid.A", "status": "read", "timestamp": math.inf})),
    ("messenger", {"object": "page", "entry": [{"id": PAGE, "messaging": {"sender": 1}}]}),
    (
        "messenger",
        {
            "object": "page",
            "entry": [
                {
                    "id": PAGE,
                    "messaging": [
                        {"sender": {"id": "1"}, "timestamp": 2**64, "message": {"mid": "m"}}
                    ],
                }
            ],
        },
    ),
    ("sms", {key: value for key, value in _SMS.items() if key != "MessageSid"}),
    ("sms", {**_SMS, "NumMedia": "x"}),
    ("sms", {**_SMS, "NumMedia": "9" * 5000}),
    ("sms", {**_SMS, "NumMedia": "2", "MediaUrl0": "https://api.twilio.com/m/0"}),
    ("sms-status", {"MessageSid": "SM" + "1" * 32, "From": NUMBER}),
    # Lone surrogates, as JSON escapes: no text, and no database would store them.
    (
        "telegram",
        rb'{"update_id": 1, "message": {"message_id": 7, "date": 1, "text": "hi \ud83d",'
        rb' "chat": {"id": 42, "type": "private", "first_name": "Ann"}}}',
    ),
    ("whatsapp", _dumps(_wa({**_WA_HEAD, "type": "text", "text": {"body": "hi \ud83d"}}))),
    (
        "messenger",
        _dumps(
            {
                "object": "page",
                "entry": [
                    {
                        "id": PAGE,
                        "messaging": [
                            {
                                "sender": {"id": "\udc00"},
                                "timestamp": 1,
                                "message": {"mid": "m_1", "text": "hi"},
                            }
                        ],
                    }
                ],
            }
        ),
    ),
]


async def test_signed_malformed_bodies_are_refused_and_change_nothing(world):
    wrong = []
    for index, (platform, body) in enumerate(MALFORMED):
        before = await row_counts(world)
        if platform == "telegram":
            status = await post_telegram(world, body)
        elif platform == "whatsapp":
            status = await post_whatsapp(world, body)
        elif platform == "messenger":
            status = await post_messenger(world, body)
        else:
            status = await post_sms(world, body, status=platform == "sms-status")
        if not 400 <= status < 500 or await row_counts(world) != before:
            wrong.append((index, platform, status))
    assert wrong == []


@FUZZ_HTTP
@given(payload=wire(tg_updates(), keep=lambda path: path == ("update_id",)))
async def test_telegram_webhook_answers_as_its_parser_decides(world, payload):
    # What the parser refuses is a 400 that stores nothing; the rest is a 200: never a 500,
    # whatever the pipeline then does with odd (but valid) values.
    refused = parsed_or_refused(telegram.parse_update, payload, BOT) is REFUSED
    before = await row_counts(world, INBOUND_TABLES)
    status = await post_telegram(world, payload)
    assert status == (400 if refused else 200)
    if refused:
        assert await row_counts(world, INBOUND_TABLES) == before


@FUZZ_HTTP
@given(payload=wire(wa_bodies(), keep=lambda path: path[-1:] in WA_ROUTING))
async def test_whatsapp_webhook_answers_as_its_parser_decides(world, payload):
    refused = parsed_or_refused(whatsapp.parse_webhook, payload, {PNID}) is REFUSED
    before = await row_counts(world, INBOUND_TABLES)
    status = await post_whatsapp(world, payload)
    assert status == (400 if refused else 200)
    if refused:
        assert await row_counts(world, INBOUND_TABLES) == before


@FUZZ_HTTP
@given(payload=wire(fb_bodies, keep=lambda path: path == ("object",) or path[2:] == ("id",)))
async def test_messenger_webhook_answers_as_its_parser_decides(world, payload):
    refused = parsed_or_refused(messenger.parse_webhook, payload, {PAGE}) is REFUSED
    before = await row_counts(world, INBOUND_TABLES)
    status = await post_messenger(world, payload)
    assert status == (400 if refused else 200)
    if refused:
        assert await row_counts(world, INBOUND_TABLES) == before


@FUZZ_HTTP
@given(
    form=st.one_of(
        forms(twilio_messages()).map(lambda form: (form, False)),
        forms(twilio_statuses()).map(lambda form: (form, True)),
    )
)
async def test_twilio_webhooks_answer_as_their_parsers_decide(world, form):
    form, status_callback = form
    parse = sms.parse_status if status_callback else sms.parse_message
    refused = parsed_or_refused(parse, form, SMS_ACCOUNTS) is REFUSED
    before = await row_counts(world, INBOUND_TABLES)
    status = await post_sms(world, form, status=status_callback)
    assert status == (400 if refused else 200)
    if refused:
        assert await row_counts(world, INBOUND_TABLES) == before


def _slack_action(**changes: Any) -> dict[str, Any]:
    """A block_actions payload for a contact card's button, as Slack posts it, then changed."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "UAGENT", "username": "agent", "team_id": "T1"},
        "api_app_id": "A1",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0001"},
        "trigger_id": "1.2.3",
        "team": {"id": "T1", "domain": "example"},
        "channel": {"id": "C0001", "name": "support"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "card"},
        "actions": [
            {
                "action_id": "bridge_thread:close",
                "block_id": "card",
                "type": "button",
                "value": "close",
                "action_ts": "1700000001.000200",
            }
        ],
    }
    payload.update(changes)
    return payload


SLACK_MALFORMED = [
    # Bolt itself reads `user` as a string or an object before any listener runs.
    ("event", {"type": "reaction_added", "user": 9}),
    (
        "event",
        {"type": "message", "channel": "C0001", "user": [1], "ts": "1.0", "thread_ts": "0.5"},
    ),
    (
        "event",
        {"type": "message", "subtype": "message_changed", "channel": "C0001", "message": [1]},
    ),
    ("action", _slack_action(container=[], channel="C0001", message=5)),
    ("action", _slack_action(container=None, channel=None, message=None)),
    ("action", _slack_action(user="UAGENT")),
    ("action", _slack_action(user=None, container="C0001/1700000000.000100")),
    (
        "action",
        _slack_action(
            actions=[{"action_id": "bridge_thread:x", "value": {"close": 1}, "action_ts": None}]
        ),
    ),
]


async def test_signed_malformed_slack_requests_are_no_500_and_change_nothing(world):
    wrong = []
    for index, (kind, payload) in enumerate(SLACK_MALFORMED):
        before = await row_counts(world)
        if kind == "event":
            status, _ = await world.slack.deliver(world.slack.event_callback(payload))
        else:
            status, _ = await world.slack.interaction(payload)
        if not 200 <= status < 500 or await row_counts(world) != before:
            wrong.append((index, kind, status))
    assert wrong == []


@FUZZ_HTTP
@given(event=wire(slack_events(), keep=lambda path: path in (("type",), ("subtype",))))
async def test_slack_events_endpoint_never_answers_500(world, monkeypatch, event):
    assume(isinstance(event, dict))
    # A reply in a thread the bridge does not know is looked for again for a while; not here.
    monkeypatch.setattr(pipeline, "UNKNOWN_THREAD_WAIT", 0.0)
    before = await row_counts(world, INBOUND_TABLES)
    status, _ = await world.slack.deliver(world.slack.event_callback(event))
    assert 200 <= status < 500
    # A staff reply in a thread the bridge does not know stores nothing either.
    assert await row_counts(world, INBOUND_TABLES) == before


# ---------------------------------------------------------------------- nesting past any limit

# JSON nested deeper than a reader's recursion limit (Python's is about 1000), closed or cut
# off, as arrays or objects: every webhook refuses it with a 400 and stores nothing.
_OPENERS = {"[": "]", '{"a":': "}", '{"entry":[': "]}", '{"message":': "}"}
deep_json = st.builds(
    lambda depth, opener, inner, closed: (
        opener * depth + inner + (_OPENERS[opener] * depth if closed else "")
    ).encode(),
    st.integers(min_value=1_100, max_value=20_000),
    st.sampled_from(sorted(_OPENERS)),
    st.sampled_from(["1", '"x"', "null", "[]", "{}", ""]),
    st.booleans(),
)
FUZZ_DEEP = settings(FUZZ, max_examples=12)


async def _slack_signed(world: World, raw: bytes, content_type: str) -> int:
    ts = int(time.time())
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": world.slack.sign(ts, raw),
    }
    async with (
        aiohttp.ClientSession() as client,
        client.post(world.slack.events_url, data=raw, headers=headers) as answer,
    ):
        return answer.status


@FUZZ_DEEP
@given(body=deep_json)
async def test_every_webhook_refuses_json_nested_past_any_limit(world, body):
    before = await row_counts(world, INBOUND_TABLES)
    interaction = urlencode({"payload": body.decode()}).encode()
    answers = {
        "telegram": await post_telegram(world, body),
        "whatsapp": await post_whatsapp(world, body),
        "messenger": await post_messenger(world, body),
        "slack events": await _slack_signed(world, body, "application/json"),
        "slack interaction": await _slack_signed(
            world, interaction, "application/x-www-form-urlencoded"
        ),
    }
    assert answers == dict.fromkeys(answers, 400)
    assert await row_counts(world, INBOUND_TABLES) == before


# ---------------------------------------------------------------------- Matrix appservice

HS_TOKEN = "hs-token-for-fuzzing"
_TXNS = itertools.count()
http = connector_kit.http


class _MemoryState:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self.values[key] = value


@pytest.fixture
async def appservice(http):
    """A Matrix surface in appservice mode behind its real routes; the homeserver knows nothing."""

    async def unknown(request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown"}, status=404)

    staff: list[Any] = []

    async def sink(event: Any) -> None:
        staff.append(event)

    async def commands(request: Request) -> Reply:
        return Reply()

    async with serving([web.route("*", "/{tail:.*}", unknown)]) as homeserver:
        settings = MatrixSettings(
            homeserver=str(homeserver.make_url("")),
            user_id=MATRIX_BOT,
            room=ROOM,
            mode="appservice",
            as_token=SecretStr("as-token-for-fuzzing"),
            hs_token=SecretStr(HS_TOKEN),
        )
        surface = matrix.MatrixSurface(settings, [], http, sink, commands, _MemoryState())
        async with serving(surface.routes()) as server:
            yield server, staff


mx_invites = st.builds(
    lambda sender: {
        "type": "m.room.member",
        "state_key": MATRIX_BOT,
        "sender": sender,
        "room_id": ROOM,
        "event_id": "$invite",
        "content": {"membership": "invite", "displayname": "Support Bridge"},
    },
    mx_users,
)
mx_transactions = st.one_of(
    st.builds(
        lambda events: {"events": events},
        st.lists(
            wire(mx_events() | mx_invites, keep=lambda path: path == ("room_id",)), max_size=3
        ),
    ),
    junk,
)


@FUZZ_HTTP
@given(body=mx_transactions)
async def test_matrix_transactions_endpoint_never_answers_500(appservice, http, body):
    server, staff = appservice
    before = len(staff)
    # Each transaction its own id: a repeated one is answered without being read again.
    url = server.make_url(f"/matrix/_matrix/app/v1/transactions/fuzz-{next(_TXNS)}")
    headers = {"Authorization": f"Bearer {HS_TOKEN}", "Content-Type": "application/json"}
    async with http.put(url, data=_dumps(body), headers=headers) as answer:
        status = answer.status
    readable = isinstance(body, dict) and isinstance(body.get("events"), list)
    assert status == (200 if readable else 400)
    for event in staff[before:]:
        check_typed(event)


@FUZZ_DEEP
@given(body=deep_json)
async def test_matrix_transactions_refuse_json_nested_past_any_limit(appservice, http, body):
    server, staff = appservice
    url = server.make_url(f"/matrix/_matrix/app/v1/transactions/deep-{next(_TXNS)}")
    headers = {"Authorization": f"Bearer {HS_TOKEN}", "Content-Type": "application/json"}
    async with http.put(url, data=body, headers=headers) as answer:
        assert answer.status == 400
    assert staff == []


def _mx_message(**changes: Any) -> dict[str, Any]:
    content = {
        "msgtype": "m.text",
        "body": "hello",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"},
    }
    event = {
        "type": "m.room.message",
        "sender": "@maria:example.org",
        "event_id": "$reply",
        "room_id": ROOM,
        "origin_server_ts": 1700000000000,
        "content": content,
    }
    event.update(changes)
    return event


_INVITE = {
    "type": "m.room.member",
    "state_key": MATRIX_BOT,
    "sender": "@maria:example.org",
    "room_id": ROOM,
    "event_id": "$invite",
}
# Pushed by a homeserver that holds the hs_token, and still no events the bridge can read.
MATRIX_MALFORMED = [
    {**_INVITE, "content": ["membership", "invite"]},
    {**_INVITE, "content": "invite"},
    _mx_message(origin_server_ts=10**20),
    _mx_message(origin_server_ts=2**1100),
    _mx_message(
        content={
            "msgtype": "m.text",
            "body": " * x",
            "m.new_content": {"msgtype": "m.text", "body": {"text": "x"}},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$reply"},
        }
    ),
]


async def test_malformed_events_in_a_transaction_are_taken_without_a_500(appservice, http):
    server, staff = appservice
    headers = {"Authorization": f"Bearer {HS_TOKEN}"}
    wrong = []
    for index, event in enumerate(MATRIX_MALFORMED):
        url = server.make_url(f"/matrix/_matrix/app/v1/transactions/bad-{next(_TXNS)}")
        async with http.put(url, json={"events": [event]}, headers=headers) as answer:
            if answer.status != 200:
                wrong.append((index, answer.status))
    assert wrong == []
    for one in staff:
        check_typed(one)


# ---------------------------------------------------------------------- what the fuzzing found


def _tg(**message: Any) -> dict[str, Any]:
    return {"update_id": 1, "message": {**_TG_HEAD, "chat": _TG_CHAT, "text": "hi", **message}}


@pytest.mark.parametrize("date", [10**20, 2**53 + 1, -(10**12), 2**63])
def test_telegram_a_date_no_datetime_holds_is_a_bad_request(date):
    # Was OverflowError/ValueError: a 500 on the webhook, and in polling mode an update that
    # was never confirmed, so getUpdates served it again and again.
    with pytest.raises(BadRequest, match="message.date is out of range"):
        telegram.parse_update(_tg(date=date), BOT)


def test_telegram_an_edit_date_no_datetime_holds_is_a_bad_request():
    update = {"update_id": 1, "edited_message": {**_tg(date=1)["message"], "edit_date": 2**63}}
    with pytest.raises(BadRequest, match="edit_date is out of range"):
        telegram.parse_update(update, BOT)


@pytest.mark.parametrize(
    "parse",
    [
        lambda text: telegram.parse_update(_tg(date=1, text=text), BOT),
        lambda text: telegram.parse_update(_tg(date=1, chat={**_TG_CHAT, "first_name": text}), BOT),
        lambda text: whatsapp.parse_webhook(
            _wa({**_WA_HEAD, "type": "text", "text": {"body": text}}), {PNID}
        ),
        lambda text: messenger.parse_webhook(
            {
                "object": "page",
                "entry": [
                    {
                        "id": PAGE,
                        "messaging": [
                            {
                                "sender": {"id": "1"},
                                "timestamp": 1,
                                "message": {"mid": "m", "text": text},
                            }
                        ],
                    }
                ],
            },
            {PAGE},
        ),
    ],
    ids=["telegram-text", "telegram-name", "whatsapp", "messenger"],
)
def test_a_lone_surrogate_in_a_customer_body_is_a_bad_request(parse):
    # Was taken, and then storing the text failed (UTF-8 cannot carry it): a 500, for ever.
    assert parse("fine 😀")
    with pytest.raises(BadRequest, match="lone surrogate"):
        parse("half an emoji \ud83d")


def test_whatsapp_a_timestamp_of_thousands_of_digits_is_a_bad_request():
    # Was ValueError from int(): Python refuses to read more than 4300 digits.
    message = {**_WA_HEAD, "timestamp": "9" * 5000, "type": "text", "text": {"body": "x"}}
    with pytest.raises(BadRequest, match="impossible timestamp"):
        whatsapp.parse_webhook(_wa(message), {PNID})


@pytest.mark.parametrize(
    "code", ["²", "٣", "9" * 5000, "-1"], ids=["superscript", "arabic", "5000-digits", "minus"]
)
def test_whatsapp_an_error_code_that_is_no_ascii_number_is_left_out(code):
    # "²".isdigit() is true and int("²") fails: the whole webhook body was refused.
    error = {"code": code, "title": "Message failed to send"}
    status = {"id": "wamid.A", "status": "failed", "timestamp": "1700000000", "errors": [error]}
    [event] = whatsapp.parse_webhook(_wa(status=status), {PNID})
    assert isinstance(event, StatusUpdate)
    assert (event.code, event.reason) == (None, "Message failed to send")


def test_whatsapp_an_error_code_in_digits_is_read():
    error = {"code": "131047", "title": "Re-engagement message"}
    status = {"id": "wamid.A", "status": "failed", "timestamp": "1700000000", "errors": [error]}
    [event] = whatsapp.parse_webhook(_wa(status=status), {PNID})
    assert event.code == "131047" and "24 hours" in (event.reason or "")


_REPLY = {
    "type": "message",
    "channel": "C0001",
    "user": "UAGENT",
    "text": "On its way",
    "ts": "1700000001.000200",
    "thread_ts": "1700000000.000100",
}


@pytest.mark.parametrize(
    "event",
    [
        # Were AttributeError or TypeError:
        {"type": "message", "subtype": "message_changed", "channel": "C0001", "message": [1]},
        {"type": "message", "subtype": "message_changed", "channel": "C0001", "message": "x"},
        # Were taken with str() of what was there: "None/…", "{'id': 1}"…
        {**_REPLY, "channel": None},
        {**_REPLY, "user": {"id": "UAGENT"}},
        {**_REPLY, "ts": 1700000001.0002},
        {"type": "message", "subtype": "message_deleted", "channel": "C0001", "deleted_ts": 5},
        {**_REPLY, "text": "\ud83d"},
    ],
)
def test_slack_a_message_event_with_fields_of_other_types_is_ignored(event):
    assert slack.parse_event(event) is None


@pytest.mark.parametrize("files", [[1], {"F1": {}}, 5, [{"url_private": 7}]])
def test_slack_files_that_are_no_file_objects_are_left_out(files):
    # Were AttributeError or TypeError (a file list that was a dict, a number, or held one).
    message = slack.parse_event({**_REPLY, "files": files})
    assert isinstance(message, StaffMessage) and message.attachments == ()


def test_slack_file_fields_of_other_types_are_left_out():
    file = {"url_private": "https://files.slack.com/a", "name": {"x": 1}, "size": 1e308}
    message = slack.parse_event({**_REPLY, "files": [{**file, "mimetype": ["image/png"]}]})
    assert isinstance(message, StaffMessage)
    [attachment] = message.attachments
    assert (attachment.filename, attachment.size, attachment.mime_type) == (None, None, None)


@pytest.mark.parametrize("ts", ["1e20", "1e400", "-1e20"])
def test_slack_a_ts_no_datetime_holds_is_taken_as_now(ts):
    # Was OverflowError/OSError; a ts that is no number at all was already taken as now.
    message = slack.parse_event({**_REPLY, "ts": ts})
    assert isinstance(message, StaffMessage) and message.ref == f"C0001/{ts}"
    assert message.at.year >= 2024


@pytest.mark.parametrize("stamp", [10**20, -(10**20), 2**1100], ids=["1e20", "-1e20", "2**1100"])
def test_matrix_an_origin_server_ts_no_datetime_holds_is_taken_as_now(stamp):
    # Was OSError, ValueError or OverflowError: the whole sync batch or transaction failed.
    message = matrix.parse_event(ROOM, _mx_message(origin_server_ts=stamp), MATRIX_BOT)
    assert isinstance(message, StaffMessage) and message.at.year >= 2024


def test_matrix_an_edit_whose_new_body_is_no_text_is_ignored():
    # Was a StaffEdit whose text was str() of the object.
    content = {
        "msgtype": "m.text",
        "body": " * x",
        "m.new_content": {"msgtype": "m.text", "body": {"text": "x"}},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$reply"},
    }
    assert matrix.parse_event(ROOM, _mx_message(content=content), MATRIX_BOT) is None


def test_matrix_an_event_with_a_lone_surrogate_is_ignored():
    content = {
        "msgtype": "m.text",
        "body": "\udc00",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"},
    }
    assert matrix.parse_event(ROOM, _mx_message(content=content), MATRIX_BOT) is None

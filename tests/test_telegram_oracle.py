"""aiogram, an independent reading of the Bot API, checks the corpus and the webhook.

Every sample of tests/corpus/telegram must be an Update aiogram's models accept (so the samples
have the platform's shape). Then updates made from the samples with their contents varied by
hypothesis (texts, entities built as aiogram's MessageEntity, names, chat kinds, coordinates,
stickers, contacts), each checked by aiogram first, go to the bridge's webhook: the answer is
never a 500, and each update is stored as parse_update reads it, or ignored.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from aiogram.enums import MessageEntityType
from aiogram.types import MessageEntity, Update
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.types import AccountId, InboundEdit, InboundMessage
from connectors import telegram
from connectors.wire import utf16_len
from tests.fakes.telegram import CORPUS, load_sample
from tests.world import World, start_world, stop_world

SAMPLES = sorted(path.stem for path in CORPUS.glob("*.json"))
# The samples that carry a message (new or edited); the others are reaction updates.
MESSAGE_SAMPLES = [name for name in SAMPLES if not name.startswith("message_reaction")]
VARIED = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Fresh ids for each example, so that no update is a duplicate of an earlier one.
_ids = itertools.count(1)


@pytest.mark.parametrize("name", SAMPLES)
def test_aiogram_accepts_every_corpus_sample(name):
    sample = load_sample(name)
    update = Update.model_validate(sample)
    kind = next(key for key in sample if key != "update_id")
    if kind == "message_reaction":
        reaction = update.message_reaction
        assert reaction is not None
        assert reaction.message_id == sample[kind]["message_id"]
        assert len(reaction.new_reaction) == len(sample[kind]["new_reaction"])
        return
    message = update.message or update.edited_message
    assert message is not None and kind in ("message", "edited_message")
    # What aiogram read is what the sample says: no field fell back to a default.
    assert message.message_id == sample[kind]["message_id"]
    assert message.text == sample[kind].get("text")
    assert message.caption == sample[kind].get("caption")


# ---------------------------------------------------------------------- varied samples

# Any character but a lone surrogate, which no UTF-8 update carries.
texts = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30)
urls = st.sampled_from(
    ["https://example.com/a?b=1&c=2", "tg://user?id=42", "mailto:a@example.com", "https://x.y/"]
)


@st.composite
def entities(draw: st.DrawFn, text: str) -> list[dict[str, Any]]:
    """Entities over `text` as aiogram's MessageEntity serializes them, spans in UTF-16 units."""
    units = utf16_len(text)
    found = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from([kind.value for kind in MessageEntityType]))
        offset = draw(st.integers(0, max(units - 1, 0)))
        entity = MessageEntity(
            type=kind,
            offset=offset,
            length=draw(st.integers(1, max(units - offset, 1))),
            url=draw(urls) if kind == "text_link" else None,
            language=draw(st.sampled_from([None, "python"])) if kind == "pre" else None,
            custom_emoji_id="5368324170671202286" if kind == "custom_emoji" else None,
            unix_time=1441645532 if kind == "date_time" else None,
        )
        found.append(entity.model_dump(exclude_none=True))
    return found


@st.composite
def varied_updates(draw: st.DrawFn) -> dict[str, Any]:
    """A corpus sample with its content varied; aiogram accepts every one."""
    update = copy.deepcopy(load_sample(draw(st.sampled_from(MESSAGE_SAMPLES))))
    kind = next(key for key in update if key != "update_id")
    message = update[kind]
    for field, entity_field in (("text", "entities"), ("caption", "caption_entities")):
        if field in message:
            message[field] = draw(texts)
            message[entity_field] = draw(entities(message[field]))
    name = draw(texts)
    message["from"] = {"id": 0, "is_bot": draw(st.booleans()) and draw(st.booleans())}
    message["from"]["first_name"] = name
    chat_type = draw(st.sampled_from(["private", "private", "private", "group", "supergroup"]))
    message["chat"] = {"id": 0, "type": chat_type, "first_name": name}
    if "location" in message:
        message["location"] = {
            "latitude": draw(st.floats(-90, 90)),
            "longitude": draw(st.floats(-180, 180)),
        }
    if "sticker" in message:
        sticker = message["sticker"]
        sticker.update(is_animated=draw(st.booleans()), is_video=draw(st.booleans()))
        sticker["emoji"] = draw(st.text(max_size=3))
    if "contact" in message:
        message["contact"].update(first_name=name, phone_number=draw(texts))
    Update.model_validate(update)
    return update


def _renumbered(update: dict[str, Any]) -> dict[str, Any]:
    """The update with an update_id, message_id and chat no earlier example had."""
    update = copy.deepcopy(update)
    message = update["message"] if "message" in update else update["edited_message"]
    number = next(_ids)
    update["update_id"] = number
    message["message_id"] = number
    private = message["chat"]["type"] == "private"
    message["from"]["id"] = 7_000_000 + number
    message["chat"]["id"] = message["from"]["id"] if private else -(7_000_000 + number)
    return update


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path)
    yield w
    await stop_world(w)


async def _stored_text(world: World, external_id: str) -> list[str]:
    rows = await world.sql(
        "select text from messages where platform = 'telegram' and direction = 'in' "
        f"and external_id = '{external_id}'"
    )
    return [text for (text,) in rows]


@VARIED
@given(update=varied_updates())
async def test_every_update_aiogram_accepts_is_stored_or_ignored_never_a_500(world, update):
    update = _renumbered(update)
    world.tg.serve_files(update.get("message") or update["edited_message"])
    parsed = telegram.parse_update(update, AccountId(str(world.tg.bot_id)))
    status = await world.tg.deliver(update)
    assert status == 200
    message = update.get("message") or update["edited_message"]
    external_id = f"{message['chat']['id']}:{message['message_id']}"
    stored = await _stored_text(world, external_id)
    if isinstance(parsed, InboundMessage):
        event("stored")
        assert stored == [parsed.text]
    else:
        event("ignored" if parsed is None else "an edit")
        # Ignored (groups, bots, nothing readable), or an edit of a message never seen.
        assert parsed is None or isinstance(parsed, InboundEdit)
        assert stored == []

"""What a Telegram customer formats reaches the Slack thread in Slack's own markers, edits
included; rules and keywords still read the plain words."""

from __future__ import annotations

from tests.commands_kit import command
from tests.harness import eventually

ANN = 7170001


async def test_a_formatted_telegram_message_shows_its_styles_in_the_thread(world):
    await world.customer(world.tg.sample_update("entities_formatting", ANN))
    root = await world.thread_of(ANN)
    texts = await eventually(lambda: world.texts(root), message="the message")
    assert texts == [
        "*Bold* _italic_ underline ~strike~ spoiler `code`\n```print('hi')```\n> Quoted line"
    ]


async def test_an_edit_keeps_its_formatting(world):
    update = await world.says(ANN, "Order 1234, not 4321")
    root = await world.thread_of(ANN)
    await eventually(lambda: world.texts(root) == ["Order 1234, not 4321"], message="the message")
    message_id = update["message"]["message_id"]
    await world.customer(world.tg.sample_update("edited_bold", ANN, message_id=message_id))
    await eventually(
        lambda: world.texts(root) == ["Order *4321*, not _1234_ _(edited)_"], message="the edit"
    )


async def test_an_edit_that_only_adds_formatting_shows_it(world):
    update = await world.says(ANN, "Order 4321, not 1234")
    root = await world.thread_of(ANN)
    await eventually(lambda: world.texts(root) == ["Order 4321, not 1234"], message="the message")
    message_id = update["message"]["message_id"]
    await world.customer(world.tg.sample_update("edited_bold", ANN, message_id=message_id))
    await eventually(
        lambda: world.texts(root) == ["Order *4321*, not _1234_ _(edited)_"], message="the edit"
    )


async def test_a_rule_reads_the_plain_words_of_a_formatted_message(world):
    reply = await command(world, 'rule add bold regexp "^Bold and" --do "answer: Noted"')
    assert reply.ok, reply.text
    await world.customer(world.tg.sample_update("entities_bold_italic", ANN))
    sent = await eventually(lambda: world.tg.messages_to(ANN), message="the rule's answer")
    assert [m.text for m in sent] == ["Noted"]
    root = await world.thread_of(ANN)
    assert "*Bold* and _italics_" in world.texts(root)

"""/template keeps WhatsApp message templates; `!template send` sends one from a thread."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from tests.commands_kit import AGENT, MANAGER, command, services_of, thread_ref
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.world import start_world, stop_world

WA_ID = "4915112345678"
_refs = itertools.count(1)


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    await services_of(w).write(
        lambda tx: tx.roles.set_role("slack", MANAGER, "manager", "UADMIN", datetime.now(UTC))
    )
    yield w
    await stop_world(w)


async def in_thread(world, root, text: str, *, user: str = AGENT):
    """Type a command as a message in the thread."""
    ref = f"{root.channel}/1700000000.{next(_refs):06d}"
    return await command(world, text, user=user, thread=thread_ref(root), ref=ref)


async def test_manager_adds_shows_lists_and_deletes_a_template(world):
    reply = await command(
        world, "template add order_update en_US Hello {{1}}, order {{2}} shipped.", user=MANAGER
    )
    assert reply.ok and reply.title == "Template order_update (en_US) added, 2 parameters."
    assert "!template send order_update:en_US <1> <2>" in reply.text
    assert await world.sql("select name, language, body, created_by from templates") == [
        ("order_update", "en_US", "Hello {{1}}, order {{2}} shipped.", MANAGER)
    ]

    shown = await command(world, "template show order_update", user=AGENT)
    assert ("Body", "Hello {{1}}, order {{2}} shipped.") in shown.fields
    assert ("Parameters", "2") in shown.fields
    listed = await command(world, "template list", user=AGENT)
    assert "`order_update` (en_US), 2 parameters: Hello {{1}}, order {{2}} shipped." in listed.lines

    gone = await command(world, "template delete order_update en_US", user=MANAGER)
    assert gone.title == "Template order_update (en_US) deleted."
    assert await world.sql("select count(*) from templates") == [(0,)]
    again = await command(world, "template delete order_update", user=MANAGER)
    assert not again.ok and "No template named order_update" in again.title


async def test_adding_the_same_name_and_language_again_updates_the_body(world):
    await command(world, "template add promo de Hallo {{1}}!", user=MANAGER)
    reply = await command(world, "template add promo de Guten Tag {{1}}!", user=MANAGER)
    assert reply.title == "Template promo (de) updated, 1 parameter."
    assert await world.sql("select body from templates") == [("Guten Tag {{1}}!",)]


async def test_an_agent_may_not_add_a_template(world):
    reply = await command(world, "template add promo de Hallo {{1}}", user=AGENT)
    assert not reply.ok and "needs the manager role" in reply.title
    assert await world.sql("select count(*) from templates") == [(0,)]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("template add promo en Hi {{1}} and {{3}}", "{{2}} is missing"),
        ("template add promo en Hi {{2}}", "{{1}} is missing"),
        ("template add promo en Hi {{name}}", "Not a parameter: {{name}}"),
        ("template add Promo-Sale en Hi", "Not a template name: Promo-Sale"),
        ("template add promo english Hi", "Not a language code: english"),
        ("template add promo en", "Missing arguments"),
    ],
)
async def test_invalid_templates_are_refused_with_the_usage(world, line, problem):
    reply = await command(world, line, user=MANAGER)
    assert not reply.ok and problem in reply.title
    assert "Usage: `/template add <name> <language> <body…>`" in reply.lines
    assert await world.sql("select count(*) from templates") == [(0,)]


async def test_language_codes_are_written_as_meta_writes_them(world):
    reply = await command(world, "template add promo pt-br Olá {{1}}", user=MANAGER)
    assert reply.title == "Template promo (pt_BR) added, 1 parameter."


async def test_sync_imports_the_approved_templates_of_every_number(world):
    reply = await command(world, "template sync", user=MANAGER)
    assert reply.ok, reply.text
    assert reply.title == "Imported 2 approved templates from 1 WhatsApp number."
    assert "2 new, 0 updated, 0 unchanged." in reply.lines
    assert "Not imported, not approved: spring_sale:en (rejected)" in reply.lines
    assert await world.sql("select name, language, body from templates order by name") == [
        ("order_update", "en_US", "Hello {{1}}, your order {{2}} has shipped."),
        ("welcome_back", "en", "Hi {{1}}, we have news for you."),
    ]

    world.wa.templates[0]["components"][0]["text"] = "Hi {{1}}, order {{2}} is on its way."
    again = await command(world, "template sync", user=MANAGER)
    assert "0 new, 1 updated, 1 unchanged." in again.lines
    assert await world.sql("select body from templates where name = 'order_update'") == [
        ("Hi {{1}}, order {{2}} is on its way.",)
    ]


async def test_sync_without_whatsapp_says_so(tmp_path):
    w = await start_world(tmp_path)
    try:
        reply = await command(w, "template sync")
        assert not reply.ok and "No WhatsApp number is configured" in reply.title
    finally:
        await stop_world(w)


async def test_send_reaches_the_customer_as_a_template_outside_the_24h_window(world):
    await command(world, "template sync", user=MANAGER)
    assert await world.wa.customer_wrote_ago(WA_ID, 30, name="Anna Schmidt") == 200
    root = await world.thread_of(WA_ID)
    reply = await in_thread(world, root, '!template send order_update "Anna S." A-1234')
    assert reply.ok and reply.text == ""
    [sent] = await eventually(lambda: world.wa.sent_to(WA_ID), message="the template message")
    assert sent["type"] == "template"
    assert sent["template"]["name"] == "order_update"
    assert sent["template"]["language"] == {"code": "en_US"}
    params = [p["text"] for p in sent["template"]["components"][0]["parameters"]]
    assert params == ["Anna S.", "A-1234"]
    await eventually(
        lambda: world.sql("select status from messages where direction = 'out'"),
        message="the outbound record",
    )
    assert await world.sql("select text, author from messages where direction = 'out'") == [
        ("Hello Anna S., your order A-1234 has shipped.", AGENT)
    ]


async def test_send_uses_whatsapps_approved_template_when_none_is_stored(world):
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    reply = await in_thread(world, root, "!template send welcome_back Anna")
    assert reply.ok, reply.text
    [sent] = await eventually(lambda: world.wa.sent_to(WA_ID), message="the template message")
    assert sent["template"]["name"] == "welcome_back"
    assert sent["template"]["language"] == {"code": "en"}


async def test_wrong_parameter_count_is_refused_before_sending(world):
    await command(world, "template sync", user=MANAGER)
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    reply = await in_thread(world, root, "!template send order_update:en_US Anna")
    assert not reply.ok
    assert reply.title == (
        "Template order_update (en_US) takes 2 parameters, you gave 1 (quote a parameter that has spaces)"
    )
    assert "Usage: `!template send <name>[:<language>] <parameter>…`" in reply.lines
    assert await world.sql("select count(*) from messages where direction = 'out'") == [(0,)]
    assert world.wa.sent_to(WA_ID) == []


async def test_a_name_in_two_languages_needs_the_language(world):
    await command(world, "template add greeting de Hallo {{1}}", user=MANAGER)
    await command(world, "template add greeting en Hello {{1}}", user=MANAGER)
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    reply = await in_thread(world, root, "!template send greeting Anna")
    assert not reply.ok
    assert "Template greeting exists in de, en; name the language" in reply.title
    assert await world.sql("select count(*) from messages where direction = 'out'") == [(0,)]


async def test_an_unknown_template_is_refused(world):
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    reply = await in_thread(world, root, "!template send spring_sale Anna")  # rejected by Meta
    assert not reply.ok and "No template named spring_sale" in reply.title
    assert world.wa.sent_to(WA_ID) == []


async def test_send_to_a_telegram_customer_explains_templates_are_for_whatsapp(world):
    await command(world, "template sync", user=MANAGER)
    await world.says(111, "Hello")
    root = await world.thread_of(111)
    reply = await in_thread(world, root, '!template send order_update "Anna S." A-1234')
    assert not reply.ok
    assert reply.title == (
        "Templates are a WhatsApp feature; this customer writes on Telegram, where a normal"
        " reply in this thread works"
    )
    assert await world.sql("select count(*) from messages where direction = 'out'") == [(0,)]


async def test_send_outside_a_thread_says_where_it_works(world):
    reply = await command(world, "template send order_update Anna A-1", user=AGENT)
    assert not reply.ok and "works inside a conversation's thread" in reply.title

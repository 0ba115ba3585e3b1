"""`/contact`: staff find contacts, read their card, edit name, note and remark, add contacts
with consent, and export everything held about one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.commands_kit import AGENT, MANAGER, command, services_of
from tests.harness import eventually

ANNA = 4242001
BOB = 4242002
ANNA_B = 4242003


@pytest.fixture(autouse=True)
async def manager(world):
    """UMANAGER is a manager (given by the admin from the settings); everybody else an agent."""
    reply = await command(world, f"user role {MANAGER} manager")
    assert reply.ok, reply.text


async def two_customers(world):
    """Anna (@anna_s) and Bob write; returns Anna's thread root."""
    await world.says(
        ANNA, "Hello, parcel 17?", first_name="Anna", last_name="Schmidt", username="anna_s"
    )
    await world.says(BOB, "Hi there", first_name="Bob", last_name="Miller")
    root = await world.thread_of(ANNA)
    await world.thread_of(BOB)
    return root


async def contact_id_of(world, chat_id: int) -> int:
    [(found,)] = await world.sql(f"select id from contacts where chat_id = '{chat_id}'")
    return int(found)


# -- find ------------------------------------------------------------------------------------


async def test_find_matches_name_part_number_and_username(world):
    await two_customers(world)
    anna = await contact_id_of(world, ANNA)
    by_name = await command(world, "contact find schmi", user=AGENT)
    assert by_name.ok and by_name.title == "1 contact matches schmi"
    [line] = by_name.lines
    assert f"`#{anna}` Anna Schmidt" in line and f"telegram `{ANNA}`" in line
    assert "@anna_s" in line and "last seen" in line
    by_number = await command(world, "contact find 4242 00", user=AGENT)
    assert by_number.title == "2 contacts match 4242 00"
    by_handle = await command(world, "contact find @anna_s", user=AGENT)
    assert [f"`#{anna}`" in x for x in by_handle.lines] == [True]


async def test_find_without_a_match_says_so(world):
    await two_customers(world)
    reply = await command(world, "contact find zebra", user=AGENT)
    assert reply.ok and reply.title == "No contact matches zebra" and not reply.lines


async def test_find_without_text_answers_usage_and_example(world):
    reply = await command(world, "contact find", user=AGENT)
    assert not reply.ok
    assert "Usage: `/contact find <name, number or @username>`" in reply.lines
    assert "Example: `/contact find anna`" in reply.lines


# -- show ------------------------------------------------------------------------------------


async def test_show_by_id_number_or_name_gives_the_whole_card(world):
    await two_customers(world)
    anna = await contact_id_of(world, ANNA)
    services = services_of(world)
    now = datetime.now(UTC)

    def setup(tx) -> None:
        channel = tx.subscriptions.create_channel("news", "UADMIN", now)
        tx.subscriptions.join(channel.id, anna, "keyword JOIN", now)
        tx.subscriptions.block(anna, "out", now + timedelta(days=2), "spam", "UADMIN", now)

    await services.write(setup)
    [(conv,)] = await world.sql(f"select id from conversations where contact_id = {anna}")
    for who in (f"#{anna}", str(anna), str(ANNA), "Anna Schmidt", "schmidt", "@anna_s"):
        reply = await command(world, f"contact show {who}", user=AGENT)
        assert reply.ok and reply.title == f"#{anna} Anna Schmidt", who
    fields = dict(reply.fields)
    assert fields["Platform"].startswith("telegram, account ")
    assert fields["Chat id"] == str(ANNA)
    assert fields["Username"] == "@anna_s"
    assert fields["Language"] == "en"
    assert fields["Messages"] == "1"
    assert fields["Opt-in"].startswith("first message (")
    assert fields["Opted out"] == "no"
    assert fields["Channels"].startswith("news (since ") and "keyword JOIN" in fields["Channels"]
    assert (
        fields["Blacklist"].startswith("blocks outbound until ") and "(spam)" in fields["Blacklist"]
    )
    assert fields["Assigned to"] == "nobody"
    assert fields["Note"] == "none" and fields["Remark"] == "none"
    assert fields["Open conversation"] == f"#{conv}"


async def test_show_with_an_ambiguous_name_lists_the_candidates(world):
    await two_customers(world)
    await world.says(ANNA_B, "Me too", first_name="Anna", last_name="Berg")
    await world.thread_of(ANNA_B)
    reply = await command(world, "contact show anna", user=AGENT)
    assert not reply.ok and reply.title == "anna matches several contacts"
    assert any("Anna Schmidt" in x for x in reply.lines)
    assert any("Anna Berg" in x for x in reply.lines)
    assert reply.lines[-1].startswith("Name the one you mean by its id")


async def test_show_of_an_unknown_contact_says_how_to_search(world):
    reply = await command(world, "contact show #999", user=AGENT)
    assert not reply.ok and reply.title == "No contact matches #999. Try /contact find #999"


# -- name, note, remark -----------------------------------------------------------------------


async def test_manager_renames_a_contact_and_the_thread_card_follows(world):
    root = await two_customers(world)
    anna = await contact_id_of(world, ANNA)
    reply = await command(world, f"contact name #{anna} Anna Schmidt-Meyer", user=MANAGER)
    assert reply.ok
    assert reply.title == f"Contact #{anna} is now called Anna Schmidt-Meyer (was Anna Schmidt)"
    assert await world.sql(f"select display_name from contacts where id = {anna}") == [
        ("Anna Schmidt-Meyer",)
    ]
    await eventually(
        lambda: "Anna Schmidt-Meyer" in json.dumps(world.slack.find(root.channel, root.ts).blocks),
        message="the renamed card",
    )


async def test_manager_sets_and_clears_note_and_remark(world):
    await two_customers(world)
    anna = await contact_id_of(world, ANNA)
    note = await command(world, f"contact note {ANNA} prefers calls in the morning", user=MANAGER)
    assert note.ok and note.title == f"Note of #{anna} Anna Schmidt saved"
    remark = await command(world, 'contact remark "Anna Schmidt" CRM-4711', user=MANAGER)
    assert remark.ok and remark.title == f"Remark of #{anna} Anna Schmidt saved"
    assert await world.sql(f"select note, remark from contacts where id = {anna}") == [
        ("prefers calls in the morning", "CRM-4711")
    ]
    card = dict((await command(world, f"contact show #{anna}", user=AGENT)).fields)
    assert card["Note"] == "prefers calls in the morning" and card["Remark"] == "CRM-4711"
    cleared = await command(world, f"contact note #{anna} -", user=MANAGER)
    assert cleared.title == f"Note of #{anna} Anna Schmidt cleared"
    assert await world.sql(f"select note from contacts where id = {anna}") == [(None,)]


async def test_editing_without_the_text_answers_usage_and_example(world):
    await two_customers(world)
    reply = await command(world, "contact note #1", user=MANAGER)
    assert not reply.ok and reply.title == "Missing arguments"
    assert reply.lines == (
        "Usage: `/contact note <#id | number | name> <text…>`",
        "Example: `/contact note #12 prefers calls in the morning`",
    )


async def test_an_agent_may_not_change_a_contact(world):
    await two_customers(world)
    anna = await contact_id_of(world, ANNA)
    reply = await command(world, f"contact name #{anna} Someone Else", user=AGENT)
    assert not reply.ok and reply.title == "/contact name needs the manager role"
    assert "You have the agent role" in reply.lines[0]
    assert await world.sql(f"select display_name from contacts where id = {anna}") == [
        ("Anna Schmidt",)
    ]


# -- add -------------------------------------------------------------------------------------


async def test_add_without_consent_is_refused_and_says_why(world):
    reply = await command(world, "contact add telegram 5550001 Carla Diaz", user=MANAGER)
    assert not reply.ok
    assert reply.title.startswith("Adding a contact needs --consent")
    assert "messaging people who did not opt in is not allowed" in reply.title
    assert reply.lines[1] == (
        'Example: `/contact add sms +4915112345678 Anna Schmidt --consent "signed up at the'
        ' counter"`'
    )
    assert await world.sql("select count(*) from contacts") == [(0,)]


async def test_add_with_consent_creates_the_contact_without_a_conversation(world):
    reply = await command(
        world,
        'contact add telegram 5550001 Carla Diaz --consent "asked for updates by phone"',
        user=MANAGER,
        user_name="Maria",
    )
    assert reply.ok, reply.text
    [(contact_id, platform, chat, name, source, opt_in_at)] = await world.sql(
        "select id, platform, chat_id, display_name, opt_in_source, opt_in_at from contacts"
    )
    assert reply.title == f"Contact #{contact_id} added: Carla Diaz"
    assert (platform, chat, name) == ("telegram", "5550001", "Carla Diaz")
    assert source == "added by Maria: asked for updates by phone"
    assert opt_in_at is not None
    assert await world.sql("select count(*) from conversations") == [(0,)]
    again = await command(
        world, 'contact add telegram 5550001 Carla D --consent "again"', user=MANAGER
    )
    assert not again.ok and again.title == f"That contact exists already: #{contact_id}"


async def test_add_checks_platform_account_and_address(world):
    consent = '--consent "signed the form"'
    bad_platform = await command(world, f"contact add fax 123 Carla {consent}", user=MANAGER)
    assert not bad_platform.ok and bad_platform.title.startswith("Fax is not a platform")
    assert bad_platform.lines[0].startswith("Usage: `/contact add <platform> <address>")
    no_account = await command(
        world, f"contact add whatsapp +4915112345678 Carla {consent}", user=MANAGER
    )
    assert not no_account.ok
    assert no_account.title == "The bridge has no whatsapp account configured"
    bad_address = await command(
        world, f"contact add telegram +49-abc Carla {consent}", user=MANAGER
    )
    assert not bad_address.ok
    assert bad_address.title == (
        "+49-abc is not a telegram address; use the numeric Telegram chat id, e.g. 123456789"
    )
    wrong_account = await command(
        world, f"contact add telegram 5550001 Carla {consent} --account 999", user=MANAGER
    )
    assert not wrong_account.ok and wrong_account.title.startswith("No telegram account 999")
    no_name = await command(world, f"contact add telegram 5550001 {consent}", user=MANAGER)
    assert not no_name.ok and no_name.title == "Say the platform, the address and the name"
    assert await world.sql("select count(*) from contacts") == [(0,)]


async def test_an_agent_may_not_add_a_contact(world):
    reply = await command(world, 'contact add telegram 5550001 Carla --consent "form"', user=AGENT)
    assert not reply.ok and reply.title == "/contact add needs the manager role"


# -- export ----------------------------------------------------------------------------------


async def test_export_is_a_json_file_with_the_messages(world):
    root = await two_customers(world)
    await world.slack.agent_says(root.channel, root.ts, "It ships today")
    await eventually(lambda: world.tg.messages_to(ANNA), message="the reply")
    anna = await contact_id_of(world, ANNA)
    reply = await command(world, f"contact export {ANNA}", user=AGENT)
    assert reply.ok and not reply.public
    assert reply.file is not None
    assert reply.file.filename == f"contact-{anna}.json"
    assert reply.file.mime_type == "application/json"
    data = json.loads(reply.file.data)
    assert data["contact"]["display_name"] == "Anna Schmidt"
    assert data["contact"]["chat_id"] == str(ANNA)
    assert data["contact"]["first_seen"].endswith("Z")
    datetime.fromisoformat(data["contact"]["first_seen"])
    assert [(m["direction"], m["text"]) for m in data["messages"]] == [
        ("in", "Hello, parcel 17?"),
        ("out", "It ships today"),
    ]
    out = data["messages"][1]
    assert out["status"] in ("queued", "sent")
    assert {"surface": "slack", "kind": "origin"}.items() <= out["staff_refs"][0].items()
    [conversation] = data["conversations"]
    assert conversation["status"] == "open"
    assert conversation["staff_threads"] == [
        {"surface": "slack", "thread": f"{root.channel}/{root.ts}"}
    ]
    assert data["channel_memberships"] == [] and data["blacklist"] is None
    assert "Bob" not in reply.file.data.decode()

"""/channel: creating and changing subscriber channels, their keywords, members and consent words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.commands_kit import ADMIN, AGENT, MANAGER, command, services_of
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.world import start_world, stop_world

WA_ID = "4915112345678"


async def make_manager(world, user: str = MANAGER) -> None:
    """Give a Slack user the manager role, as `/user role` would."""
    now = datetime.now(UTC)
    await services_of(world).write(
        lambda tx: tx.roles.set_role("slack", user, "manager", ADMIN, now)
    )


async def manager(world, line: str):
    """Run a line as a manager and insist that it worked."""
    reply = await command(world, line, user=MANAGER)
    assert reply.ok, reply.text
    return reply


async def members_of(world, channel: str) -> list[tuple]:
    return await world.sql(
        "select m.contact_id, m.source from channel_members m join channels c"
        f" on c.id = m.channel_id where c.name = '{channel}' and m.left_at is null"
        " order by m.contact_id"
    )


async def test_create_list_show_rename_and_delete_a_channel(world):
    await make_manager(world)
    reply = await manager(world, 'channel create news --join "JOIN NEWS" --leave LEAVE-NEWS')
    assert reply.title == "Channel news created. Join keyword: JOIN NEWS"
    assert "Leave keyword: `LEAVE-NEWS`" in reply.lines
    await manager(world, "channel create deals --join DEALS --platform whatsapp")

    listed = await command(world, "channel list", user=AGENT)
    assert listed.title == "2 channels"
    assert listed.lines == (
        "*deals*: join `DEALS`, leave none, bound to whatsapp; 0 members",
        "*news*: join `JOIN NEWS`, leave `LEAVE-NEWS`; 0 members",
    )
    shown = await command(world, "channel show news", user=AGENT)
    assert ("Join keyword", "JOIN NEWS") in shown.fields
    assert ("Bound to", "no platform") in shown.fields

    renamed = await manager(world, "channel rename news weekly")
    assert renamed.title == "Channel news is now called weekly."
    assert await world.sql("select name, join_keyword from channels order by id") == [
        ("weekly", "JOIN NEWS"),
        ("deals", "DEALS"),
    ]
    await world.says(111, "join news")
    await eventually(lambda: members_of(world, "weekly"), message="a member")

    unconfirmed = await manager(world, "channel delete weekly")
    assert unconfirmed.title == "Deleting weekly would drop its 1 member."
    assert unconfirmed.lines == ("To delete it: `/channel delete weekly --confirm`",)
    assert len(await world.sql("select id from channels")) == 2
    deleted = await manager(world, "channel delete weekly --confirm")
    assert deleted.title == "Channel weekly deleted; 1 member dropped."
    assert await world.sql("select name from channels") == [("deals",)]
    assert await world.sql("select count(*) from channel_members") == [(0,)]


async def test_agents_may_look_but_not_change(world):
    await make_manager(world)
    await manager(world, "channel create news --join NEWS")
    for line in ("channel list", "channel show news", "channel members news", "channel words"):
        assert (await command(world, line, user=AGENT)).ok, line
    for line in (
        "channel create other",
        "channel rename news other",
        "channel delete news --confirm",
        "channel keyword news join OTHER",
        "channel bind news telegram",
        "channel words add stop de aufhören",
    ):
        reply = await command(world, line, user=AGENT)
        assert not reply.ok and "needs the manager role" in reply.title, line
    assert await world.sql("select name, join_keyword, platform from channels") == [
        ("news", "NEWS", None)
    ]


async def test_keyword_taken_by_another_channel_is_refused_naming_the_channel(world):
    await make_manager(world)
    await manager(world, "channel create news --join NEWS --leave NO-NEWS")
    await manager(world, "channel create deals")
    reply = await command(world, "channel keyword deals join news", user=MANAGER)
    assert not reply.ok
    assert reply.title == "news is the join keyword of channel news already."
    reply = await command(world, "channel create more --leave no-news", user=MANAGER)
    assert reply.title == "no-news is the leave keyword of channel news already."
    reply = await command(world, "channel keyword news leave NEWS", user=MANAGER)
    assert reply.title == "NEWS is the join keyword of channel news already."
    assert await world.sql("select name, join_keyword from channels order by id") == [
        ("news", "NEWS"),
        ("deals", None),
    ]


async def test_keyword_that_is_a_consent_word_is_refused(world):
    await make_manager(world)
    reply = await command(world, "channel create news --join Stopp", user=MANAGER)
    assert not reply.ok
    assert reply.title == (
        "Stopp is a stop word (unsubscribes from every channel); choose another keyword."
    )
    assert await world.sql("select count(*) from channels") == [(0,)]
    await manager(world, "channel create news")
    reply = await command(world, "channel keyword news join  START ", user=MANAGER)
    assert reply.title.startswith("START is a start word")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("channel create news!", "news! is not a channel name: 1-64 letters, digits, - or _"),
        ("channel create " + "n" * 65, "is not a channel name"),
        ("channel create news --join", "--join needs a value"),
        ("channel create news --color red", "unexpected --color"),
        ('channel create news --join " NEWS"', "may not start or end with a space"),
        ("channel create news --join " + "K" * 65, "a keyword has 1-64 characters"),
        ("channel create news --platform icq", "icq is not a platform"),
        ("channel create news --join A --leave a", "the join and the leave keyword must differ"),
        ("channel create", "arguments are missing"),
    ],
)
async def test_bad_arguments_answer_with_the_usage_and_an_example(world, line, problem):
    reply = await command(world, line)
    assert not reply.ok
    assert problem.lower() in reply.title.lower()
    assert reply.lines[0].startswith("Usage: `/channel create <name>")
    assert reply.lines[1] == "Example: `/channel create news --join JOIN-NEWS --leave LEAVE-NEWS`"


async def test_keyword_reply_and_bind_change_the_channel(world):
    await make_manager(world)
    await manager(world, "channel create news")
    reply = await manager(world, "channel keyword news join JOIN NEWS")
    assert reply.title == "Channel news: join keyword JOIN NEWS."
    assert reply.lines == ("Telegram deep links cannot carry it (only letters, digits, - and _).",)
    await manager(world, "channel reply news join Welcome! News every Friday.")
    await manager(world, "channel bind news sms")
    assert await world.sql("select join_keyword, join_reply, platform from channels") == [
        ("JOIN NEWS", "Welcome! News every Friday.", "sms")
    ]
    reply = await manager(world, "channel bind news none")
    assert reply.title == "Channel news is not bound to a platform any more."
    await manager(world, "channel reply news join none")
    await manager(world, "channel keyword news join none")
    assert await world.sql("select join_keyword, join_reply, platform from channels") == [
        (None, None, None)
    ]
    reply = await command(world, "channel keyword news middle X", user=MANAGER)
    assert reply.title == "Middle is neither join nor leave"


async def test_bound_channel_is_joined_by_a_new_telegram_customer_signing_up(world):
    await make_manager(world)
    await world.says(111, "I was here before")
    await world.thread_of(111)
    await manager(world, "channel create tg-news")
    reply = await manager(world, "channel bind tg-news telegram")
    assert reply.lines == ("New telegram customers join it when they first write.",)
    await world.says(222, "Hello, first time here")
    await world.thread_of(222)
    [(contact_id,)] = await world.sql("select id from contacts where chat_id = '222'")
    assert await members_of(world, "tg-news") == [(contact_id, "signed up on telegram")]
    members = await command(world, "channel members tg-news", user=AGENT)
    assert members.title == "tg-news: 1 member (telegram 1)"
    assert members.lines[0].startswith(f"`#{contact_id}` Ann (telegram), since ")


@pytest.fixture
async def two_platforms(tmp_path):
    w = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    yield w
    await stop_world(w)


async def test_member_counts_per_platform(two_platforms):
    world = two_platforms
    await make_manager(world)
    await manager(world, "channel create news --join NEWS")
    await manager(world, "channel create other --join OTHER")
    await world.says(111, "news")
    await world.says(222, "News")
    assert await world.wa.customer_says(WA_ID, " NEWS ") == 200
    await eventually(
        lambda: world.sql("select 1 from channel_members group by channel_id having count(*) = 3"),
        message="three members",
    )
    listed = await command(world, "channel list", user=AGENT)
    assert listed.lines == (
        "*news*: join `NEWS`, leave none; 3 members (telegram 2, whatsapp 1)",
        "*other*: join `OTHER`, leave none; 0 members",
    )
    shown = await command(world, "channel show news", user=AGENT)
    assert ("Members", "3 members (telegram 2, whatsapp 1)") in shown.fields
    members = await command(world, "channel members news", user=AGENT)
    assert members.title == "news: 3 members (telegram 2, whatsapp 1)"
    assert all(line.endswith(": keyword NEWS") for line in members.lines)


async def test_members_by_hand_need_the_consent_text(world):
    await make_manager(world)
    await world.says(111, "Hi")
    await world.thread_of(111)
    await manager(world, "channel create news")
    refused = await command(world, "channel add news 111", user=MANAGER)
    assert not refused.ok
    assert refused.title.startswith("Adding a contact by hand needs --consent")
    assert await members_of(world, "news") == []

    reply = await manager(world, 'channel add news #1 --consent "asked by phone"')
    assert reply.title == "#1 Ann (telegram) joined news."
    assert await members_of(world, "news") == [(1, "by hand (UMANAGER): asked by phone")]
    again = await manager(world, 'channel add news 111 --consent "asked by phone"')
    assert again.title == "#1 Ann (telegram) is a member of news already."

    reply = await manager(world, "channel remove news #1")
    assert reply.title == "#1 Ann (telegram) left news."
    assert await members_of(world, "news") == []
    assert await world.sql("select left_source from channel_members") == [("removed by UMANAGER",)]
    reply = await command(world, "channel remove news #1", user=MANAGER)
    assert reply.title == "#1 Ann (telegram) is not a member of news."
    missing = await command(world, 'channel add nope #1 --consent "x"', user=MANAGER)
    assert missing.title == "There is no channel nope. `/channel list` shows them all."


async def test_consent_words_can_be_listed_added_and_removed(world):
    await make_manager(world)
    listed = await command(world, "channel words", user=AGENT)
    assert listed.title.startswith("Consent words: ")
    assert "*stop* de: `abbestellen`, `abmelden`, `austragen`, `stopp`" in listed.lines

    reply = await manager(world, 'channel words add stop de Kündigen "nicht mehr" stopp')
    assert reply.title == "Added stop words (de): kündigen, nicht mehr"
    assert reply.lines == ("Already listed: stopp (stop)",)
    assert await world.sql("select kind, language from consent_words where word = 'kündigen'") == [
        ("stop", "de")
    ]
    await manager(world, "channel create news --join NEWS")
    refused = await command(world, "channel words add start en news", user=MANAGER)
    assert refused.title == "news is the join keyword of channel news; change that first."
    bad = await command(world, "channel words add maybe en x", user=MANAGER)
    assert bad.title == "Maybe is not a kind of consent word; use stop or start"

    reply = await manager(world, "channel words remove KÜNDIGEN nope")
    assert reply.title == "Removed: kündigen"
    assert reply.lines == ("Not in the list: nope",)
    assert await world.sql("select count(*) from consent_words where word = 'kündigen'") == [(0,)]


async def test_the_last_stop_words_cannot_all_be_removed(world):
    await make_manager(world)
    stops = [w for (w,) in await world.sql("select word from consent_words where kind = 'stop'")]
    quoted = " ".join(f'"{w}"' for w in stops)
    reply = await command(world, f"channel words remove {quoted}", user=MANAGER)
    assert reply.title == "At least one stop word must stay: customers need a way out."
    assert len(await world.sql("select word from consent_words where kind = 'stop'")) == len(stops)


async def test_help_lists_every_action_with_its_usage(world):
    reply = await command(world, "channel", user=AGENT)
    assert reply.title == "/channel: Subscriber channels customers join and leave by keyword"
    actions = [line.split("`")[1].split()[1] for line in reply.lines]
    assert actions == [
        "list",
        "show",
        "members",
        "create",
        "rename",
        "delete",
        "keyword",
        "reply",
        "bind",
        "add",
        "remove",
        "words",
    ]

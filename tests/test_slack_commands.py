"""Commands through Slack's own entry points: signed slash commands, `!` in threads and the
buttons on a contact card (interactivity payloads), over HTTP and Socket Mode."""

from __future__ import annotations

import io
import json

import PIL.Image
import pytest
import zxingcpp

from commands.base import COMMANDS
from tests.commands_kit import ADMIN, AGENT, MANAGER, command
from tests.harness import eventually
from tests.slash_kit import slash_answer

ANNA = 5150001


@pytest.fixture(autouse=True)
async def staff(world):
    """Names for users.info; UMANAGER is a manager, everybody else an agent."""
    world.slack.add_user(ADMIN, "Ada Admin", "ada")
    world.slack.add_user(MANAGER, "Max Manager", "max")
    world.slack.add_user(AGENT, "Alex Agent", "alex")
    assert (await command(world, f"user role {MANAGER} manager")).ok


async def slash(world, name: str, text: str = "", *, user: str = AGENT) -> dict:
    """Run `/name text` as Slack does; the answer the caller sees, as JSON."""
    return await slash_answer(world.slack, name, text, user_id=user)


def shown(answer: dict) -> str:
    """Everything a person sees of an answer: the blocks' texts and fields."""
    parts = []
    for block in answer.get("blocks") or []:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts.extend(f["text"] for f in block.get("fields") or [])
        parts.extend(e["text"] for e in block.get("elements") or [] if e.get("type") == "mrkdwn")
    # Slack shows &lt; as <, in code spans too.
    text = "\n".join(parts)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def card_buttons(root) -> list[str]:
    """The action ids of the buttons on a contact card, as they are now."""
    return [
        element["action_id"]
        for block in root.blocks or []
        if block.get("type") == "actions"
        for element in block["elements"]
    ]


async def anna_thread(world):
    await world.says(ANNA, "Where is my parcel?", first_name="Anna", last_name="Schmidt")
    return await world.thread_of(ANNA)


async def bot_answers(world, root) -> list[str]:
    """Texts the bridge itself posted in the thread (command answers and notices)."""
    return [m.text for m in world.replies(root) if m.bot_id and not m.username]


# -- slash commands ----------------------------------------------------------------------------


async def test_slash_command_answers_only_the_caller(world):
    await anna_thread(world)
    answer = await slash(world, "/contact", "find schmidt")
    assert answer["response_type"] == "ephemeral"
    assert "1 contact matches schmidt" in shown(answer)
    assert "Anna Schmidt" in shown(answer)


@pytest.mark.parametrize("name", sorted(COMMANDS))
async def test_every_command_answers_help_through_slack(world, name):
    answer = await slash(world, f"/{name}", "help")
    assert f"/{name}" in shown(answer) or f"!{name}" in shown(answer)
    assert ":warning:" not in shown(answer)


@pytest.mark.parametrize(
    ("signed", "signature"),
    [(False, None), (True, "v0=" + "0" * 64)],
    ids=["unsigned", "forged"],
)
async def test_unsigned_or_forged_slash_command_changes_nothing(world, signed, signature):
    form = {
        "command": "/user",
        "text": f"role {AGENT} admin",
        "user_id": ADMIN,
        "channel_id": "C0001",
        "team_id": world.slack.team_id,
        "response_url": world.slack.response_url(),
        "trigger_id": world.slack.trigger_id(),
    }
    status, _ = await world.slack.deliver(
        form, kind="slash_commands", signed=signed, signature=signature
    )
    assert status == 401
    assert await world.sql(f"select role from staff_roles where user_id = '{AGENT}'") == []


async def test_refusal_names_the_role_needed_and_changes_nothing(world):
    answer = await slash(world, "/channel", "create news --join JOIN-NEWS")
    assert "needs the manager role" in shown(answer)
    assert "/user role" in shown(answer)
    assert await world.sql("select name from channels") == []


async def test_bad_arguments_answer_usage_and_example(world):
    answer = await slash(world, "/blacklist", "add", user=MANAGER)
    text = shown(answer)
    assert ":warning:" in text
    assert "Usage: `/blacklist add <who>" in text
    assert "Example: `/blacklist add #12 out for 7d" in text


async def test_a_mention_names_the_staff_member(world):
    # With should_escape on, Slack sends mentions as <@U…|name>, HTML-escaped around them.
    answer = await slash(world, "/user", "role <@UNEW0001|nora> manager", user=ADMIN)
    assert ":warning:" not in shown(answer), shown(answer)
    assert await world.sql("select role from staff_roles where user_id = 'UNEW0001'") == [
        ("manager",)
    ]


async def test_link_qr_posts_a_png_in_the_channel_that_decodes_to_the_link(world):
    answer = await slash(world, "/link", "qr telegram JOIN_NEWS")
    assert answer["response_type"] == "in_channel"
    upload = await eventually(
        lambda: [m for m in world.slack.roots("C0001") if m.files], message="the QR upload"
    )
    [file] = upload[-1].files
    assert file["name"].endswith(".png")
    png = world.slack.file_bytes(file["id"])
    decoded = [r.text for r in zxingcpp.read_barcodes(PIL.Image.open(io.BytesIO(png)))]
    assert decoded == [f"https://t.me/{world.tg.bot_username}?start=JOIN_NEWS"]


async def test_slow_command_answers_at_once_and_follows_up_through_the_response_url(world):
    world.slack.delays["files.getUploadURLExternal"] = 3.5
    status, body = await world.slack.slash_command("/link", "qr telegram", user_id=AGENT)
    assert status == 200, body
    answer = json.loads(body)
    assert "Working on `/link`" in answer["text"]
    followed = await eventually(lambda: world.slack.responses, message="the follow-up")
    assert followed[-1]["response_type"] == "in_channel"
    assert "t.me/" in json.dumps(followed[-1])
    assert [m for m in world.slack.roots("C0001") if m.files]


@pytest.mark.parametrize("world", [("webhook", "socket")], indirect=True, ids=["socket"])
async def test_slash_command_over_socket_mode(world):
    await anna_thread(world)
    answer = await slash(world, "/contact", "find anna")
    assert answer["response_type"] == "ephemeral"
    assert "Anna Schmidt" in shown(answer)


# -- ! in a thread -------------------------------------------------------------------------------


async def test_thread_command_is_answered_in_the_thread_and_not_sent_to_the_customer(world):
    root = await anna_thread(world)
    sent_before = len(world.tg.messages_to(ANNA))
    await world.slack.agent_says(root.channel, root.ts, "!assign")
    await eventually(
        lambda: any("Assigned to <@UAGENT>" in t for t in world.texts(root)), message="answer"
    )
    card = world.slack.find(root.channel, root.ts)
    await eventually(lambda: "*Assigned to*\n<@UAGENT>" in shown(card.__dict__), message="card")
    assert len(world.tg.messages_to(ANNA)) == sent_before


async def test_thread_command_delivered_twice_runs_once(world):
    root = await anna_thread(world)
    await world.slack.agent_says(root.channel, root.ts, "!close")
    _, event, *_ = world.slack.deliveries[-1]
    await eventually(lambda: any("closed" in t.lower() for t in world.texts(root)), message="close")
    status, _ = await world.slack.deliver(event, retry_num=1, retry_reason="http_timeout")
    assert status == 200
    await world.slack.wait_idle()
    closing = [t for t in await bot_answers(world, root) if "closed" in t.lower()]
    assert len(closing) == 1, closing


async def test_unknown_thread_command_says_so_and_sends_nothing(world):
    root = await anna_thread(world)
    sent_before = len(world.tg.messages_to(ANNA))
    await world.slack.agent_says(root.channel, root.ts, "!frobnicate now")
    await eventually(
        lambda: any("Unknown command frobnicate" in t for t in world.texts(root)),
        message="the answer",
    )
    assert len(world.tg.messages_to(ANNA)) == sent_before


# -- buttons on the contact card ------------------------------------------------------------------


async def test_close_and_reopen_buttons(world):
    root = await anna_thread(world)
    assert "bridge_thread:close" in card_buttons(root)
    status, _ = await world.slack.press_button(root.channel, root.ts, "bridge_thread:close")
    assert status == 200
    await eventually(
        lambda: "bridge_thread:reopen" in card_buttons(world.slack.find(root.channel, root.ts)),
        message="the Reopen button",
    )
    assert await world.sql("select status from conversations") == [("closed",)]
    await world.slack.press_button(root.channel, root.ts, "bridge_thread:reopen")
    await eventually(
        lambda: "bridge_thread:close" in card_buttons(world.slack.find(root.channel, root.ts)),
        message="the Close button",
    )
    assert await world.sql("select status from conversations") == [("open",)]


async def test_assign_to_me_button_shows_the_assignee_on_the_card(world):
    root = await anna_thread(world)
    await world.slack.press_button(
        root.channel, root.ts, "bridge_thread:assign_me", user_id=MANAGER
    )
    await eventually(
        lambda: "<@UMANAGER>" in str(world.slack.find(root.channel, root.ts).blocks),
        message="the assignee on the card",
    )
    assert await world.sql("select assigned_to from contacts") == [(MANAGER,)]


async def test_block_button_refused_to_an_agent_only_tells_the_agent(world):
    root = await anna_thread(world)
    await world.slack.press_button(root.channel, root.ts, "bridge_thread:block")
    ephemeral = await eventually(lambda: world.slack.ephemerals, message="the refusal")
    assert ephemeral[-1]["user"] == AGENT
    assert ephemeral[-1]["thread_ts"] == root.ts
    assert "needs the manager role" in ephemeral[-1]["text"]
    assert await world.sql("select contact_id from blacklist") == []
    assert not any("needs the manager role" in t for t in world.texts(root))


async def test_block_button_blocks_the_customer_and_the_card_offers_unblock(world):
    root = await anna_thread(world)
    await world.slack.press_button(root.channel, root.ts, "bridge_thread:block", user_id=MANAGER)
    await eventually(
        lambda: "bridge_thread:unblock" in card_buttons(world.slack.find(root.channel, root.ts)),
        message="the Unblock button",
    )
    card = str(world.slack.find(root.channel, root.ts).blocks)
    assert "*Blacklisted*" in card and "for good" in card
    assert await world.sql("select direction, until from blacklist") == [("both", None)]
    await world.slack.press_button(root.channel, root.ts, "bridge_thread:unblock", user_id=MANAGER)
    await eventually(
        lambda: "bridge_thread:block" in card_buttons(world.slack.find(root.channel, root.ts)),
        message="the Block button again",
    )
    assert await world.sql("select contact_id from blacklist") == []

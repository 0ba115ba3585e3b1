"""`/stats` in Slack after real traffic through the fakes: customers write on Telegram and
WhatsApp, an agent answers, a broadcast goes out and one recipient clicks its link; a manager
sees the figures, a PNG chart in the channel and a login link only they see."""

from __future__ import annotations

import io
import re

import PIL.Image
import pytest

from bridge.charts import BLUE, LIGHT_ORANGE, ORANGE
from tests.commands_kit import ADMIN, AGENT, MANAGER, command
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.slash_kit import slash_answer
from tests.stats_kit import SALE, traffic
from tests.world import CHANNEL, start_world, stop_world


@pytest.fixture
async def busy(tmp_path):
    """Two Telegram subscribers, one WhatsApp customer, an agent's answer, a clicked broadcast."""
    world = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    await traffic(world)
    yield world
    await stop_world(world)


async def slash(world, text: str = "", *, user: str = MANAGER) -> dict:
    """Run `/stats text` as Slack does; the answer the caller sees, as JSON."""
    return await slash_answer(world.slack, "/stats", text, user_id=user)


def shown(answer: dict) -> str:
    """Everything a person sees of an answer: the blocks' texts and fields."""
    parts = []
    for block in answer.get("blocks") or []:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts.extend(f["text"] for f in block.get("fields") or [])
    text = "\n".join(parts)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def pixels(png: bytes, color: str) -> int:
    """How many pixels of the image have exactly this colour."""
    image = PIL.Image.open(io.BytesIO(png)).convert("RGB")
    wanted = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
    return sum(n for n, rgb in image.getcolors(maxcolors=1 << 20) or [] if rgb == wanted)


async def test_a_manager_sees_the_figures_of_real_traffic(busy):
    answer = await slash(busy)
    assert answer["response_type"] == "ephemeral"
    text = shown(answer)
    assert "Statistics of the last 14 days" in text
    # Telegram: Anna's and Ben's JOIN-NEWS and Anna's question; two join confirmations and
    # the agent's answer; the newsletter to both. WhatsApp: Cleo's hello.
    assert (
        "*telegram*: 3 in, 3 out, 2 broadcast messages; 2 of 2 contacts active in the last"
        " 30 days" in text
    )
    assert "*whatsapp*: 1 in, 0 out; 1 of 1 contact active in the last 30 days" in text
    assert "*All*: 4 in, 3 out, 2 broadcast messages; 3 of 3 contacts active" in text
    assert "*Channels* (members): news 2" in text
    [(number,)] = await busy.sql("select id from broadcasts")
    assert re.search(
        rf"\*Broadcast #{number}\* \(done, \d+ \w+\): queued 2 → sent 2 → delivered 0 → read 0;"
        r" replied 0; 1 click by 1 recipient, click rate 50%",
        text,
    ), text
    [(code,)] = await busy.sql("select code from short_links")
    assert (
        f"{busy.bridge.url}/s/{code} → {SALE}: 1 click by 1 contact (broadcast #{number})" in text
    )


async def test_the_chart_is_posted_as_a_png_and_the_login_link_only_to_the_caller(busy):
    answer = await slash(busy)
    link = re.search(r"(http://\S+/stats\?token=\S+)", shown(answer))
    assert link, shown(answer)
    assert "valid for 60 minutes" in shown(answer)
    [post] = await eventually(
        lambda: [m for m in busy.slack.roots(CHANNEL) if m.files], message="the chart"
    )
    assert "Statistics of the last 14 days" in post.text
    assert "*telegram*: 3 in" in post.text
    assert "token=" not in post.text  # the channel sees the figures, not the login link
    [file] = post.files
    assert file["name"].startswith("stats-") and file["name"].endswith("-14d.png")
    png = busy.slack.file_bytes(file["id"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = PIL.Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (1200, 630)
    # Today's bars: messages in, out in conversations, and the broadcast on top of them.
    for color in (BLUE, ORANGE, LIGHT_ORANGE):
        assert pixels(png, color) > 500, color


async def test_an_admin_may_ask_too(world):
    reply = await command(world, "stats", user=ADMIN)
    assert reply.ok, reply.text
    assert reply.file is not None and reply.file.mime_type == "image/png"
    assert "No messages and no contacts yet." in reply.lines


async def test_an_agent_is_refused_and_nothing_is_posted(world):
    text = shown(await slash(world, user=AGENT))
    assert "/stats needs the manager role" in text
    assert f"/user role {AGENT} manager" in text
    await world.slack.wait_idle()
    assert not [m for m in world.slack.roots(CHANNEL) if m.files]


@pytest.mark.parametrize(
    ("days", "problem"),
    [
        ("soon", "Soon is not a number of days"),
        ("2.5", "2.5 is not a number of days"),
        ("²", "² is not a number of days"),
        ("0", "The number of days is 1 to 365, not 0"),
        ("-3", "The number of days is 1 to 365, not -3"),
        ("366", "The number of days is 1 to 365, not 366"),
        ("7 30", "Give one number of days, not 7 30"),
    ],
)
async def test_a_bad_number_of_days_is_explained(world, days, problem):
    reply = await command(world, f"stats {days}", user=ADMIN)
    assert not reply.ok and reply.file is None
    assert reply.title == problem
    assert reply.lines == ("Usage: `/stats [days]`", "Example: `/stats 30`")


async def test_the_number_of_days_sets_the_period_of_figures_chart_and_page(world):
    reply = await command(world, "stats 30", user=ADMIN)
    assert reply.ok and reply.title.startswith("Statistics of the last 30 days")
    assert reply.file is not None and reply.file.filename.endswith("-30d.png")
    [(label, value)] = reply.fields
    assert label.startswith("Charts and tables") and "&days=30" in value
    today = await command(world, "stats 1", user=ADMIN)
    assert today.title.startswith("Statistics of today")


async def test_a_matrix_room_gets_the_figures_but_no_login_link(world):
    reply = await command(world, "stats", user=ADMIN, surface="matrix")
    assert reply.ok and reply.fields == ()
    assert "token=" not in reply.text
    assert "Type `/stats` in Slack for a link to the page with charts and tables." in reply.lines


async def test_help_lists_stats(world):
    listed = await command(world, "bridge help", user=AGENT)
    assert any(line.startswith("`/stats`: ") for line in listed.lines)
    own = await command(world, "stats help", user=AGENT)
    assert own.ok and "`/stats [days]`" in own.text

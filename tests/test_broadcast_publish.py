"""Publishing a broadcast: the text posted once on the Facebook page and on X (fake Graph and
X servers), the outcome in the progress message, X's rate limit obeyed, a bad token reported
while the newsletter still goes out, refusals at creation and confirmation, and the composer's
checkboxes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bridge.config import load_settings
from bridge.errors import ConfigError
from bridge.publish import x_length
from tests.commands_kit import MANAGER, command
from tests.fakes.messenger import FakeMessenger
from tests.fakes.x import FakeX
from tests.forms_kit import open_form, submit
from tests.harness import eventually, start_bridge
from tests.world import World, start_world, stop_world

BASE = 9270000
PAGE = "3003"


@dataclass
class Rig:
    world: World
    fb: FakeMessenger
    x: FakeX


@pytest.fixture
async def make_rig(tmp_path):
    """Start a bridge that may publish on the fake page and the fake X; stopped at the end."""
    started: list[Rig] = []

    async def make(
        *,
        facebook: bool = True,
        x: bool = True,
        fb_token: str | None = None,
        x_token: str | None = None,
    ) -> Rig:
        fb, fx = FakeMessenger(page_ids=(PAGE,)), FakeX()
        await fb.start()
        await fx.start()
        sections = {}
        if facebook:
            sections["facebook_page"] = {
                "page_id": PAGE,
                "page_token": fb_token or fb.page_token,
                "api_base": fb.base_url,
            }
        if x:
            sections["x"] = {"access_token": x_token or fx.access_token, "api_base": fx.base_url}
        world = await start_world(tmp_path, sections=sections)
        rig = Rig(world, fb, fx)
        started.append(rig)
        assert (await command(world, f"user role {MANAGER} manager")).ok
        assert (await command(world, "channel create news --join JOIN-NEWS --leave BYE")).ok
        return rig

    yield make
    for rig in started:
        await stop_world(rig.world)
        await rig.fb.stop()
        await rig.x.stop()


async def subscribers(world, count: int) -> list[int]:
    """Telegram customers who joined the channel by keyword."""
    chats = [BASE + n for n in range(count)]
    for chat in chats:
        await world.says(chat, "JOIN-NEWS", first_name=f"Reader{chat % 1000}")
    await eventually(lambda: all(world.tg.messages_to(c) for c in chats), message="joined")
    return chats


def newsletters(world, chat: int) -> list[str]:
    return [m.text for m in world.tg.messages_to(chat) if m.text and "Sale" in m.text]


async def new(world, line: str) -> int:
    reply = await command(world, f"broadcast new {line}", user=MANAGER)
    assert reply.ok, reply.text
    return int(reply.title.split("#")[1].split()[0])


async def confirm(world, number: int) -> None:
    reply = await command(world, f"broadcast confirm {number}", user=MANAGER)
    assert reply.ok, reply.text


async def summary(world, number: int, *words: str, timeout: float = 20.0) -> str:
    """The progress message once it is done and says all of `words`."""

    def done():
        posted = [m for m in world.slack.roots("C0001") if f"Broadcast #{number}" in m.text]
        last = posted[-1].text if posted else ""
        return "is done" in last and all(w in last for w in words) and last

    return await eventually(done, timeout=timeout, message=f"the summary with {words}")


async def test_published_once_on_the_page_and_on_x_with_the_post_ids(make_rig):
    rig = await make_rig()
    world = rig.world
    chats = await subscribers(world, 2)
    reply = await command(
        world,
        'broadcast new news --publish facebook,x "Sale: https://shop.example.org/sale now!"',
        user=MANAGER,
    )
    assert reply.ok, reply.text
    assert "It is also published, as written, on Facebook page 3003 and X" in reply.lines
    number = int(reply.title.split("#")[1].split()[0])
    [(text,)] = await world.sql("select text from broadcasts")
    await confirm(world, number)
    await eventually(lambda: rig.fb.feed and rig.x.posts, timeout=15, message="both posts")
    # The broadcast's own short link: no recipient's token in a public post.
    link = text.split()[1]
    assert link.startswith(f"{world.bridge.url}/s/") and link.count("/") == 4
    assert rig.fb.posts_on(PAGE) == [text]
    assert rig.x.texts() == [text]
    fb_id, x_id = rig.fb.feed[0]["_id"], rig.x.posts[0]["id"]
    page, post = fb_id.split("_")
    shown = await summary(world, number, "published on Facebook: https", "published on X: https")
    assert (
        f"published on Facebook: https://www.facebook.com/{page}/posts/{post} (post {fb_id})"
        in shown
    )
    assert f"published on X: https://x.com/i/web/status/{x_id} (post {x_id})" in shown
    assert all(newsletters(world, c) for c in chats)
    status = await command(world, f"broadcast status {number}")
    assert f"published on X: https://x.com/i/web/status/{x_id} (post {x_id})" in status.lines

    again = await command(world, f"broadcast confirm {number}", user=MANAGER)
    assert not again.ok
    settings, url = world.bridge.settings, world.bridge.url
    await world.bridge.stop()
    world.bridge = await start_bridge(settings, port=int(url.rsplit(":", 1)[1]))
    await asyncio.sleep(1.5)
    assert len(rig.fb.feed) == 1 and len(rig.x.posts) == 1
    assert rig.x.refused == [] and rig.fb.feed_rejected == []


async def test_a_post_whose_answer_was_lost_is_not_posted_again(make_rig):
    rig = await make_rig()
    world = rig.world
    rig.x.lose_answers = 1
    rig.fb.lose_feed_answers = 1
    number = await new(world, 'news --publish facebook,x "Sale on Sunday"')
    await confirm(world, number)
    shown = await summary(
        world, number, "published on Facebook: https", "published on X (an earlier", timeout=30
    )
    assert rig.fb.posts_on(PAGE) == ["Sale on Sunday"] and rig.x.texts() == ["Sale on Sunday"]
    # Facebook: found among the page's newest posts; X: its duplicate refusal says it went out.
    assert f"(post {rig.fb.feed[0]['_id']})" in shown
    assert "published on X (an earlier attempt posted it" in shown
    assert rig.x.statuses() == [403]


async def test_x_answering_429_is_tried_again_after_its_reset(make_rig):
    rig = await make_rig(facebook=False)
    world = rig.world
    reset = rig.x.exhaust(2.0)
    number = await new(world, 'news --publish x "Sale in two seconds"')
    await confirm(world, number)
    await eventually(lambda: rig.x.posts, timeout=20, message="the post after the reset")
    assert rig.x.statuses() == [429]  # once: then the bridge waited for the reset
    assert rig.x.posts[0]["at"] >= reset
    await summary(world, number, f"(post {rig.x.posts[0]['id']})")


async def test_a_bad_token_is_reported_while_the_newsletter_goes_out(make_rig, caplog):
    caplog.set_level(logging.DEBUG)
    rig = await make_rig(fb_token="fb-secret-wrong-1", x_token="x-secret-wrong-2")
    world = rig.world
    chats = await subscribers(world, 2)
    number = await new(world, 'news --publish facebook,x "Sale for everyone"')
    await confirm(world, number)
    shown = await summary(world, number, "not published on Facebook", "not published on X")
    assert "renew x.access_token" in shown and "X refused the access token" in shown
    assert "the page token was rejected" in shown and "facebook_page.page_token" in shown
    assert "2 of 2 delivered to the platforms" in shown
    assert all(newsletters(world, c) == ["Sale for everyone"] for c in chats)
    assert rig.fb.feed == [] and rig.x.posts == []
    assert rig.x.statuses() == [401]
    for secret in ("fb-secret-wrong-1", "x-secret-wrong-2"):
        assert secret not in shown and secret not in caplog.text


async def test_a_text_too_long_for_x_is_shown_and_cannot_be_confirmed(make_rig):
    rig = await make_rig()
    world = rig.world
    text = "Sale! " + "a" * 290
    reply = await command(world, f'broadcast new news --publish facebook,x "{text}"', user=MANAGER)
    assert reply.ok, reply.text
    assert any(
        line.startswith(
            "*Cannot publish on X*: too long for X: it counts 296 characters and X allows 280"
        )
        for line in reply.lines
    ), reply.text
    number = int(reply.title.split("#")[1].split()[0])
    refused = await command(world, f"broadcast confirm {number}", user=MANAGER)
    assert not refused.ok
    assert "296 characters and X allows 280" in refused.text
    assert "shorten it by 16" in refused.text and "without x in --publish" in refused.text
    assert f"/broadcast cancel {number}" in refused.text
    assert await world.sql("select state from broadcasts") == [("draft",)]
    # Links count 23 each, however long; a page takes the long text.
    long_link = await new(world, f'news --publish x "Sale: https://shop.example.org/{"x" * 300}"')
    await confirm(world, long_link)
    only_page = await new(world, f'news --publish facebook "{text}"')
    await confirm(world, only_page)
    await eventually(lambda: rig.fb.feed and rig.x.posts, timeout=15, message="both posts")


def test_x_counts_links_as_23_and_wide_characters_twice():
    assert x_length("a" * 280) == 280
    assert x_length("see https://example.org/" + "p" * 200 + ".") == 4 + 23 + 1
    assert x_length("shop.example.org is open") == 23 + 8
    assert x_length("セール") == 6
    assert x_length("Sale 🎉") == 7


async def test_placeholders_are_refused_for_a_public_post(make_rig):
    rig = await make_rig()
    reply = await command(
        rig.world, 'broadcast new news --publish x "Hello {FIRSTNAME}, sale!"', user=MANAGER
    )
    assert not reply.ok
    assert "A public post cannot be personal" in reply.text and "{FIRSTNAME}" in reply.text
    assert await rig.world.sql("select count(*) from broadcasts") == [(0,)]


async def test_targets_that_are_not_configured_are_refused(make_rig):
    rig = await make_rig(x=False)
    reply = await command(rig.world, 'broadcast new news --publish facebook,x "Sale"', user=MANAGER)
    assert not reply.ok
    assert reply.title == (
        "Publishing to X is not configured: set [x] access_token (see bridge.example.toml)"
    )
    unknown = await command(rig.world, 'broadcast new news --publish myspace "Sale"', user=MANAGER)
    assert not unknown.ok and "--publish takes facebook, x" in unknown.text
    assert await rig.world.sql("select count(*) from broadcasts") == [(0,)]


async def test_a_scheduled_broadcast_publishes_at_its_time_after_a_restart(make_rig):
    rig = await make_rig()
    world = rig.world
    at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    number = await new(world, f'news --at "{at.isoformat()}" --publish x "Sale later"')
    await confirm(world, number)
    settings, url = world.bridge.settings, world.bridge.url
    await world.bridge.stop()
    await asyncio.sleep(0.5)
    world.bridge = await start_bridge(settings, port=int(url.rsplit(":", 1)[1]))
    await eventually(lambda: rig.x.posts, timeout=20, message="the post at its time")
    assert rig.x.posts[0]["at"] >= at.timestamp() and rig.x.texts() == ["Sale later"]
    await summary(world, number, "published on X: https")


async def test_the_slack_composer_offers_the_configured_targets_as_checkboxes(make_rig):
    rig = await make_rig(x=False)
    world = rig.world
    await subscribers(world, 1)
    world.slack.add_user(MANAGER, "Max Manager", "max")
    view = await open_form(world, "new", command="/broadcast")
    block = next(b for b in view["blocks"] if b["block_id"] == "publish")
    assert block["element"]["type"] == "checkboxes" and block["optional"]
    assert [o["value"] for o in block["element"]["options"]] == ["facebook"]
    status, body = await submit(world, view, to=["news"], text="Sale today", publish=["facebook"])
    assert status == 200 and not body, body
    preview = world.slack.ephemerals[-1]["text"]
    assert "also published, as written, on Facebook page 3003" in preview
    assert await world.sql("select text, publish from broadcasts") == [
        ("Sale today", '["facebook"]')
    ]


def test_a_page_id_without_its_token_stops_the_start():
    with pytest.raises(ConfigError, match=r"facebook_page\.page_token"):
        load_settings(None, env={"BRIDGE_FACEBOOK_PAGE__PAGE_ID": PAGE})
    settings = load_settings(None, env={"BRIDGE_X__ACCESS_TOKEN": "x-secret-token-3"})
    assert settings.x.enabled and "x-secret-token-3" not in repr(settings)


async def test_post_outcomes_are_kept_once_per_target(database):
    now = datetime.now(UTC)

    def create(tx):
        return tx.broadcasts.create(
            by="max",
            at=now,
            surface="slack",
            channel="C0001",
            text="Sale",
            template=None,
            file_id=None,
            channel_ids=[],
            platforms=["telegram"],
            scheduled_at=None,
            publish=["facebook", "x"],
        )

    number = await database.write_tx(create)
    first = await database.write_tx(
        lambda tx: tx.broadcasts.record_post(
            number, "x", "posted", at=now, post_id="1", url="https://x.com/i/web/status/1"
        )
    )
    again = await database.write_tx(
        lambda tx: tx.broadcasts.record_post(number, "x", "failed", at=now, reason="late")
    )
    assert (first, again) == (True, False)
    b = await database.read_tx(lambda tx: tx.broadcasts.get(number))
    assert b.publish == ("facebook", "x")
    posts = await database.read_tx(lambda tx: tx.broadcasts.posts(number))
    assert list(posts) == ["x"] and posts["x"].state == "posted" and posts["x"].post_id == "1"

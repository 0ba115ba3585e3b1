"""Request forgery through the bridge: a manager (or a manager's API key, or a bot, or a webhook
subscription) names an internal address, and the bridge must neither reach it nor pass on what
it answered. The internal service below listens on a loopback port that no setting allows; the
fake bot's own host:port is the only internal destination the allow-list names."""

from __future__ import annotations

import pytest

from tests.api_kit import Api, make_key
from tests.commands_kit import MANAGER, command
from tests.harness import eventually
from tests.security.outbound_kit import SECRET, guarded_rig

ANNA = 9130001


@pytest.fixture
async def rig(tmp_path):
    async with guarded_rig(tmp_path) as running:
        yield running


def customer_saw(world, chat_id: int) -> str:
    return " ".join(
        f"{m.text or ''} {m.caption or ''} {m.file_bytes or b''!r}"
        for m in world.tg.messages_to(chat_id)
    )


def loopback_forms(port: int) -> list[str]:
    """The internal service's address, as an attacker would write it."""
    return [
        f"http://127.0.0.1:{port}/admin",
        f"http://2130706433:{port}/admin",
        f"http://0x7f.1:{port}/admin",
        f"http://0177.0.0.1:{port}/admin",
        f"http://127.1:{port}/admin",
        f"http://public.example.com@127.0.0.1:{port}/admin",
        f"http://[::ffff:127.0.0.1]:{port}/admin",
        f"http://localhost:{port}/admin",
    ]


@pytest.mark.parametrize("word", ["bot", "post"])
async def test_rule_command_cannot_point_a_web_action_at_a_loopback_service(rig, word):
    world, internal, _, _ = rig
    for number, url in enumerate(loopback_forms(internal.port)):
        reply = await command(
            world, f'rule add r{number} always --do "{word}: {url}"', user=MANAGER
        )
        assert not reply.ok, (url, reply.text)
        assert "loopback address" in reply.text, (url, reply.text)
    assert await world.sql("select count(*) from rules") == [(0,)]
    assert internal.requests == []


async def test_refusal_says_which_rule_of_the_guard_refused(rig):
    world, _, _, resolver = rig
    resolver.names["metadata.google.internal"] = "169.254.169.254"
    cases = {
        "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address",
        "http://metadata.google.internal/computeMetadata/v1/": (
            "metadata.google.internal resolves to 169.254.169.254, a link-local address"
        ),
        "http://10.0.0.8/": "10.0.0.8 is a private address",
        "http://100.64.0.1/": "100.64.0.1 is a shared address",
        "http://0/": "0 stands for 0.0.0.0, the unspecified address",
        "http://[64:ff9b::a9fe:a9fe]/": "link-local address (169.254.169.254 inside it)",
    }
    for number, (url, words) in enumerate(cases.items()):
        reply = await command(world, f'rule add m{number} always --do "bot: {url}"', user=MANAGER)
        assert not reply.ok and words in reply.text, (url, reply.text)


async def test_answer_file_cannot_fetch_from_a_loopback_service(rig):
    world, internal, _, _ = rig
    for number, url in enumerate(loopback_forms(internal.port)):
        reply = await command(
            world, f'rule add f{number} always --do "answer-file: {url}"', user=MANAGER
        )
        assert not reply.ok and "loopback address" in reply.text, (url, reply.text)
    assert await world.sql("select count(*) from rule_files") == [(0,)]
    assert internal.requests == []


async def test_api_key_cannot_point_rules_or_webhooks_at_a_loopback_service(rig):
    world, internal, _, _ = rig
    api = Api(world)
    manager = await make_key(world, "editor", "manager")
    admin = await make_key(world, "owner", "admin")
    for number, action in enumerate(
        [
            {"do": "bot", "target": internal.url()},
            {"do": "post", "target": f"http://2130706433:{internal.port}/x"},
            {"do": "answer-file", "url": internal.url("/file.pdf")},
        ]
    ):
        body = {"name": f"api{number}", "keyword_type": "always", "actions": [action]}
        refused = await api.post("/rules", key=manager, body=body)
        assert refused.status == 422, refused.body
        assert "loopback address" in refused.error["message"], refused.body
    hook = await api.post(
        "/webhooks", key=admin, body={"url": internal.url("/events"), "events": ["all"]}
    )
    assert hook.status == 422 and "loopback address" in hook.error["message"], hook.body
    assert await world.sql("select count(*) from rules") == [(0,)]
    assert await world.sql("select count(*) from webhooks") == [(0,)]
    assert internal.requests == []


async def test_editing_a_rule_cannot_point_it_at_a_loopback_service(rig):
    world, internal, bot, _ = rig
    api = Api(world)
    manager = await make_key(world, "editor", "manager")
    reply = await command(world, f'rule add r1 always --do "bot: {bot.url("/bot")}"', user=MANAGER)
    assert reply.ok, reply.text
    [(rule_id, before)] = await world.sql("select id, actions from rules")
    for url in loopback_forms(internal.port):
        reply = await command(world, f'rule edit r1 --do "post: {url}"', user=MANAGER)
        assert not reply.ok and "loopback address" in reply.text, (url, reply.text)
        changed = await api.patch(
            f"/rules/{rule_id}",
            key=manager,
            body={"actions": [{"do": "bot", "target": url}]},
        )
        assert changed.status == 422, (url, changed.body)
        assert "loopback address" in changed.error["message"], (url, changed.body)
    assert await world.sql("select actions from rules") == [(before,)]
    assert internal.requests == []


async def test_webhook_command_cannot_subscribe_a_loopback_service(rig):
    world, internal, _, _ = rig
    reply = await command(world, f"webhook add http://[::1]:{internal.port}/events all")
    assert not reply.ok and "::1 is a loopback address" in reply.text, reply.text
    reply = await command(world, f"webhook add {internal.url('/events')} all")
    assert not reply.ok and "127.0.0.1 is a loopback address" in reply.text, reply.text
    assert await world.sql("select count(*) from webhooks") == [(0,)]


async def test_dns_rebinding_is_refused_where_the_bot_rule_connects(rig):
    world, internal, _, resolver = rig
    resolver.names["rebind.example.com"] = "93.184.216.34"  # public when the rule is saved
    url = f"http://rebind.example.com:{internal.port}/admin"
    reply = await command(world, f'rule add rebind always --do "bot: {url}"', user=MANAGER)
    assert reply.ok, reply.text
    resolver.names["rebind.example.com"] = "127.0.0.1"  # and loopback when it fires
    await world.says(ANNA, "hello", first_name="Anna")
    root = await world.thread_of(ANNA)
    [notice] = await world.notices(root, "the web forward failed", message="the refusal")
    assert "rebind.example.com resolves to 127.0.0.1, a loopback address" in notice
    # A refusal is permanent: the row failed at once and is not tried again for 24 hours.
    rows = await world.sql("select state, attempts from outbox where kind = 'rule.http'")
    assert rows == [("failed", 1)], rows
    assert internal.requests == []
    assert SECRET not in customer_saw(world, ANNA)


async def test_bot_answer_media_url_cannot_fetch_from_a_loopback_service(rig):
    world, internal, bot, _ = rig
    bot.bot_answer = {"text": "Here you go", "media": [internal.url("/secret.txt")]}
    reply = await command(
        world, f'rule add media always --do "bot: {bot.url("/bot")}"', user=MANAGER
    )
    assert reply.ok, reply.text
    await world.says(ANNA, "send me the file", first_name="Anna")
    root = await world.thread_of(ANNA)
    [notice] = await world.notices(root, "the web forward failed", message="the refusal")
    assert "127.0.0.1 is a loopback address" in notice
    assert internal.requests == []
    assert SECRET not in customer_saw(world, ANNA)


async def test_a_redirect_from_an_allowed_host_to_loopback_is_not_followed(rig):
    world, internal, bot, _ = rig
    bot.redirects["secret"] = internal.url("/secret.pdf")
    reply = await command(
        world, f'rule add hop always --do "answer-file: {bot.url("/go/secret")}"', user=MANAGER
    )
    assert not reply.ok and "127.0.0.1 is a loopback address" in reply.text, reply.text
    assert bot.gets == ["/go/secret"]  # the allowed host was asked, the internal one never
    reply = await command(
        world, f'rule add hop2 always --do "bot: {bot.url("/go/secret")}"', user=MANAGER
    )
    assert reply.ok, reply.text
    await world.says(ANNA, "hello", first_name="Anna")
    root = await world.thread_of(ANNA)
    [notice] = await world.notices(root, "the web forward failed", message="the refusal")
    assert "redirects are not followed" in notice
    assert await world.sql("select count(*) from rule_files") == [(0,)]
    assert internal.requests == []
    assert SECRET not in customer_saw(world, ANNA)


async def test_webhook_delivery_to_a_rebound_name_is_refused_for_good(rig):
    world, internal, _, resolver = rig
    resolver.names["crm.example.com"] = "93.184.216.34"
    reply = await command(
        world, f"webhook add http://crm.example.com:{internal.port}/events message.received"
    )
    assert reply.ok, reply.text
    resolver.names["crm.example.com"] = "127.0.0.1"
    await world.says(ANNA, "hello", first_name="Anna")

    async def finished():
        return await world.sql(
            "select state, attempts, last_error from outbox"
            " where kind = 'webhook.deliver' and state != 'pending'"
        )

    [(state, attempts, error)] = await eventually(finished, message="the delivery's end")
    assert (state, attempts) == ("failed", 1)
    assert "crm.example.com resolves to 127.0.0.1, a loopback address" in error
    assert internal.requests == []


async def test_allow_listed_internal_bot_still_answers(rig):
    world, internal, bot, _ = rig
    for number, url in enumerate([bot.url("/bot"), f"http://bots.internal:{bot.port}/bot"]):
        reply = await command(
            world, f'rule add b{number} contain "hi{number}" --do "bot: {url}"', user=MANAGER
        )
        assert reply.ok, reply.text
    await world.says(ANNA, "hi0", first_name="Anna")
    await eventually(lambda: "Bot says hi" in customer_saw(world, ANNA), message="answer 1")
    await world.says(ANNA, "hi1", first_name="Anna")
    await eventually(
        lambda: customer_saw(world, ANNA).count("Bot says hi") == 2, message="answer 2"
    )
    # The allow-list names the bot's port only: the same host on another port stays refused.
    reply = await command(world, f'rule add x always --do "bot: {internal.url()}"', user=MANAGER)
    assert not reply.ok and "loopback address" in reply.text
    assert internal.requests == []

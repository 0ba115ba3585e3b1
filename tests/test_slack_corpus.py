"""Slack's file shares, thread broadcasts, apps' posts and deletions, on the samples of what
Slack sends (tests/corpus/slack): what the connector's parser makes of each, and what a
customer gets when the fake Slack sends them as the samples are."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.types import MediaKind, StaffDelete, StaffEdit, StaffMessage
from connectors.slack_events import message_words, parse_event
from tests.harness import eventually

TESTS = Path(__file__).parent
CORPUS = TESTS / "corpus" / "slack"
SAMPLES = sorted(path.stem for path in CORPUS.glob("*.json"))
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def event_of(name: str) -> dict[str, Any]:
    event = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))["event"]
    assert isinstance(event, dict)
    return event


# -- the corpus -------------------------------------------------------------------------------


def test_every_sample_is_named_in_the_readme_and_read_by_a_test():
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"^\| `([a-z_]+)\.json` \|", readme, re.MULTILINE)
    assert sorted(named) == SAMPLES
    modules = [p.read_text(encoding="utf-8") for p in TESTS.rglob("test_*.py")]
    unread = [name for name in SAMPLES if not any(name in text for text in modules)]
    assert unread == []


# -- what the parser makes of each sample ---------------------------------------------------


def test_a_file_share_in_a_thread_is_a_reply_with_the_file_and_its_comment():
    event = event_of("event_message_file_share_in_thread")
    parsed = parse_event(event)
    assert isinstance(parsed, StaffMessage)
    assert parsed.thread == "C043YJGBY49/1664216109.798919"
    assert parsed.ref == "C043YJGBY49/1670631527.874149"
    assert parsed.author == "U043H11ES4V"
    assert parsed.text == "message message message"
    [file] = parsed.attachments
    assert file.kind == MediaKind.DOCUMENT
    assert file.ref == event["files"][0]["url_private_download"]
    assert (file.filename, file.mime_type, file.size) == ("namenamename.txt", "text/plain", 12)


def test_a_thread_broadcast_is_a_reply_in_its_thread():
    parsed = parse_event(event_of("event_thread_broadcast"))
    assert isinstance(parsed, StaffMessage)
    assert parsed.thread == "C123ABC456/1673464730.703009"
    assert parsed.ref == "C123ABC456/1673464745.620769"
    assert parsed.author == "U123ABC456"
    assert parsed.text == "broadcasting this reply"


def test_the_change_slack_sends_after_a_broadcast_keeps_its_words():
    event = event_of("event_message_changed_thread_broadcast")
    parsed = parse_event(event)
    # The pipeline stores an edit only when the words change (BridgePipeline.staff_edit):
    # this one names the broadcast with the words it already has.
    assert isinstance(parsed, StaffEdit)
    assert parsed.ref == "C02N85E82LV/1694190803.567119"
    assert parsed.text == message_words(event["previous_message"])
    assert parsed.text == "This is a message with broadcast"


@pytest.mark.parametrize("name", ["event_message_from_the_bridge", "event_bot_message_other_app"])
def test_an_apps_post_is_not_a_staff_message(name):
    assert parse_event(event_of(name)) is None


def test_a_deletion_names_the_deleted_message_and_its_author():
    parsed = parse_event(event_of("event_message_deleted"))
    assert isinstance(parsed, StaffDelete)
    assert parsed.ref == "C043YJGBY49/1663966382.046509"
    assert parsed.author == "U043H11ES4V"


# -- what the customer gets -------------------------------------------------------------------


# A file share and a deletion run end to end in tests/test_media.py and tests/test_edits.py,
# on the events the fake builds from these samples.


async def test_a_broadcast_reply_reaches_the_customer_once_and_unedited(world):
    await world.says(111, "is it shipped?")
    root = await world.thread_of(111)
    await world.slack.agent_broadcasts(root.channel, root.ts, "Shipped today")
    await world.slack.agent_says(root.channel, root.ts, "Anything else?")
    await eventually(lambda: len(world.tg.messages_to(111)) == 2, message="both replies")
    assert [m.text for m in world.tg.messages_to(111)] == ["Shipped today", "Anything else?"]
    # The message_changed Slack follows the broadcast with was read before the next reply,
    # and left the stored reply as it was: nothing to send the customer again.
    rows = "select text, edited_at from messages where direction = 'out' order by id"
    assert await world.sql(rows) == [("Shipped today", None), ("Anything else?", None)]


async def test_an_apps_post_in_the_thread_never_reaches_the_customer(world):
    world.slack.echo_bot_messages = True
    await world.says(111, "hello")
    root = await world.thread_of(111)
    await world.slack.app_posts(root.channel, root.ts, "Build 42 passed")
    await world.slack.agent_says(root.channel, root.ts, "Hi there")
    await eventually(lambda: world.tg.messages_to(111), message="the reply")
    await world.slack.wait_idle()
    assert [m.text for m in world.tg.messages_to(111)] == ["Hi there"]


# -- the fake Slack sends them as the samples are -------------------------------------------

# What a sample has that the fake's message may not (no blocks, no icon, no client id), and
# what the fake's messages may have beside a sample's fields: `team` (a person's message
# carries it, as in event_message_rich_text.json) and the bridge's own `metadata`.
NOT_ALWAYS = {"blocks", "icons", "client_msg_id", "thread_ts", "parent_user_id"}
BESIDE = {"team", "metadata", "thread_ts", "parent_user_id"}
KINDS = {
    ("file_share", False): "event_message_file_share_in_thread",
    ("thread_broadcast", False): "event_thread_broadcast",
    ("message_changed", False): "event_message_changed_thread_broadcast",
    ("bot_message", True): "event_bot_message_other_app",
    (None, True): "event_message_from_the_bridge",
    ("message_deleted", False): "event_message_deleted",
}


async def test_the_fake_sends_each_kind_with_the_fields_of_its_sample(world):
    world.slack.echo_bot_messages = True  # the thread's first post, the bridge's, echoed back
    await world.says(111, "hi")
    root = await world.thread_of(111)
    slack = world.slack
    await slack.agent_says(root.channel, root.ts, "a", files=[("a.png", PNG, "image/png")])
    await slack.agent_broadcasts(root.channel, root.ts, "b")
    await slack.app_posts(root.channel, root.ts, "c")
    await slack.agent_deletes(root.channel, await slack.agent_says(root.channel, root.ts, "d"))
    await slack.wait_idle()
    seen = set()
    for _, body, *_ in slack.deliveries:
        event = body["event"]
        name = KINDS.get((event.get("subtype"), "bot_id" in event))
        if name is None:
            continue
        seen.add(name)
        fields, expected = set(event), set(event_of(name))
        assert fields - expected <= BESIDE, name
        assert expected - fields <= NOT_ALWAYS, name
    assert seen == set(KINDS.values())

"""The fake Slack's events of files, broadcasts, apps' posts and deletions, built from the
samples of what Slack sends (tests/corpus/slack, each named with its source in the README).

Each builder starts from its sample's event and fills in the fake's own values. A field that
belongs to the sample's own message only (its thread, blocks, files, root…) is left out when
the fake's message has none, so nothing of another message travels along.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.fakes.meta import corpus_sample

FILE_SHARE = "event_message_file_share_in_thread"
BROADCAST = "event_thread_broadcast"
BROADCAST_CHANGED = "event_message_changed_thread_broadcast"
OWN_POST = "event_message_from_the_bridge"
OTHER_APP = "event_bot_message_other_app"
DELETED = "event_message_deleted"

# The sample's own message: never carried over into another one.
_OWN = (
    "thread_ts",
    "parent_user_id",
    "blocks",
    "client_msg_id",
    "files",
    "root",
    "username",
    "icons",
    "user",
    "team",
    "bot_profile",
    "upload",
)
# Where a message event says where it was posted.
_PLACE = ("channel", "channel_type", "event_ts")


def sample_event(name: str) -> dict[str, Any]:
    """A fresh copy of the `event` of the sample `tests/corpus/slack/<name>.json`."""
    event = corpus_sample("slack", name)["event"]
    if not isinstance(event, dict):
        msg = f"the slack sample {name} has no event"
        raise TypeError(msg)
    return event


def _filled(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    event = sample_event(name)
    for key in _OWN:
        if key not in values:
            event.pop(key, None)
    event.update(values)
    return event


def file_share_event(values: Mapping[str, Any]) -> dict[str, Any]:
    """A person's message with files, as the file share sample: `"subtype": "file_share"`."""
    return _filled(FILE_SHARE, {**values, "subtype": "file_share"})


def bot_post_event(
    values: Mapping[str, Any], *, bot_user_id: str, team_id: str, name: str
) -> dict[str, Any]:
    """The event of a post the app made, echoed back to it.

    A post under a name of its own (chat:write.customize's `username`) arrives as another
    app's sample does, a `bot_message` with `username`; any other as the bridge's own sample,
    with the app's bot user in `user` and its `bot_profile`.
    """
    if values.get("username") is not None:
        return _filled(OTHER_APP, {**values, "subtype": "bot_message"})
    profile = sample_event(OWN_POST)["bot_profile"]
    profile.update(id=values["bot_id"], app_id=values["app_id"], team_id=team_id, name=name)
    own = {k: v for k, v in values.items() if k != "subtype"}
    event = _filled(OWN_POST, {**own, "user": bot_user_id, "team": team_id, "bot_profile": profile})
    event.pop("subtype", None)
    return event


def thread_broadcast_event(
    values: Mapping[str, Any], root: Mapping[str, Any], reply_users: list[str]
) -> dict[str, Any]:
    """A thread reply also sent to the channel, with the thread's first message in `root`
    and its reply summary (the sample's `reply_count`, `latest_reply`, `reply_users`…)."""
    summary = sample_event(BROADCAST)["root"]
    for key in _OWN:
        if key not in root:
            summary.pop(key, None)
    summary.update(root)
    summary.update(
        thread_ts=root["ts"],
        reply_count=len(reply_users),
        reply_users_count=len(set(reply_users)),
        latest_reply=values["ts"],
        reply_users=list(dict.fromkeys(reply_users)),
    )
    return _filled(BROADCAST, {**values, "subtype": "thread_broadcast", "root": summary})


def broadcast_changed_event(broadcast: Mapping[str, Any], event_ts: str) -> dict[str, Any]:
    """The `message_changed` Slack sends right after a broadcast: the broadcast as `message`
    and as `previous_message`, its text unchanged."""
    event = sample_event(BROADCAST_CHANGED)
    message = {k: v for k, v in broadcast.items() if k not in _PLACE}
    event.update(
        message=message,
        previous_message=dict(message),
        channel=broadcast["channel"],
        channel_type=broadcast["channel_type"],
        event_ts=event_ts,
        ts=event_ts,
    )
    return event


def deleted_event(
    previous: Mapping[str, Any], *, channel: str, channel_type: str, event_ts: str
) -> dict[str, Any]:
    """A deletion as the sample: `message_deleted` with the message as it was."""
    event = sample_event(DELETED)
    event.update(
        channel=channel,
        previous_message={k: v for k, v in previous.items() if k not in _PLACE},
        deleted_ts=previous["ts"],
        ts=event_ts,
        event_ts=event_ts,
        channel_type=channel_type,
    )
    return event

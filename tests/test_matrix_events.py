"""Matrix timeline events become staff events, commands or nothing (the pure parser)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.staffio import Reply
from bridge.types import MediaKind, StaffDelete, StaffEdit, StaffMessage
from connectors.matrix_events import CommandLine, parse_event
from connectors.matrix_render import reply_html

ROOM = "!support:localhost"
BOT = "@bridge:localhost"
ROOT = "$root"


def message(content: dict, *, sender: str = "@anna:localhost", event_id: str = "$e1") -> dict:
    return {
        "type": "m.room.message",
        "sender": sender,
        "event_id": event_id,
        "origin_server_ts": 1_764_000_000_000,
        "content": content,
    }


def in_thread(body: str, **extra) -> dict:
    return {
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": ROOT,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": ROOT},
        },
        **extra,
    }


def test_thread_reply_is_a_staff_message_of_that_thread():
    parsed = parse_event(ROOM, message(in_thread("Your parcel left today")), BOT)
    assert isinstance(parsed, StaffMessage)
    assert parsed.thread == f"{ROOM}/{ROOT}"
    assert parsed.ref == f"{ROOM}/$e1"
    assert parsed.author == "@anna:localhost"
    assert parsed.text == "Your parcel left today"


def test_the_bots_own_events_are_ignored():
    assert parse_event(ROOM, message(in_thread("hi"), sender=BOT), BOT) is None


def test_talk_in_the_room_outside_threads_is_not_for_customers():
    assert parse_event(ROOM, message({"msgtype": "m.text", "body": "lunch?"}), BOT) is None


def test_notices_of_other_bots_are_ignored():
    assert parse_event(ROOM, message(in_thread("beep", msgtype="m.notice")), BOT) is None


def test_a_bang_word_in_a_thread_is_a_command_of_that_thread():
    parsed = parse_event(ROOM, message(in_thread("!assign @max:localhost")), BOT)
    assert parsed == CommandLine(
        ROOM, f"{ROOM}/{ROOT}", f"{ROOM}/$e1", "@anna:localhost", "assign @max:localhost"
    )


def test_a_bang_word_in_the_room_is_a_command_without_a_thread():
    parsed = parse_event(ROOM, message({"msgtype": "m.text", "body": "!contact find anna"}), BOT)
    assert isinstance(parsed, CommandLine)
    assert parsed.thread is None and parsed.text == "contact find anna"


def test_an_edit_names_the_edited_event_and_the_new_text():
    content = {
        "msgtype": "m.text",
        "body": "* fixed",
        "m.new_content": {"msgtype": "m.text", "body": "fixed"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$e1"},
    }
    parsed = parse_event(ROOM, message(content, event_id="$e2"), BOT)
    assert parsed == StaffEdit(
        surface="matrix",
        ref=f"{ROOM}/$e1",
        text="fixed",
        author="@anna:localhost",
        event=f"{ROOM}/$e2",
    )


def test_a_redaction_deletes_the_event_in_old_and_new_room_versions():
    old = {"type": "m.room.redaction", "sender": "@a:x", "event_id": "$r", "redacts": "$e1"}
    new = {**old, "redacts": None, "content": {"redacts": "$e1"}}
    old["content"] = {}
    for event in (old, new):
        assert parse_event(ROOM, event, BOT) == StaffDelete(
            surface="matrix", ref=f"{ROOM}/$e1", author="@a:x", event=f"{ROOM}/$r"
        )


def test_a_file_in_a_thread_is_an_attachment_with_its_mxc_uri():
    content = in_thread(
        "invoice.pdf",
        msgtype="m.file",
        url="mxc://localhost/abc",
        info={"mimetype": "application/pdf", "size": 1234},
    )
    parsed = parse_event(ROOM, message(content), BOT)
    assert isinstance(parsed, StaffMessage)
    [file] = parsed.attachments
    assert (file.kind, file.ref, file.filename, file.mime_type, file.size) == (
        MediaKind.DOCUMENT,
        "mxc://localhost/abc",
        "invoice.pdf",
        "application/pdf",
        1234,
    )
    assert parsed.text == ""


def test_an_image_with_a_caption_keeps_the_caption_as_text():
    content = in_thread(
        "Here it is", msgtype="m.image", url="mxc://localhost/img", filename="photo.jpg"
    )
    parsed = parse_event(ROOM, message(content), BOT)
    assert isinstance(parsed, StaffMessage)
    assert parsed.text == "Here it is" and parsed.attachments[0].kind is MediaKind.IMAGE


def test_reply_html_escapes_and_renders_code_and_bold():
    body, formatted = reply_html(
        Reply(title="Usage <x>", lines=("`/contact show <who>` is *it*",), ok=False)
    )
    assert formatted == (
        "<b>⚠️ Usage &lt;x&gt;</b><br><code>/contact show &lt;who&gt;</code> is <b>it</b>"
    )
    assert "<" not in formatted.replace("<b>", "").replace("</b>", "").replace("<br>", "").replace(
        "<code>", ""
    ).replace("</code>", "")
    assert body.startswith("⚠️ Usage <x>")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
keys = st.sampled_from(
    ["type", "sender", "event_id", "content", "redacts", "origin_server_ts", "unsigned"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(keys, json_values) | st.builds(message, st.dictionaries(st.text(), json_values))
)
def test_any_event_parses_or_is_ignored_without_raising(event):
    parse_event(ROOM, event, BOT)

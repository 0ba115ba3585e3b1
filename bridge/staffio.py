"""What staff surfaces and commands exchange: a request someone typed, the reply to it.

A surface (Slack, Matrix) turns what a person typed (a slash command, a `!word` in a thread, a
submitted form) into a `Request`, hands it to a command runner and renders the `Reply` it gets in
its own markup. Both sides know only these types, so neither imports the other.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.types import FileData, StaffMessageRef, StaffUserId, SurfaceName, ThreadRef


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What a staff member typed, where and when, as the surface received it."""

    surface: SurfaceName
    user: StaffUserId
    user_name: str | None
    text: str  # "contact show +49151…" (without the leading / or !)
    channel: str | None = None
    # Set when typed inside a thread (or on a thread's contact card): thread actions need it.
    thread: ThreadRef | None = None
    # The message that carried the command, when there is one (an idempotency key).
    ref: StaffMessageRef | None = None
    # The caller is not one of the bridge's own staff (another Slack workspace, a Slack
    # Connect member of another organisation): role `none` whatever is stored.
    stranger: bool = False
    # The surface can answer here so that only the caller sees it (a Slack ephemeral message,
    # a Matrix room of only the caller and the bot): private answers need it.
    private_answers: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FormField:
    """One input of a form; its value becomes part of a command line when submitted."""

    key: str
    label: str
    # text: one line; lines: several (each line one `option` value); select / multi: choices;
    # checks: choices as checkboxes (a few, all in view).
    kind: str = "text"
    # Where the value goes: "" for a positional word, else the option it follows ("--on").
    option: str = ""
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)
    initial: str | tuple[str, ...] | None = None
    optional: bool = False
    hint: str | None = None
    # Put in the command line as typed (several words), instead of as one quoted word.
    raw: bool = False
    # What an empty input stands for (e.g. "all"); None: leave the option out.
    blank: str | None = None
    # A "lines" input taken as one value, line breaks kept (a message text).
    joined: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Form:
    """A form a surface may show instead of asking for a long command line (a Slack modal).

    Submitted, its values are appended to `command` (see `form_line`) and run as a command.
    """

    title: str
    submit: str
    command: str
    fields: tuple[FormField, ...]


def form_line(command: str, fields: Sequence[FormField], values: dict[str, object]) -> str:
    """The command line a submitted form stands for."""
    parts = [command]
    for spec in fields:
        value = values.get(spec.key)
        if isinstance(value, str):
            items = [value]
        elif isinstance(value, list | tuple):
            items = [str(v) for v in value]
        else:
            items = []
        if spec.kind == "lines" and spec.joined:
            items = ["\n".join(str(text).strip() for text in items)]
        elif spec.kind == "lines":
            items = [line.strip() for text in items for line in str(text).splitlines()]
        items = [str(item).strip() for item in items if str(item).strip()]
        if not items and spec.blank is not None:
            items = [spec.blank]
        if not items:
            continue
        if spec.kind in ("multi", "checks"):
            items = [",".join(items)]
        for item in items:
            word = item if spec.raw else shlex.quote(item)
            parts.append(f"{spec.option} {word}" if spec.option else word)
    return " ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A command's answer: a title, lines and label/value fields, and optionally a file.

    Lines may use `code` spans and *bold*; surfaces render those in their markup and escape
    everything else.
    """

    title: str | None = None
    lines: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    file: FileData | None = None
    ok: bool = True
    # Visible to everyone in the channel (a QR code to print) or only to the caller.
    public: bool = False
    # A form to fill in, where the surface can show one (the lines say how to type it instead).
    form: Form | None = None
    # Holds a secret or personal data: shown to the caller alone (file included), never where
    # others can read it; a surface that cannot keep it private shows `private_refusal` instead.
    private: bool = False

    def __post_init__(self) -> None:
        if self.private and self.public:
            msg = "a reply cannot be both private and public"
            raise ValueError(msg)

    @property
    def text(self) -> str:
        """The whole reply as plain text (fallback for notifications and tests)."""
        parts = [self.title] if self.title else []
        parts.extend(self.lines)
        parts.extend(f"{label}: {value}" for label, value in self.fields)
        return "\n".join(parts)


def private_refusal(call: str) -> Reply:
    """What a private answer becomes where others would read it: a refusal saying where to ask."""
    return Reply(
        ok=False,
        title=f"{call} answers with a secret or personal data, and others can read answers here",
        lines=(
            "Type this in a direct room with the bot (only you and the bot in it); in Slack,"
            " use the slash command or type it in a thread: only you see the answer.",
        ),
    )


# Mentions the bridge composes travel in reply text between these marks, with a key made at
# start: text from anywhere else (a contact's name, a remark) cannot forge a live mention.
_MENTION_KEY = secrets.token_hex(8)
MENTION = re.compile(f"\ue000{_MENTION_KEY}([UW][A-Z0-9]+)\ue001")


def staff_mention(user: str) -> str:
    """A live mention of a Slack user in reply text (rendered as `<@U…>`, never escaped)."""
    return f"\ue000{_MENTION_KEY}{user}\ue001"

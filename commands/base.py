"""The command framework: the context a command runs in, its errors and the registry.

A command is written once as an async function of a `Context` and its arguments, and returns a
`Reply` (bridge.staffio); each staff surface turns what a person typed (a Slack slash command, a
`!word` in a Slack or Matrix thread) into a `Request` and renders the `Reply` in its own markup.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bridge.errors import Conflict as Conflict
from bridge.errors import Invalid, Refused
from bridge.errors import NotFound as NotFound
from bridge.staffio import Reply, Request
from bridge.types import ConversationId
from bridge.types import Role as Role  # the commands' own name for it, kept

if TYPE_CHECKING:
    from bridge.services import Services


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """A request with what the bridge knows about it: the caller's role, the time, the spec."""

    request: Request
    role: Role
    now: datetime
    services: Services
    spec: Subcommand
    # The conversation whose thread the command was typed in, if any.
    conversation_id: ConversationId | None = None

    @property
    def who(self) -> str:
        """How the caller is named in records and notices."""
        return self.request.user_name or self.request.user

    @property
    def conversation(self) -> ConversationId:
        """The conversation of the thread the command was typed in (thread commands only)."""
        if self.conversation_id is None:
            raise CommandError(f"{self.spec.usage_line} works inside a conversation's thread")
        return self.conversation_id

    def local_time(self, value: str) -> datetime:
        """A time someone typed ("2026-12-24 18:30"), in the rules' time zone unless it says."""
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self.usage(f"{value} is not a time like 2026-12-24 18:30") from None
        zone = self.services.pipeline.rulebook.zone
        return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed

    def usage(self, problem: str) -> UsageError:
        """An error that answers with this subcommand's usage line and example."""
        return UsageError(problem, self.spec)

    def need(self, args: Sequence[str], count: int) -> None:
        """Fail with the usage line unless at least `count` arguments were given."""
        if len(args) < count:
            raise self.usage("missing arguments" if args else "arguments are missing")


# A command's refusals are the kernel's (bridge.errors), shared with the REST API.
CommandError = Refused


class UsageError(Invalid):
    """The arguments do not fit the command; the reply shows the usage and an example."""

    def __init__(self, problem: str, spec: Subcommand | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.spec = spec


Handler = Callable[[Context, list[str]], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Subcommand:
    """One action of a command, e.g. `contact show`."""

    command: str
    name: str
    usage: str  # "<who>" — the arguments after `/command name`
    summary: str
    example: str
    role: Role
    handler: Handler
    # Only inside a conversation thread (it acts on that conversation).
    in_thread: bool = False
    # Its answer holds a secret or personal data: run only where the answer can be private.
    private: bool = False

    @property
    def call(self) -> str:
        """`/contact show`, `!close`: what is typed before the arguments."""
        prefix = "!" if self.in_thread else "/"
        return " ".join(p for p in (f"{prefix}{self.command}", self.name) if p)

    @property
    def usage_line(self) -> str:
        """`/contact show <who>`; thread commands are typed with `!` in the thread."""
        return " ".join(p for p in (self.call, self.usage) if p)


@dataclass(slots=True)
class Command:
    """A top-level command with its subcommands, in the order they are listed in help."""

    name: str
    summary: str
    subcommands: dict[str, Subcommand] = field(default_factory=dict)
    default: str | None = None  # the subcommand run when none is named

    def sub(
        self,
        name: str,
        *,
        usage: str = "",
        summary: str,
        example: str,
        role: Role = Role.AGENT,
        in_thread: bool = False,
        private: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Record a subcommand's handler."""

        def record(handler: Handler) -> Handler:
            self.subcommands[name] = Subcommand(
                self.name, name, usage, summary, example, role, handler, in_thread, private
            )
            return handler

        return record


COMMANDS: dict[str, Command] = {}


def command(name: str, summary: str, *, default: str | None = None) -> Command:
    """Record a command; its subcommands are added with `@<command>.sub(...)`."""
    if name in COMMANDS:
        msg = f"command {name} is defined twice"
        raise ValueError(msg)
    COMMANDS[name] = Command(name, summary, default=default)
    return COMMANDS[name]


def split_args(text: str) -> list[str]:
    """Words of a command line; quotes keep spaces together ("Anna Schmidt")."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot read the arguments: {exc}") from None

"""Runs a request: finds the command, checks the caller's role, turns errors into replies."""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace

from bridge.errors import Invalid
from bridge.redact import redact_urls
from bridge.services import Services
from bridge.staffio import Reply, Request, private_refusal
from commands.base import (
    COMMANDS,
    Command,
    CommandError,
    Context,
    Role,
    Subcommand,
    UsageError,
    split_args,
)

log = logging.getLogger(__name__)


def command_help(command: Command) -> Reply:
    """A command's subcommands, one line each, with an example."""
    lines = []
    for spec in command.subcommands.values():
        example = f" (e.g. `{spec.example}`)" if spec.example != spec.usage_line else ""
        lines.append(f"`{spec.usage_line}`: {spec.summary}{example}")
    in_thread = all(spec.in_thread for spec in command.subcommands.values())
    title = f"{'!' if in_thread else '/'}{command.name}: {command.summary}"
    return Reply(title=title, lines=tuple(lines))


def usage_reply(problem: str, spec: Subcommand) -> Reply:
    """What a wrong call answers: the problem, the usage line and an example."""
    return Reply(
        ok=False,
        title=problem[:1].upper() + problem[1:],
        lines=(f"Usage: `{spec.usage_line}`", f"Example: `{spec.example}`"),
    )


def find(words: list[str]) -> tuple[Command | None, Subcommand | None, list[str]]:
    """The command and subcommand a line names, and the remaining arguments."""
    if not words:
        return None, None, []
    command = COMMANDS.get(words[0].lower().lstrip("/!"))
    if command is None:
        return None, None, words[1:]
    if len(words) > 1 and words[1].lower() in command.subcommands:
        return command, command.subcommands[words[1].lower()], words[2:]
    if command.default is not None:
        return command, command.subcommands[command.default], words[1:]
    return command, None, words[1:]


async def run(request: Request, services: Services) -> Reply:
    """Carry out what a staff member typed; every outcome is a Reply, never an exception."""
    try:
        words = split_args(request.text)
    except UsageError as exc:
        return Reply(ok=False, title="Cannot read that command", lines=(exc.problem,))
    command, spec, args = find(words)
    if command is None:
        name = words[0] if words else ""
        return Reply(
            ok=False,
            title=f"Unknown command {name}".rstrip(),
            lines=("`/bridge help` lists every command.",),
        )
    if spec is None:
        wanted = args[0] if args else None
        reply = command_help(command)
        if wanted is not None and wanted.lower() != "help":
            return Reply(
                ok=False,
                title=f"/{command.name} has no action {wanted}",
                lines=reply.lines,
            )
        return reply
    asks_help = bool(args) and args[0].lower() == "help"
    if asks_help and command.default == spec.name and len(args) == 1:
        return command_help(command)  # `/link help`, `!close help`
    if asks_help and command.default != spec.name:
        return Reply(
            title=f"`{spec.usage_line}`", lines=(spec.summary, f"Example: `{spec.example}`")
        )
    role = await services.role(request.surface, request.user, stranger=request.stranger)
    if role < spec.role:
        why = (
            (
                "Your homeserver is not one whose users are the bridge's staff"
                " ([matrix] allowed_servers), so you have no role here."
                if request.surface == "matrix"
                else "You are not a member of the workspace the bridge serves, so you have no"
                " role here."
            )
            if request.stranger
            else f"You have the {role.label} role. An admin can change it with"
            f" `/user role {request.user} {spec.role.label}`."
        )
        return Reply(ok=False, title=f"{spec.call} needs the {spec.role.label} role", lines=(why,))
    if spec.private and not request.private_answers:
        return private_refusal(spec.call)  # refused before it makes a secret nobody may see
    conversation = await services.conversation_of(request.surface, request.thread)
    if spec.in_thread and conversation is None:
        return Reply(
            ok=False,
            title=f"{spec.call} works inside a conversation's thread",
            lines=(f"Type it there as a message, e.g. `{spec.example}`.",),
        )
    context = Context(
        request=request,
        role=role,
        now=services.clock(),
        services=services,
        spec=spec,
        conversation_id=conversation,
    )
    try:
        reply = await spec.handler(context, args)
    except Invalid as exc:
        # A usage error may name its subcommand; a service's refusal of a value shows alike.
        return usage_reply(str(exc), getattr(exc, "spec", None) or spec)
    except CommandError as exc:
        return Reply(ok=False, title=str(exc))
    except Exception:
        return _failed(request)
    if spec.private and not reply.private:
        reply = replace(reply, private=True, public=False)
    if reply.private and not request.private_answers:
        return private_refusal(spec.call)
    return reply


def _failed(request: Request) -> Reply:
    """What an unexpected failure answers: a reference to the traceback in the log, never the
    error itself (it may hold a token, a path or a customer's data)."""
    ref = secrets.token_hex(3)
    # A command line may hold a URL with a token in its query: the log gets it without.
    log.exception(
        "command %r by %s failed (ref %s)", redact_urls(request.text[:80]), request.user, ref
    )
    return Reply(
        ok=False,
        title="Something went wrong",
        lines=(f"The bridge's log has the details (ref {ref}); nothing was changed by halves.",),
    )


def known_role(word: str) -> Role:
    """A role from what someone typed (admin, manager, agent, none)."""
    try:
        return Role[word.upper()]
    except KeyError:
        choices = ", ".join(r.label for r in Role)
        raise UsageError(f"{word} is not a role; choose one of {choices}") from None

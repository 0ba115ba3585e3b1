"""Run commands against a running bridge, as a staff member would, and read the replies."""

from __future__ import annotations

from bridge.app import DATABASE, PIPELINE, SETTINGS, WRITER
from bridge.services import Services
from bridge.staffio import Reply, Request
from bridge.types import StaffMessageRef, StaffUserId, SurfaceName, ThreadRef
from commands.runner import run

ADMIN = "UADMIN"
MANAGER = "UMANAGER"
AGENT = "UAGENT"


def services_of(world) -> Services:
    """The command services of the world's bridge (the same parts the surfaces use)."""
    app = world.bridge.app
    return Services(app[SETTINGS], app[DATABASE], app[WRITER], app[PIPELINE])


async def command(
    world,
    text: str,
    *,
    user: str = ADMIN,
    user_name: str | None = None,
    surface: str = "slack",
    channel: str | None = "C0001",
    thread: str | None = None,
    ref: str | None = None,
    private_answers: bool | None = None,
) -> Reply:
    """Run one command line (`contact show 4242`, without the slash) and return the reply.

    Slack can answer only the caller anywhere (ephemeral messages), as its surface says; a
    Matrix request is taken as typed in a room others read unless `private_answers` says."""
    request = Request(
        surface=SurfaceName(surface),
        user=StaffUserId(user),
        user_name=user_name,
        text=text,
        channel=channel,
        thread=ThreadRef(thread) if thread else None,
        ref=StaffMessageRef(ref) if ref else None,
        private_answers=surface == "slack" if private_answers is None else private_answers,
    )
    return await run(request, services_of(world))


def thread_ref(root) -> str:
    """The bridge's reference of a Slack thread root (a SlackMessage of the fake)."""
    return f"{root.channel}/{root.ts}"

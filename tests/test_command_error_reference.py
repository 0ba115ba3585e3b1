"""A command that fails unexpectedly answers with a short reference to the traceback in the log,
and nothing of the error itself (which may hold a secret)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import pytest

from bridge.staffio import Reply, Request
from bridge.types import Role, StaffUserId, SurfaceName
from commands.base import COMMANDS, Context, command
from commands.runner import run

SECRET = "xoxb-1234-sekrit-token"


class _Services:
    """The little of the command services the runner asks for before it runs a command."""

    async def role(self, surface, user, *, stranger=False):
        return Role.ADMIN

    async def conversation_of(self, request):
        return None

    def clock(self):
        return datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def broken_command():
    """A command whose handler raises an error that carries a secret in its message."""
    boom = command("boomtest", "Fails on purpose")

    @boom.sub("now", summary="Fail", example="/boomtest now", role=Role.AGENT)
    async def _now(ctx: Context, args: list[str]) -> Reply:
        msg = f"could not talk to the server with {SECRET}"
        raise RuntimeError(msg)

    yield boom
    del COMMANDS["boomtest"]


async def test_an_unexpected_error_answers_with_a_reference_found_in_the_log(
    broken_command, caplog
):
    caplog.set_level(logging.ERROR, logger="commands.runner")
    request = Request(
        surface=SurfaceName("slack"),
        user=StaffUserId("UADMIN"),
        user_name="Ada",
        text="boomtest now",
        private_answers=True,
    )

    reply = await run(request, _Services())

    assert not reply.ok
    found = re.search(r"\(ref ([0-9a-f]{6})\)", reply.text)
    assert found, reply.text
    ref = found[1]
    failures = [r for r in caplog.records if ref in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None  # the traceback is in the log, beside the ref
    assert "Traceback" in caplog.text
    for leak in (SECRET, "RuntimeError", "Traceback", "could not talk"):
        assert leak not in reply.text


async def test_each_failure_gets_its_own_reference(broken_command, caplog):
    caplog.set_level(logging.ERROR, logger="commands.runner")
    request = Request(
        surface=SurfaceName("slack"),
        user=StaffUserId("UADMIN"),
        user_name=None,
        text="boomtest now",
        private_answers=True,
    )

    first = await run(request, _Services())
    second = await run(request, _Services())

    refs = {re.search(r"\(ref ([0-9a-f]{6})\)", r.text)[1] for r in (first, second)}
    assert len(refs) == 2

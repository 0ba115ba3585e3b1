"""Scaffolding the connector tests share: a recording sink, polling, local webhook servers.

A test module takes the `http` and `sink` fixtures with `pytest_plugins = ["tests.connector_kit"]`
and imports the rest by name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.types import InboundEvent


class RecordingSink:
    """An InboundSink that records every batch; it can be told to fail a number of times."""

    def __init__(self) -> None:
        self.batches: list[list[InboundEvent]] = []
        self.failed: list[list[InboundEvent]] = []
        self.fail_times = 0

    async def __call__(self, events: Sequence[InboundEvent]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            self.failed.append(list(events))
            raise RuntimeError("the database is down")
        self.batches.append(list(events))

    @property
    def events(self) -> list[InboundEvent]:
        """Every event of every recorded batch, in order."""
        return [event for batch in self.batches for event in batch]


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait until predicate() is truthy and return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def serving(routes: Iterable[web.RouteDef]) -> AsyncIterator[TestServer]:
    """Serve routes (a connector's webhook, a stand-in API) on a free local port."""
    app = web.Application()
    app.add_routes(list(routes))
    async with TestServer(app) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The client session a connector under test calls its platform with."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def sink() -> RecordingSink:
    """Where a connector under test delivers inbound events."""
    return RecordingSink()

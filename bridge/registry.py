"""The registry of shipped parts: customer connectors, staff surfaces and publishers.

`connectors.all` builds THE one `Registry` from the factories the connector modules define;
`bridge.app`, `bridge.check` and `run.py` take it from there. Nothing is discovered by
scanning, and no part records itself by being imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiohttp import ClientSession

from bridge.config import Settings
from bridge.protocols import (
    CommandRunner,
    Connector,
    InboundSink,
    MediaHost,
    StaffSink,
    StaffSurface,
    StateStore,
)
from bridge.publish import Publisher

ConnectorFactory = Callable[[Settings, ClientSession, InboundSink, MediaHost], list[Connector]]
SurfaceFactory = Callable[
    [Settings, ClientSession, StaffSink, CommandRunner, StateStore], list[StaffSurface]
]
PublisherFactory = Callable[[Settings, ClientSession], list[Publisher]]
F = TypeVar("F")


@dataclass(frozen=True, slots=True)
class Part(Generic[F]):
    """A part's factory, and the settings that turn it on (said at start while it is off)."""

    build: F
    turn_on: str | None = None


@dataclass(frozen=True, slots=True)
class Registry:
    """Every part the bridge can run, by name (its settings section), in the order built."""

    connectors: Mapping[str, Part[ConnectorFactory]] = field(default_factory=dict)
    surfaces: Mapping[str, Part[SurfaceFactory]] = field(default_factory=dict)
    publishers: Mapping[str, Part[PublisherFactory]] = field(default_factory=dict)

    def turn_on(self) -> Iterator[tuple[str, str]]:
        """(name, the settings that turn it on) of every connector and surface that says."""
        said = [(name, part.turn_on) for name, part in self.connectors.items()]
        said += [(name, part.turn_on) for name, part in self.surfaces.items()]
        for name, turn_on in said:
            if turn_on is not None:
                yield name, turn_on

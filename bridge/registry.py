"""Explicit registries: each connector or surface module records its factory with a decorator.

`bridge.app` imports the modules it ships with; nothing is discovered by scanning.
"""

from __future__ import annotations

from collections.abc import Callable

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

ConnectorFactory = Callable[[Settings, ClientSession, InboundSink, MediaHost], list[Connector]]
SurfaceFactory = Callable[
    [Settings, ClientSession, StaffSink, CommandRunner, StateStore], list[StaffSurface]
]

CONNECTORS: dict[str, ConnectorFactory] = {}
SURFACES: dict[str, SurfaceFactory] = {}


def connector(name: str) -> Callable[[ConnectorFactory], ConnectorFactory]:
    """Record a factory that builds the configured accounts of a customer-side platform."""

    def record(factory: ConnectorFactory) -> ConnectorFactory:
        CONNECTORS[name] = factory
        return factory

    return record


def surface(name: str) -> Callable[[SurfaceFactory], SurfaceFactory]:
    """Record a factory that builds a staff surface when it is configured."""

    def record(factory: SurfaceFactory) -> SurfaceFactory:
        SURFACES[name] = factory
        return factory

    return record

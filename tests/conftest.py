"""Shared fixtures: databases (SQLite, a throwaway PostgreSQL cluster), settings, clock, Synapse."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from storage import Database

if TYPE_CHECKING:
    from tests.synapse import Synapse

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One PostgreSQL cluster for the whole run, started on a free port."""
    from tests.pgcluster import PgCluster

    cluster = PgCluster.start(tmp_path_factory.mktemp("pg"))
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    return str(cluster.create_database(f"t{next(_counter)}"))  # type: ignore[attr-defined]


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    """A migrated database."""
    db = Database(db_url)
    await db.migrate()
    yield db
    await db.close()


@pytest.fixture(
    params=[("webhook", "http")],
    ids=lambda p: f"telegram-{p[0]}+slack-{p[1]}",
)
async def world(request: pytest.FixtureRequest, tmp_path: Path):
    """The bridge between fake Telegram and fake Slack; modes via indirect parametrization
    (telegram mode, slack mode[, "postgresql" for a throwaway PostgreSQL database]). A test
    that uses a fixture `allow_private` gets its entries in `[security] allow_private`."""
    from tests.world import start_world, stop_world

    telegram_mode, slack_mode, *database = request.param
    extra = {}
    if database == ["postgresql"]:
        cluster = request.getfixturevalue("pg_cluster")
        extra["database"] = str(cluster.create_database(f"w{next(_counter)}"))  # type: ignore[attr-defined]
    sections = {}
    if "allow_private" in request.fixturenames:
        # A test's fakes on loopback, allowed through the outbound guard by host:port.
        sections["security"] = {"allow_private": request.getfixturevalue("allow_private")}
    w = await start_world(
        tmp_path, telegram_mode=telegram_mode, slack_mode=slack_mode, sections=sections, **extra
    )
    yield w
    await stop_world(w)


ALL_MODES = [
    ("webhook", "http"),
    ("polling", "http"),
    ("webhook", "socket"),
    ("polling", "socket"),
    # The pipeline on PostgreSQL: leased outbox rows, the loops behind the advisory lock.
    ("polling", "socket", "postgresql"),
]


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """One real Matrix homeserver (Synapse) for the whole run, started by its first user.

    Shared: register fresh users (MatrixUser.register) and do not restart or reconfigure it;
    a test that needs that starts its own `tests.synapse.Synapse` in its tmp_path.
    """
    from tests.synapse import INSTALL_HINT, Synapse, synapse_installed

    if not synapse_installed():
        pytest.fail(INSTALL_HINT.format(python=sys.executable), pytrace=False)
    server = Synapse.start(tmp_path_factory.mktemp("synapse"))
    yield server
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Attach the tail of the shared homeserver's log to the report of a failed test using it."""
    report = yield
    if report.failed and call.when in ("setup", "call"):
        server = getattr(item, "funcargs", {}).get("synapse")
        if server is not None and hasattr(server, "log_tail"):
            report.sections.append(("synapse log (tail)", server.log_tail(60)))
    return report

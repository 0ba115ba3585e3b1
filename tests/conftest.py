"""Shared fixtures: databases (SQLite and a throwaway PostgreSQL cluster), settings, clock."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage import Database

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
    """The bridge between fake Telegram and fake Slack; modes via indirect parametrization."""
    from tests.world import start_world, stop_world

    telegram_mode, slack_mode = request.param
    w = await start_world(tmp_path, telegram_mode=telegram_mode, slack_mode=slack_mode)
    yield w
    await stop_world(w)


ALL_MODES = [
    ("webhook", "http"),
    ("polling", "http"),
    ("webhook", "socket"),
    ("polling", "socket"),
]

"""The throwaway PostgreSQL cluster the storage tests run on: start, connect, create, stop."""

from __future__ import annotations

import os
import shutil
import subprocess

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import pgcluster
from tests.pgcluster import PgCluster, PgClusterError


def _processes_matching(pattern: str) -> list[str]:
    if shutil.which("pgrep") is None:
        pytest.fail("pgrep (procps) is needed to check that the server processes are gone")
    done = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True, check=False)
    return [line for line in done.stdout.splitlines() if line.strip()]


async def test_start_connect_create_stop(tmp_path):
    # tmp_path sits under pytest's 0700 directory: under root the server (running as
    # `postgres`) could not reach it, and PgCluster has to work around that.
    cluster = PgCluster.start(tmp_path)
    try:
        assert cluster.startup_seconds < 30
        assert cluster.url.startswith("postgresql+asyncpg://")
        assert cluster.url.endswith(f"127.0.0.1:{cluster.port}/bridge_test")
        assert _processes_matching(str(cluster.data_dir)), "the postmaster should be running"

        conn = await asyncpg.connect(cluster.dsn)
        try:
            assert await conn.fetchval("select 1") == 1
            assert await conn.fetchval("select current_database()") == "bridge_test"
            assert await conn.fetchval("show fsync") == "off"
            assert await conn.fetchval("show max_connections") == "200"
            assert (
                await conn.fetchval(
                    "select pg_encoding_to_char(encoding) from pg_database "
                    "where datname = current_database()"
                )
                == "UTF8"
            )
        finally:
            await conn.close()

        engine = create_async_engine(cluster.url)
        try:
            async with engine.connect() as sa_conn:
                assert (await sa_conn.execute(text("select 1"))).scalar_one() == 1
        finally:
            await engine.dispose()

        second = cluster.create_database("second_db")
        assert second == cluster.url_for("second_db")
        engine = create_async_engine(second)
        try:
            async with engine.begin() as sa_conn:
                await sa_conn.execute(text("create table t (x int)"))
                await sa_conn.execute(text("insert into t values (42)"))
                assert (await sa_conn.execute(text("select x from t"))).scalar_one() == 42
                name = (await sa_conn.execute(text("select current_database()"))).scalar_one()
                assert name == "second_db"
        finally:
            await engine.dispose()

        with pytest.raises(ValueError):
            cluster.create_database('bad"; drop')
    finally:
        cluster.stop()

    assert _processes_matching(str(cluster.data_dir)) == []
    assert cluster.pid is not None
    assert not pgcluster._pid_alive(cluster.pid)
    assert not cluster.data_dir.exists()
    assert (tmp_path / "postgresql.log").exists(), "the server log is kept for post-mortems"
    if os.geteuid() == 0:
        assert not cluster.work_dir.exists(), "the scratch dir outside tmp_path is removed"
    cluster.stop()  # idempotent


def test_missing_binaries_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("PGCLUSTER_BINDIR", raising=False)
    monkeypatch.setattr(pgcluster.shutil, "which", lambda name: None)
    monkeypatch.setattr(pgcluster, "PG_LIB_ROOT", tmp_path / "nothing")
    with pytest.raises(PgClusterError, match="apt-get install postgresql"):
        PgCluster.start(tmp_path)

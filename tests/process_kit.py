"""The bridge as a separate process (`run.py --config`), so that a test can kill it for real."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import aiohttp

from tests.harness import eventually

ROOT = Path(__file__).resolve().parent.parent


class Bridge:
    """The bridge as a separate process, so that it can be killed for real."""

    def __init__(self, cfg: Path, port: int, log: Path) -> None:
        self.cfg, self.port, self.log = cfg, port, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        out = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "run.py"),
            "--config",
            str(self.cfg),
            cwd=str(self.cfg.parent),
            stdout=out,
            stderr=out,
        )
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                        return r.status == 200
                return False

            await eventually(healthy, timeout=30, message="the bridge process to be healthy")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)

    async def wait(self) -> None:
        if self.proc is not None:
            await self.proc.wait()

    async def terminate(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


def children(pid: int) -> list[int]:
    """The processes a process started (the dispatcher child, with `dispatch = "process"`)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []

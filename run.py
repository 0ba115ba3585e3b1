"""Run the support bridge: `python run.py [--config bridge.toml]`.

`python run.py matrix-registration > support-bridge.yaml` prints the registration file of the
Matrix application service mode. `python run.py check` checks the settings, the database and
every configured platform (exit status 0 when all is well); `python run.py migrate` brings the
database schema to this version (the bridge also does at every start).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from aiohttp import web

from bridge import logs
from bridge.config import Settings, load_settings
from bridge.errors import ConfigError
from bridge.registry import Registry


def _explain_off(settings: Settings, shipped: Registry) -> list[str]:
    """A line for each connector or surface that is off, with the settings that turn it on."""
    lines = []
    for name, turn_on in shipped.turn_on():
        # A part's settings section bears its name, and says whether it is on.
        if not getattr(settings, name).enabled:
            lines.append(f"{name}: off ({turn_on})")
    return lines


def _matrix_registration(settings: Settings) -> int:
    """Print the appservice registration (stdout) and what to change in the settings (stderr)."""
    from connectors.matrix_appservice import registration

    try:
        text, notes = registration(settings)
    except ValueError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    for note in notes:
        print(f"bridge: {note}", file=sys.stderr)
    return 0


def _check(settings: Settings, path: Path) -> int:
    """One line per check; 0 when every check passed."""
    from bridge.check import line, run_checks

    where = str(path) if path.exists() else f"no file at {path}: defaults and BRIDGE_* variables"
    print(line("settings", True, where), flush=True)
    outcomes = asyncio.run(run_checks(settings))
    for outcome in outcomes:
        print(line(outcome.name, outcome.ok, outcome.detail), flush=True)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def _migrate(settings: Settings) -> int:
    """Bring the schema to this version's newest revision, saying what was done."""
    from storage.db import Database

    async def migrate() -> int:
        db = Database(settings.bridge.database)
        try:
            before = await db.schema_state()
            if not before.known:
                print(
                    f"bridge: the schema is at revision {before.current}, which this version"
                    " does not know: a newer version migrated it",
                    file=sys.stderr,
                )
                return 1
            await db.migrate()
        finally:
            await db.close()
        if before.pending:
            print(f"bridge: applied {', '.join(before.pending)}; the schema is at {before.head}")
        else:
            print(f"bridge: the schema is at {before.head} already; nothing to do")
        return 0

    return asyncio.run(migrate())


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load settings, run until interrupted."""
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("bridge.toml"),
        help="settings file (default ./bridge.toml; BRIDGE_<SECTION>__<KEY> overrides)",
    )
    parser.add_argument(
        "--role", choices=("bridge", "dispatcher"), default="bridge", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("matrix-registration", "check", "migrate"),
        help="matrix-registration: print the Matrix appservice registration file and exit; "
        "check: check the settings, the database and every configured platform; "
        "migrate: bring the database schema to this version and exit",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        if args.command == "check":
            from bridge.check import line as check_line

            print(check_line("settings", False, f"{args.config}: {exc}"), flush=True)
            return 1
        print(f"bridge: bad settings: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings)
    if args.command == "check":
        # The report is the output: Alembic's notes on reading the schema are not needed.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        return _check(settings, args.config)
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "matrix-registration":
        return _matrix_registration(settings)
    if args.role == "dispatcher":
        from bridge.app import run_dispatcher

        _use_uvloop()
        asyncio.run(run_dispatcher(settings))
        return 0
    if not args.config.exists():
        print(f"bridge: no settings file at {args.config}; using defaults", file=sys.stderr)
    from connectors.all import SHIPPED

    for line in _explain_off(settings, SHIPPED):
        print(f"bridge: {line}", file=sys.stderr)
    _use_uvloop()
    from bridge.app import build_app

    child = [sys.executable, str(Path(__file__).resolve()), "--config", str(args.config.resolve())]

    print(
        f"bridge: listening on http://{settings.bridge.listen} (health: /healthz)",
        file=sys.stderr,
        flush=True,
    )
    web.run_app(
        build_app(settings, dispatcher_command=[*child, "--role", "dispatcher"]),
        host=settings.bridge.host,
        port=settings.bridge.port,
        print=None,
        access_log=None,
        shutdown_timeout=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

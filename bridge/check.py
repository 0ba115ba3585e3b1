"""`python run.py check`: is every configured part set up right?

After the settings have been loaded and validated: the database (can it be reached, where does
its schema stand), every configured platform account and staff surface (one harmless
authenticated call, made by the part's own code and mapped by its own error mapping; a surface
with rooms also says of each room whether it may post there as set up: Matrix, whether the room
is end-to-end encrypted and whether `[matrix] encryption` is on), and the mail server when
`[mail]` is set. One line per check. Nothing is sent to anyone, nothing is
written, nothing is started.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import aiohttp
import aiosmtplib

from bridge.config import MailSettings, Settings
from bridge.errors import BridgeError
from bridge.logs import Masker, secrets_of
from bridge.protocols import Connector, StaffSurface
from bridge.registry import Registry
from bridge.staffio import Reply, Request
from bridge.types import FileData, InboundEvent, StaffEvent
from connectors.all import SHIPPED
from storage.db import Database, backend_name, sqlite_file

CHECK_TIMEOUT = 15.0
NAME_WIDTH = 24


@dataclass(frozen=True, slots=True)
class Outcome:
    """One check: what was checked, whether it passed, and what was found or why it failed."""

    name: str
    ok: bool
    detail: str


class CheckFailed(Exception):
    """A check found something wrong; the message says what."""


@runtime_checkable
class Probe(Protocol):
    """A part that can make a harmless authenticated call to its platform."""

    async def probe(self) -> str:
        """Call the platform; return what was learned (who the bot is), or raise."""
        ...


@runtime_checkable
class RoomsProbe(Protocol):
    """A staff surface that also checks, room by room, that it may post there as set up."""

    async def probe_rooms(self) -> tuple[str, list[tuple[str, bool, str]]]:
        """Who the account is, and per room: its id, whether it is usable, what was found."""
        ...


def line(name: str, ok: bool, detail: str) -> str:
    """One line of the report."""
    return f"{name:<{NAME_WIDTH}} {'ok' if ok else 'FAILED':<6} {detail}".rstrip()


async def run_checks(
    settings: Settings, *, timeout: float = CHECK_TIMEOUT, shipped: Registry = SHIPPED
) -> list[Outcome]:
    """The database, each configured account and surface, the mail server: checked at once."""
    mask = Masker(secrets_of(settings))
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
    try:
        checks: list[tuple[str, Callable[[], Awaitable[str]]]] = [
            ("database", lambda: _database(settings))
        ]
        failed: list[Outcome] = []
        with_rooms: list[tuple[str, RoomsProbe]] = []
        for name, part in shipped.connectors.items():
            try:
                connectors_ = part.build(settings, http, _no_inbound, _NoMedia())
            except Exception as exc:
                failed.append(Outcome(name, False, mask(str(exc))))
                continue
            checks.extend((f"{c.platform}:{c.account}", _prober(c)) for c in connectors_)
        for name, surface_part in shipped.surfaces.items():
            try:
                surfaces = surface_part.build(settings, http, _no_staff, _no_commands, _NoState())
            except Exception as exc:
                failed.append(Outcome(name, False, mask(str(exc))))
                continue
            checks.extend((s.name, _prober(s)) for s in surfaces if not isinstance(s, RoomsProbe))
            with_rooms.extend((s.name, s) for s in surfaces if isinstance(s, RoomsProbe))
        if settings.mail.enabled:
            checks.append(("mail", lambda: _mail(settings.mail)))
        outcomes = await asyncio.gather(
            *(_listed(_run(name, check, timeout, mask)) for name, check in checks),
            *(_run_rooms(name, surface, timeout, mask) for name, surface in with_rooms),
        )
    finally:
        await http.close()
    return [*(outcome for found in outcomes for outcome in found), *failed]


async def _run(
    name: str, check: Callable[[], Awaitable[str]], timeout: float, mask: Masker
) -> Outcome:
    try:
        async with asyncio.timeout(timeout):
            detail = await check()
    except TimeoutError:
        return Outcome(name, False, f"no answer within {timeout:g} s")
    except Exception as exc:
        # The bridge's errors carry words for people; anything else is named by its type too.
        if isinstance(exc, CheckFailed | BridgeError) and str(exc):
            words = str(exc)
        else:
            words = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Outcome(name, False, mask(words))
    return Outcome(name, True, mask(detail))


async def _run_rooms(name: str, surface: RoomsProbe, timeout: float, mask: Masker) -> list[Outcome]:
    """The surface's line, then one line per room (`<surface>:<room>`), unless the call failed."""
    rooms: list[tuple[str, bool, str]] = []

    async def probe() -> str:
        who, found = await surface.probe_rooms()
        rooms.extend(found)
        return who

    first = await _run(name, probe, timeout, mask)
    return [first, *(Outcome(f"{name}:{room}", ok, mask(detail)) for room, ok, detail in rooms)]


async def _listed(outcome: Awaitable[Outcome]) -> list[Outcome]:
    return [await outcome]


def _prober(part: Connector | StaffSurface) -> Callable[[], Awaitable[str]]:
    async def probe() -> str:
        if not isinstance(part, Probe):
            return "configured (no check for this platform)"
        return await part.probe()

    return probe


async def _database(settings: Settings) -> str:
    """Reach the database and say where its schema stands; creates and changes nothing."""
    dialect = backend_name(settings.bridge.database)
    file = sqlite_file(settings.bridge.database)
    if file is not None and not Path(file).exists():
        return f"sqlite: no database at {file} yet; the first start creates it"
    db = Database(settings.bridge.database)
    try:
        state = await db.schema_state()
    finally:
        await db.close()
    if not state.known:
        msg = (
            f"{dialect}: the schema is at revision {state.current}, which this version does not"
            " know: a newer version migrated it"
        )
        raise CheckFailed(msg)
    if state.current is None:
        return (
            f"{dialect}: reached; no schema yet: the first start (or python run.py migrate)"
            f" creates it ({len(state.pending)} revisions)"
        )
    if not state.pending:
        return f"{dialect}: reached; schema at head ({state.head})"
    return (
        f"{dialect}: reached; schema at {state.current}, behind by {len(state.pending)}"
        f" ({', '.join(state.pending)}): the next start applies them (or python run.py migrate)"
    )


async def _mail(mail: MailSettings) -> str:
    """Connect to the SMTP server (TLS as configured) and log in when a user is set."""
    smtp = aiosmtplib.SMTP(
        hostname=mail.host,
        port=mail.port,
        use_tls=mail.security == "tls",
        start_tls=mail.security == "starttls",
        timeout=mail.timeout_s,
    )
    try:
        await smtp.connect()
        if mail.username:
            password = mail.password.get_secret_value() if mail.password else ""
            await smtp.login(mail.username, password)
    except aiosmtplib.SMTPResponseException as exc:
        msg = f"the mail server answered {exc.code} {exc.message}"
        raise CheckFailed(msg) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        msg = f"the mail server could not be reached: {type(exc).__name__} {exc}".rstrip()
        raise CheckFailed(msg) from None
    finally:
        if smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
    how = {"starttls": "STARTTLS", "tls": "TLS", "none": "no TLS"}[mail.security]
    who = f", logged in as {mail.username}" if mail.username else ""
    return f"{mail.host}:{mail.port} ({how}{who})"


# -- what the parts are given but never use during a check -------------------------------


async def _no_inbound(events: Sequence[InboundEvent]) -> None:
    raise RuntimeError("nothing is received during a check")


async def _no_staff(event: StaffEvent) -> None:
    raise RuntimeError("nothing is received during a check")


async def _no_commands(request: Request) -> Reply:
    raise RuntimeError("no command runs during a check")


class _NoMedia:
    async def publish(self, file: FileData, *, ttl: float = 3600.0) -> str:
        raise RuntimeError("nothing is sent during a check")


class _NoState:
    async def get(self, key: str) -> str | None:
        return None

    async def put(self, key: str, value: str) -> None:
        return None

"""The real pipeline on a real SQLite database, between a fake connector and a fake surface.

No HTTP anywhere: `FakeConnector` and `FakeSurface` keep the bridge's protocols in memory and
record what they were asked to do, and `Rig` runs the outbox in-process, so a test reads as
"the customer writes X; the thread shows Y; the customer received Z":

    rig = await start_rig(tmp_path)
    await rig.customer.says("111", "Hello")
    await rig.settle()
    assert rig.surface.thread_of("111").texts() == ["Hello"]
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web
from sqlalchemy import text

import commands.all  # noqa: F401  (records every command, as the app does)
from bridge.config import Settings
from bridge.outbox import Dispatcher
from bridge.pipeline import Pipeline
from bridge.protocols import InboundSink, StaffSink
from bridge.ratelimit import RateLimiter
from bridge.services import Services
from bridge.staffio import Reply, Request
from bridge.types import (
    TELEGRAM,
    AccountId,
    Attachment,
    ChatId,
    Consent,
    ContactCard,
    CustomerProfile,
    DeliveryStatus,
    ExternalMessageId,
    FileData,
    InboundMessage,
    InboundReaction,
    MirrorPost,
    OutboundMessage,
    Platform,
    RateLimit,
    ReactionChange,
    StaffMessage,
    StaffMessageRef,
    StaffUserId,
    SurfaceName,
    Template,
    ThreadRef,
)
from commands.runner import run as run_command
from storage import Database, Writer
from tests.harness import make_settings, migrated_database

# A Wednesday morning: the rig's clock starts here and moves only when a test moves it.
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ADMIN = "UADMIN"
AGENT = "UAGENT"


# -- the customer's side ----------------------------------------------------------------------


class _Idle:
    """The lifecycle of a part that serves no routes and runs no loop of its own."""

    def routes(self) -> Sequence[web.RouteDef]:
        return []

    async def start(self) -> None:
        pass

    async def start_loop(self) -> None:
        pass

    async def stop_loop(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class FakeConnector(_Idle):
    """A platform account in memory: customers write through `says`, sends are recorded.

    `fail_next` makes the next send raise (RateLimited, WindowClosed, OptedOut…); `window`
    gives the account a customer-service window (WhatsApp's 24 hours) that refuses free text.
    """

    platform: ClassVar[Platform] = TELEGRAM

    def __init__(
        self,
        platform: Platform = TELEGRAM,
        account: str = "bot1",
        *,
        clock: Callable[[], datetime] = lambda: T0,
        window: timedelta | None = None,
        templates: Sequence[Template] = (),
    ) -> None:
        # The protocol declares the platform per class; one class serves every platform here.
        self.platform = platform  # type: ignore[misc]
        self.account = AccountId(account)
        self.clock = clock
        self.window = window
        self.approved = list(templates)
        self.sink: InboundSink | None = None
        self.sent: list[OutboundMessage] = []
        self.edits: list[tuple[ChatId, ExternalMessageId, str]] = []
        self.deletes: list[tuple[ChatId, ExternalMessageId]] = []
        self.files: dict[str, FileData] = {}
        self._failures: list[Exception] = []
        self._ids = itertools.count(1)

    # What a test does ------------------------------------------------------------------------

    async def says(
        self,
        chat: str,
        text: str,
        *,
        name: str | None = None,
        at: datetime | None = None,
        payload: str | None = None,
        consent: Consent | None = None,
        attachments: Sequence[Attachment] = (),
        reply_to: str | None = None,
        quoted: str | None = None,
    ) -> InboundMessage:
        """A customer writes (answering `reply_to`, quoting `quoted` of it); returns once the
        pipeline has stored the message."""
        assert self.sink is not None, "the connector is not wired to a pipeline"
        message = InboundMessage(
            platform=self.platform,
            account=self.account,
            chat_id=ChatId(chat),
            external_id=ExternalMessageId(f"in-{next(self._ids)}"),
            profile=CustomerProfile(display_name=name or f"Customer {chat}"),
            text=text,
            sent_at=at or self.clock(),
            attachments=tuple(attachments),
            start_payload=payload,
            consent=consent,
            reply_to=ExternalMessageId(reply_to) if reply_to is not None else None,
            quoted=quoted,
        )
        await self.sink([message])
        return message

    async def reacts(
        self, chat: str, target: str, *emoji: str, at: datetime | None = None
    ) -> InboundReaction:
        """A customer's reactions on the message `target` are now `emoji` (none: taken back)."""
        assert self.sink is not None, "the connector is not wired to a pipeline"
        reaction = InboundReaction(
            platform=self.platform,
            account=self.account,
            chat_id=ChatId(chat),
            target=ExternalMessageId(target),
            emoji=emoji,
            at=at or self.clock(),
        )
        await self.sink([reaction])
        return reaction

    def fail_next(self, error: Exception) -> None:
        """The next send raises `error` (one of bridge.errors) instead of going out."""
        self._failures.append(error)

    def sent_to(self, chat: str) -> list[OutboundMessage]:
        """What the customer at `chat` received, oldest first."""
        return [m for m in self.sent if m.chat_id == chat]

    def texts_to(self, chat: str) -> list[str]:
        """The texts the customer at `chat` received, oldest first."""
        return [m.text for m in self.sent_to(chat)]

    # The Connector protocol ------------------------------------------------------------------

    async def send(self, msg: OutboundMessage) -> ExternalMessageId:
        if self._failures:
            raise self._failures.pop(0)
        self.sent.append(msg)
        return ExternalMessageId(f"out-{len(self.sent)}")

    async def edit(self, chat_id: ChatId, external_id: ExternalMessageId, text: str) -> None:
        self.edits.append((chat_id, external_id, text))

    async def delete(self, chat_id: ChatId, external_id: ExternalMessageId) -> None:
        self.deletes.append((chat_id, external_id))

    async def fetch(self, attachment: Attachment) -> FileData:
        return self.files[attachment.ref]

    def rate_keys(self, chat_id: ChatId) -> tuple[str, ...]:
        return (f"{self.platform}:{self.account}", f"{self.platform}:{self.account}:{chat_id}")

    def rate_limits(self) -> Mapping[str, RateLimit]:
        return {}

    def window_refusal(self, last_inbound_at: datetime | None, now: datetime) -> str | None:
        if self.window is None:
            return None
        hours = self.window / timedelta(hours=1)
        if last_inbound_at is not None and now - last_inbound_at <= self.window:
            return None
        return (
            f"the {hours:g}-hour customer service window is closed; only approved templates"
            " may be sent until the customer writes again"
        )

    async def templates(self) -> Sequence[Template]:
        return list(self.approved)

    def chat_link(self, payload: str | None = None) -> str | None:
        return None


# -- the staff's side -------------------------------------------------------------------------


def text_from(chat: int, text: str, at: datetime, ref: str) -> InboundMessage:
    """A Telegram customer's text to the rig's bot (`ref`: the message's id on Telegram)."""
    return InboundMessage(
        platform=TELEGRAM,
        account=AccountId("bot1"),
        chat_id=ChatId(str(chat)),
        external_id=ExternalMessageId(ref),
        profile=CustomerProfile(display_name=f"Customer {chat}"),
        text=text,
        sent_at=at,
    )


@dataclass
class Shown:
    """One message the bridge put in a thread: a mirrored post or a notice of its own."""

    ref: StaffMessageRef
    kind: str  # "post" or "notice"
    author: str
    text: str
    files: tuple[FileData, ...] = ()
    marker: str | None = None
    quote: str | None = None
    reactions: list[str] = field(default_factory=list)


@dataclass
class FakeThread:
    """A thread as staff see it: its root card (every version), what was posted, what staff
    members were told alone."""

    ref: ThreadRef
    channel: str | None
    marker: str | None
    cards: list[ContactCard]
    shown: list[Shown] = field(default_factory=list)
    told: list[tuple[StaffUserId | None, str]] = field(default_factory=list)
    erased: str | None = None

    @property
    def card(self) -> ContactCard:
        """The root card as it reads now."""
        return self.cards[-1]

    def texts(self) -> list[str]:
        """Every post and notice in the thread, oldest first."""
        return [s.text for s in self.shown]

    def posts(self) -> list[str]:
        """The mirrored posts only (what customers and the other surface said)."""
        return [s.text for s in self.shown if s.kind == "post"]

    def notices(self) -> list[str]:
        """The bridge's own notices only."""
        return [s.text for s in self.shown if s.kind == "notice"]


class FakeSurface(_Idle):
    """A staff surface in memory: threads, posts, marks and tells are recorded; staff members
    write through `agent_says`."""

    name: ClassVar[SurfaceName] = SurfaceName("slack")

    def __init__(self, name: str = "slack", *, post_limit: int = 40_000) -> None:
        self.name = SurfaceName(name)  # type: ignore[misc]
        self.sink: StaffSink | None = None
        self.clock: Callable[[], datetime] = lambda: T0
        self.threads: dict[ThreadRef, FakeThread] = {}
        self.marks: dict[StaffMessageRef, list[DeliveryStatus]] = {}
        # The customer's reactions shown on each message (post or staff message), as now.
        self.reactions: dict[StaffMessageRef, list[str]] = {}
        self.announced: list[tuple[str, str]] = []
        self.files: dict[str, FileData] = {}
        self._limit = post_limit
        self._ids = itertools.count(1)

    # What a test does ------------------------------------------------------------------------

    def thread_of(self, chat: str) -> FakeThread:
        """The (latest) thread of the customer at `chat`; fails when there is none."""
        found = [t for t in self.threads.values() if t.card.chat_id == chat]
        assert found, f"no thread for {chat}; threads: {list(self.threads)}"
        return found[-1]

    def has_thread(self, chat: str) -> bool:
        """Whether the customer at `chat` has a thread."""
        return any(t.card.chat_id == chat for t in self.threads.values())

    async def agent_says(
        self,
        thread: FakeThread,
        text: str,
        *,
        user: str = AGENT,
        at: datetime | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> StaffMessageRef:
        """A staff member writes in the thread; returns the ref of their message."""
        assert self.sink is not None, "the surface is not wired to a pipeline"
        ref = self.new_ref(thread.ref)
        await self.sink(
            StaffMessage(
                surface=self.name,
                thread=thread.ref,
                ref=ref,
                author=StaffUserId(user),
                text=text,
                at=at or self.clock(),
                attachments=tuple(attachments),
            )
        )
        return ref

    def marks_of(self, ref: StaffMessageRef) -> list[DeliveryStatus]:
        """The delivery marks a staff message got, in order."""
        return self.marks.get(ref, [])

    # The StaffSurface protocol ---------------------------------------------------------------

    async def open_thread(
        self, card: ContactCard, channel: str | None, marker: str | None = None
    ) -> ThreadRef:
        ref = ThreadRef(f"{channel or 'C0001'}/{next(self._ids)}")
        self.threads[ref] = FakeThread(ref, channel, marker, [card])
        return ref

    async def find_thread(self, channel: str | None, marker: str) -> ThreadRef | None:
        for thread in self.threads.values():
            if thread.marker == marker and thread.channel == channel:
                return thread.ref
        return None

    async def update_root(self, thread: ThreadRef, card: ContactCard) -> None:
        self.threads[thread].cards.append(card)

    async def post(self, thread: ThreadRef, post: MirrorPost) -> StaffMessageRef:
        ref = self._show(thread, "post", post.author, post.text, post.files, post.marker)
        self.threads[thread].shown[-1].quote = post.quote
        return ref

    @property
    def post_limit(self) -> int:
        return self._limit

    def post_size(self, post: MirrorPost) -> int:
        return len(post.author) + len(post.text)

    async def edit_post(self, ref: StaffMessageRef, post: MirrorPost) -> None:
        for thread in self.threads.values():
            for shown in thread.shown:
                if shown.ref == ref:
                    shown.text, shown.files = post.text, post.files

    async def mark(self, ref: StaffMessageRef, status: DeliveryStatus) -> None:
        self.marks.setdefault(ref, []).append(status)

    async def notice(self, thread: ThreadRef, text: str) -> StaffMessageRef:
        return self._show(thread, "notice", "bridge", text)

    async def react(self, thread: ThreadRef, ref: StaffMessageRef, change: ReactionChange) -> None:
        now = self.reactions.setdefault(ref, [])
        now[:] = [e for e in now if e not in change.removed]
        now.extend(e for e in change.added if e not in now)

    async def tell(
        self,
        thread: ThreadRef,
        user: StaffUserId | None,
        answer_to: StaffMessageRef,
        text: str,
    ) -> None:
        self.threads[thread].told.append((user, text))

    async def fetch(self, attachment: Attachment) -> FileData:
        return self.files[attachment.ref]

    async def permalink(self, thread: ThreadRef) -> str | None:
        return f"https://staff.example/{thread}"

    async def announce(
        self, channel: str, text: str, ref: StaffMessageRef | None = None
    ) -> StaffMessageRef:
        self.announced.append((channel, text))
        return ref or self.new_ref(ThreadRef(channel))

    async def erase_thread(self, thread: ThreadRef, text: str) -> None:
        self.threads[thread].shown.clear()
        self.threads[thread].erased = text

    async def find_post(self, thread: ThreadRef, marker: str) -> StaffMessageRef | None:
        for shown in self.threads[thread].shown:
            if shown.marker == marker:
                return shown.ref
        return None

    def rate_keys(self, action: str, channel: str | None) -> tuple[str, ...]:
        return (f"{self.name}:{action}:{channel or 'default'}",)

    def rate_limits(self) -> Mapping[str, RateLimit]:
        return {}

    def new_ref(self, thread: ThreadRef) -> StaffMessageRef:
        """A fresh ref for a message in `thread` (a staff member's, or the bridge's)."""
        return StaffMessageRef(f"{thread}/{next(self._ids)}")

    def _show(
        self,
        thread: ThreadRef,
        kind: str,
        author: str,
        text: str,
        files: tuple[FileData, ...] = (),
        marker: str | None = None,
    ) -> StaffMessageRef:
        ref = self.new_ref(thread)
        self.threads[thread].shown.append(Shown(ref, kind, author, text, files, marker))
        return ref


# -- the rig ----------------------------------------------------------------------------------


@dataclass
class ManualClock:
    """The pipeline's clock in a rig: T0 until a test moves it."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    """A pipeline wired to fakes, with its database, writer and an in-process dispatcher."""

    settings: Settings
    db: Database
    writer: Writer
    pipeline: Pipeline
    dispatcher: Dispatcher
    customer: FakeConnector
    surface: FakeSurface
    clock: ManualClock

    def advance(self, **delta: float) -> None:
        """Move the pipeline's clock forward (`hours=25`)."""
        self.clock.now += timedelta(**delta)

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until the outbox holds no row that is due: everything the bridge queued (and
        what that queued in turn) has been carried out or has failed for good. A card refresh
        held back for its window (`card_refresh_s`, short in a rig) is waited for; rows waiting
        for a later retry (a transient failure's backoff) are not: see `pending`."""
        deadline = time.monotonic() + timeout
        while True:
            due = await self.pending(due_within=self.settings.bridge.card_refresh_s + 0.01)
            if not due:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the outbox did not settle in {timeout}s: {due}")
            await asyncio.sleep(0.005)

    async def pending(self, *, due_within: float | None = None) -> list[tuple[str, str]]:
        """Pending outbox rows as (kind, idempotency key); with `due_within`, only those due
        within that many seconds."""
        query = "select kind, idem_key from outbox where state = 'pending'"
        if due_within is not None:
            query += f" and next_at <= {time.time() + due_within}"
        return [(str(k), str(i)) for k, i in await self.sql(query + " order by id")]

    async def sql(self, query: str) -> list[tuple[Any, ...]]:
        """Rows of a read-only query, as tuples."""
        async with self.db.read() as conn:
            return [tuple(r) for r in await conn.execute(text(query))]

    async def command(
        self, line: str, *, user: str = ADMIN, thread: FakeThread | None = None
    ) -> Reply:
        """Run one command line (`channel create news --join JOIN`) as a staff member would;
        typed as a message of its own in `thread` when given (`!template send …`)."""
        request = Request(
            surface=self.surface.name,
            user=StaffUserId(user),
            user_name=None,
            text=line,
            channel="C0001",
            thread=thread.ref if thread else None,
            ref=self.surface.new_ref(thread.ref) if thread else None,
            private_answers=True,
        )
        return await run_command(
            request, Services(self.settings, self.db, self.writer, self.pipeline)
        )

    async def customer_with_thread(self, chat: str, text: str = "Hello", **kw: Any) -> FakeThread:
        """The customer writes and everything settles; returns their thread."""
        await self.customer.says(chat, text, **kw)
        await self.settle()
        return self.surface.thread_of(chat)

    async def reply(self, thread: FakeThread, text: str, *, user: str = AGENT) -> StaffMessageRef:
        """A staff member answers in the thread and everything settles; returns their ref."""
        ref = await self.surface.agent_says(thread, text, user=user)
        await self.settle()
        return ref

    async def reply_refused(
        self, thread: FakeThread, text: str, error: Exception
    ) -> StaffMessageRef:
        """A staff member answers and the platform refuses the send with `error`."""
        self.customer.fail_next(error)
        return await self.reply(thread, text)

    async def outgoing(self) -> list[tuple[str, str | None, str | None]]:
        """Every stored message to a customer: (text, status, error code), oldest first."""
        rows = await self.sql(
            "select text, status, error_code from messages where direction = 'out' order by id"
        )
        return [(str(t), s, e) for t, s, e in rows]

    async def stop(self) -> None:
        """Stop the dispatcher and the writer; close the database."""
        await self.dispatcher.stop()
        await self.writer.stop()
        await self.pipeline.outbound.close()
        await self.db.close()


def rig_fixture(
    *, name: str = "rig", customer: Callable[[], FakeConnector] | None = None, **sections: Any
) -> Any:
    """A pytest fixture `name` that yields a started rig and stops it after the test;
    `customer` makes the test's connector, `sections` are settings sections."""

    @pytest.fixture(name=name)
    async def running(tmp_path: Path) -> AsyncIterator[Rig]:
        rig = await start_rig(tmp_path, customer=customer() if customer else None, **sections)
        yield rig
        await rig.stop()

    return running


async def start_rig(
    tmp_path: Path,
    *,
    customer: FakeConnector | None = None,
    surface: FakeSurface | None = None,
    settings: Settings | None = None,
    **sections: dict[str, Any],
) -> Rig:
    """A migrated SQLite database in `tmp_path` and a running pipeline between the fakes;
    `sections` are settings sections (`rules={"timezone": "Europe/Berlin"}`)."""
    # Card refreshes wait for a window of their own: a short one keeps `settle` short.
    sections = {**sections, "bridge": {"card_refresh_s": 0.02, **sections.get("bridge", {})}}
    settings = settings or make_settings(tmp_path, sections=sections)
    db = await _migrated(settings.bridge.database)
    writer = Writer(db, window_ms=settings.bridge.commit_window_ms)
    clock = ManualClock()
    pipeline = Pipeline(settings, db, writer, clock=clock)
    customer = customer or FakeConnector()
    surface = surface or FakeSurface()
    customer.sink, customer.clock = pipeline.on_inbound, clock
    surface.sink, surface.clock = pipeline.on_staff, clock
    pipeline.add_connector(customer)
    pipeline.add_surface(surface)
    dispatcher = Dispatcher(
        db, writer, pipeline.handlers(), RateLimiter(pipeline.rate_limits()), poll_interval=0.02
    )
    writer.set_on_commit(dispatcher.notify)
    rig = Rig(settings, db, writer, pipeline, dispatcher, customer, surface, clock)
    await writer.start()
    await dispatcher.start()
    return rig


_SQLITE = "sqlite+aiosqlite:///"


async def _migrated(url: str) -> Database:
    """The database at `url`, migrated; a SQLite file starts as the test process's migrated
    copy (`tests.harness.migrated_database`), so the migration finds nothing left to do."""
    if url.startswith(_SQLITE):
        migrated_database(Path(url.removeprefix(_SQLITE)))
    db = Database(url)
    await db.migrate()
    return db

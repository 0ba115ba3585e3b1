"""Broadcasts: prepare a newsletter and see its audience, start or schedule it, follow it,
cancel, pause and resume it (the `/broadcast` command's logic and checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field

from bridge.api.errors import ApiError, not_found
from bridge.api.framework import ORIGIN, Call, Resource
from bridge.api.idempotency import Replay
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import ID_MAX, Body, Record, Time
from bridge.config_sections import PLATFORMS, PlatformName
from bridge.services import broadcasts, channels
from bridge.services.broadcasts import STARTED, Draft, Origin, Status
from bridge.services.templates import template_language, template_name
from bridge.types import Role
from storage import Tx
from storage.broadcasts_store import BroadcastRecord

resource = Resource(
    "Broadcasts",
    "Newsletters to subscriber channels or to everyone on a messenger who opted in: prepared"
    " as a draft with its audience, then started (or scheduled) once confirmed.",
)

Platform = PlatformName
State = Literal["draft", "scheduled", "running", "paused", "done", "cancelled"]
TEXT_MAX = 4096
PARAMS_MAX = 20
# How far ahead a broadcast may be scheduled.
AHEAD_MAX = timedelta(days=366)


class BroadcastTemplate(Record):
    """The WhatsApp template a broadcast sends (WhatsApp takes newsletters only as one)."""

    name: str
    language: str | None
    params: list[str] = Field(description="In order; placeholders such as {FIRSTNAME} are filled.")


class Post(Record):
    """What became of publishing the broadcast on one target."""

    target: str = Field(description="facebook or x.")
    state: str = Field(description="posted, failed or cancelled.")
    post_id: str | None
    url: str | None
    reason: str | None
    at: datetime


class Broadcast(Record):
    """A broadcast with the figures of `/broadcast status`."""

    id: int
    state: State
    created_by: str
    created_at: datetime
    text: str = Field(description="As sent: its links are the broadcast's short links.")
    template: BroadcastTemplate | None
    channel_ids: list[int] = Field(description="The subscriber channels it goes to.")
    platforms: list[str] = Field(description="Messengers whose every opted-in contact gets it.")
    publish: list[str] = Field(description="Where it is also posted publicly: facebook, x.")
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    queued: int = Field(description="Recipients queued so far.")
    waiting: int = Field(description="Queued recipients without an outcome yet.")
    counts: dict[str, dict[str, int]] = Field(
        description="Per platform, recipients per outcome: sent, delivered, read, failed,"
        " skipped, cancelled, interrupted."
    )
    totals: dict[str, int] = Field(description="Recipients per outcome, every platform together.")
    clicks: int = Field(description="Clicks on its short links.")
    clicked_by: int = Field(description="Recipients who clicked any of its links.")
    posts: list[Post]
    summary: str = Field(description="The progress message's text, as the chat shows it.")


class BroadcastLine(Record):
    """A broadcast as lists show it."""

    id: int
    state: State
    created_by: str
    created_at: datetime
    text: str
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    queued: int
    handled: int = Field(description="Recipients with an outcome (sent, failed, skipped, …).")


class BroadcastPage(Page):
    """A page of broadcasts, oldest first."""

    items: list[BroadcastLine]


class Audience(Record):
    """Who a broadcast reaches on one messenger, and who it skips."""

    platform: str
    recipients: int
    skipped: dict[str, int] = Field(
        description="Per reason (blacklisted, unsubscribed, WhatsApp without a template,"
        " outside Messenger's 24-hour window), how many contacts it skips."
    )


class PublishProblem(Record):
    """Why the text cannot be published on a target as it is (confirm refuses it)."""

    target: str
    problem: str


class BroadcastDraft(Record):
    """A broadcast with its preview: nothing is sent before it is confirmed."""

    broadcast: Broadcast
    recipients: int = Field(description="Contacts it goes to now, after exclusions.")
    audience: list[Audience]
    sample: str = Field(description="The text as a recipient named Anna Schmidt reads it.")
    publish_problems: list[PublishProblem]


class TemplateChoice(Body):
    """The WhatsApp template to send, with its parameters."""

    name: str = Field(min_length=1, max_length=512, examples=["order_update"])
    language: str | None = Field(None, min_length=2, max_length=16, examples=["en_US"])
    params: list[str] = Field(
        default_factory=list,
        max_length=PARAMS_MAX,
        description="Placeholders such as {FIRSTNAME} are filled for each recipient.",
    )


class BroadcastCreate(Body):
    """A newsletter, as `/broadcast new` takes it: to channels and/or whole messengers, with a
    text, a WhatsApp template or both."""

    channel_ids: list[Annotated[int, Field(ge=1, le=ID_MAX)]] = Field(
        default_factory=list, max_length=50
    )
    platforms: list[Platform] = Field(default_factory=list, max_length=len(PLATFORMS))
    text: str | None = Field(
        None,
        min_length=1,
        max_length=TEXT_MAX,
        description="Placeholders: {NAME}, {FIRSTNAME}, {NICKNAME}, {MSISDN}, {CONTACTID},"
        " {PLATFORM}. Links become short links that count clicks.",
        examples=["Hello {FIRSTNAME}, our sale starts on Friday!"],
    )
    template: TemplateChoice | None = None
    scheduled_at: Time | None = Field(
        None, description="When it goes once confirmed (ISO 8601; UTC unless it says); now."
    )
    publish: list[Literal["facebook", "x"]] = Field(
        default_factory=list,
        max_length=2,
        description="Also post the text, as written, on these (as the settings turn them on).",
    )


class BroadcastConfirm(Body):
    """When to send: its own time (set when it was prepared), or now."""

    scheduled_at: Time | None = Field(
        None, description="Send at this time instead (ISO 8601; UTC unless it says)."
    )


# -- answers ---------------------------------------------------------------------------------


def _template(found: dict[str, Any] | None) -> BroadcastTemplate | None:
    if found is None:
        return None
    language = found.get("language")
    return BroadcastTemplate(
        name=str(found.get("name") or ""),
        language=str(language) if language else None,
        params=[str(p) for p in found.get("params") or ()],
    )


def _state(value: str) -> State:
    states: dict[str, State] = {
        "draft": "draft",
        "scheduled": "scheduled",
        "running": "running",
        "paused": "paused",
        "done": "done",
        "cancelled": "cancelled",
    }
    return states[value]


def _broadcast(call: Call, found: Status) -> Broadcast:
    broadcast = found.record
    totals: dict[str, int] = {}
    for per in found.counts.values():
        for state, n in per.items():
            totals[state] = totals.get(state, 0) + n
    return Broadcast(
        id=broadcast.id,
        state=_state(broadcast.state),
        created_by=broadcast.created_by,
        created_at=broadcast.created_at,
        text=broadcast.text,
        template=_template(broadcast.template),
        channel_ids=list(broadcast.channel_ids),
        platforms=list(broadcast.platforms),
        publish=list(broadcast.publish),
        scheduled_at=broadcast.scheduled_at,
        started_at=broadcast.started_at,
        finished_at=broadcast.finished_at,
        queued=broadcast.queued,
        waiting=0 if found.finished else max(broadcast.queued - sum(totals.values()), 0),
        counts={p: dict(sorted(per.items())) for p, per in sorted(found.counts.items())},
        totals=dict(sorted(totals.items())),
        clicks=found.clicks[0],
        clicked_by=found.clicks[1],
        posts=[
            Post(
                target=p.target,
                state=p.state,
                post_id=p.post_id,
                url=p.url,
                reason=p.reason,
                at=p.at,
            )
            for p in found.posts.values()
        ],
        summary=broadcasts.status_text(call.services, found, call.now),
    )


def _line(broadcast: BroadcastRecord, handled: int) -> BroadcastLine:
    return BroadcastLine(
        id=broadcast.id,
        state=_state(broadcast.state),
        created_by=broadcast.created_by,
        created_at=broadcast.created_at,
        text=broadcast.text,
        scheduled_at=broadcast.scheduled_at,
        started_at=broadcast.started_at,
        finished_at=broadcast.finished_at,
        queued=broadcast.queued,
        handled=handled,
    )


async def _status(call: Call, broadcast_id: int) -> Broadcast:
    found = await broadcasts.status(call.services, broadcast_id)
    if found is None:
        raise not_found(f"there is no broadcast {broadcast_id}")
    return _broadcast(call, found)


async def _draft(call: Call, broadcast_id: int) -> BroadcastDraft:
    shown = await broadcasts.preview(call.services, broadcast_id, call.now)
    audience = []
    for platform in sorted(shown.counts):
        per = dict(shown.counts[platform])
        going = per.pop("to", 0)
        audience.append(
            Audience(platform=platform, recipients=going, skipped=dict(sorted(per.items())))
        )
    return BroadcastDraft(
        broadcast=await _status(call, broadcast_id),
        recipients=sum(a.recipients for a in audience),
        audience=audience,
        sample=shown.sample,
        publish_problems=[PublishProblem(target=t, problem=p) for t, p in shown.problems],
    )


def _moment(call: Call, value: datetime, field: str) -> datetime:
    """A time to send at, in UTC: in the future, and within a year."""
    try:
        moment = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:  # an offset that moves a time at the end of the calendar past it
        raise ApiError(422, "invalid", f"{field} is out of range", field=field) from None
    if moment > call.now + AHEAD_MAX:
        raise ApiError(422, "invalid", f"{field} is more than a year away", field=field)
    if moment <= call.now:
        raise ApiError(422, "invalid", f"{field} is in the past", field=field)
    return moment


# -- operations ------------------------------------------------------------------------------


@resource.get(
    "/broadcasts",
    summary="List broadcasts",
    role=Role.AGENT,
    query=PageQuery,
    response=BroadcastPage,
)
async def list_broadcasts(call: Call) -> BroadcastPage:
    """By id, oldest first, with how many recipients each has handled."""
    after, limit = call.after(), call.limit
    rows = await broadcasts.page(call.services, after, limit + 1)
    return call.page(BroadcastPage, rows, key=lambda r: r[0].id, item=lambda r: _line(*r))


@resource.post(
    "/broadcasts",
    summary="Prepare a broadcast",
    role=Role.MANAGER,
    body=BroadcastCreate,
    response=BroadcastDraft,
    status=201,
)
async def create_broadcast(call: Call) -> BroadcastDraft:
    """As `/broadcast new`: a draft, with its audience per messenger after exclusions, who is
    skipped and why, and how the text reads. Nothing is sent before
    `POST /broadcasts/{broadcast_id}/confirm`. Refused (422) for an unknown channel or
    placeholder, a time in the past, a text with placeholders to publish, or a target the
    settings do not turn on."""
    body = call.body(BroadcastCreate)
    if not body.channel_ids and not body.platforms:
        problem = "say who gets it: channel_ids, platforms or both"
        raise ApiError(422, "invalid", problem, field="channel_ids")
    channel_ids = list(dict.fromkeys(body.channel_ids))
    known = {c.id for c in await channels.list_channels(call.services)}
    missing = [c for c in channel_ids if c not in known]
    if missing:
        raise ApiError(422, "invalid", f"there is no channel {missing[0]}", field="channel_ids")
    template: dict[str, Any] | None = None
    params: list[str] = []
    if body.template is not None:
        with call.field("template.name"):
            name = template_name(body.template.name)
        language = None
        if body.template.language is not None:
            with call.field("template.language"):
                language = template_language(body.template.language)
        template, params = {"name": name, "language": language}, list(body.template.params)
    elif body.text is None:
        raise ApiError(422, "invalid", "give a text, a template or both", field="text")
    scheduled = None
    if body.scheduled_at is not None:
        scheduled = _moment(call, body.scheduled_at, "scheduled_at")
    with call.field("text"):
        draft = Draft(
            channel_ids=channel_ids,
            platforms=list(dict.fromkeys(body.platforms)),
            text=body.text or "",
            template=template,
            params=params,
            scheduled=scheduled,
            publish_to=list(body.publish),
        )
        origin = Origin(call.who, call.now, ORIGIN)
        broadcast_id = await broadcasts.prepare(call.services, draft, origin)
    return await _draft(call, broadcast_id)


@resource.get(
    "/broadcasts/{broadcast_id}",
    summary="Show a broadcast and how far it has got",
    role=Role.AGENT,
    response=Broadcast,
)
async def show_broadcast(call: Call) -> Broadcast:
    """The figures of `/broadcast status`: recipients per messenger and outcome, clicks,
    posts, and the progress message's text."""
    return await _status(call, call.id("broadcast_id"))


@resource.get(
    "/broadcasts/{broadcast_id}/preview",
    summary="Preview a broadcast's audience",
    role=Role.AGENT,
    response=BroadcastDraft,
)
async def preview_broadcast(call: Call) -> BroadcastDraft:
    """Who it would reach now, per messenger after exclusions, as at its preparation."""
    return await _draft(call, call.id("broadcast_id"))


@resource.post(
    "/broadcasts/{broadcast_id}/confirm",
    summary="Start (or schedule) a prepared broadcast",
    role=Role.MANAGER,
    body=BroadcastConfirm,
    response=Broadcast,
    status=202,
    errors=(409,),
    idempotent=True,
)
async def confirm_broadcast(call: Call) -> Broadcast | Replay:
    """As `/broadcast confirm`: it starts now, or at `scheduled_at` (or the time it was
    prepared for). Each recipient gets it once, whatever is repeated; a broadcast that is not
    a draft any more is a 409, and with the same `Idempotency-Key` the first answer comes
    again. Refused (422) while it cannot be published where it says."""
    broadcast_id = call.id("broadcast_id")
    body = call.body(BroadcastConfirm)
    at = _moment(call, body.scheduled_at, "scheduled_at") if body.scheduled_at else None
    prepared = await broadcasts.find(call.services, broadcast_id)
    if prepared is None:
        raise not_found(f"there is no broadcast {broadcast_id}")
    broadcasts.check_confirmable(call.services, prepared)
    now = call.now

    def write(tx: Tx) -> Broadcast | str:
        outcome = broadcasts.start(tx, broadcast_id, now, at)
        found = broadcasts.status_in(tx, broadcast_id)
        if outcome != STARTED or found is None:
            return outcome  # nothing was written: answered below, and not kept
        return _broadcast(call, found)

    done = await call.write_once(write)
    if isinstance(done, str):
        raise broadcasts.not_started(broadcast_id, done)
    return done


async def _change(call: Call, action: str) -> Broadcast:
    broadcast_id = call.id("broadcast_id")
    await broadcasts.change_state(call.services, broadcast_id, action)
    return await _status(call, broadcast_id)


@resource.post(
    "/broadcasts/{broadcast_id}/cancel",
    summary="Cancel a broadcast",
    role=Role.MANAGER,
    response=Broadcast,
    errors=(409,),
)
async def cancel_broadcast(call: Call) -> Broadcast:
    """As `/broadcast cancel`: nothing not yet sent goes out (a draft is dropped). 409 when it
    is done or cancelled already."""
    return await _change(call, "cancel")


@resource.post(
    "/broadcasts/{broadcast_id}/pause",
    summary="Pause a broadcast",
    role=Role.MANAGER,
    response=Broadcast,
    errors=(409,),
)
async def pause_broadcast(call: Call) -> Broadcast:
    """As `/broadcast pause`: every unsent message of it is held. 409 unless it is scheduled
    or running."""
    return await _change(call, "pause")


@resource.post(
    "/broadcasts/{broadcast_id}/resume",
    summary="Resume a paused broadcast",
    role=Role.MANAGER,
    response=Broadcast,
    errors=(409,),
)
async def resume_broadcast(call: Call) -> Broadcast:
    """As `/broadcast resume`: it carries on within about a second. 409 unless it is paused."""
    return await _change(call, "resume")

"""Staff actions refused for want of the agent role: the role check of thread replies, edits
and deletions, and what the person is told about it, privately.

Anyone in the support channel (or room) can write in a customer's thread; only the bridge's
own staff with the agent role may reach the customer through it. A refused action leaves
nothing for the customer: the person gets an explanation only they are meant to read (an
ephemeral message in Slack, a notice in Matrix that answers their event and names them) and
their message gets the failure mark.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.config import Settings
from bridge.jobs import StaffMarkJob, StaffTellJob
from bridge.protocols import StaffSurface
from bridge.types import (
    ConversationId,
    DeliveryStatus,
    Role,
    StaffMessageRef,
    StaffUserId,
    SurfaceName,
    ThreadRef,
)
from storage import NewJob, Tx
from storage.roles import admins_of, effective_role

log = logging.getLogger(__name__)

# What was refused, as the first words of the explanation say it.
WHAT = {
    "reply": "Not sent to the customer: replying to customers",
    "edit": "Your edit was not sent to the customer: changing what a customer was sent",
    "deletion": "Your deletion was not carried out for the customer: deleting what a customer"
    " was sent",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """One refused staff action: who, where, and which of their messages shows it."""

    conversation: ConversationId
    surface: SurfaceName
    thread: ThreadRef
    user: StaffUserId | None
    what: str  # a key of WHAT
    role: Role
    stranger: bool
    # The event the explanation answers (Matrix replies to it) and the message to mark.
    answer_to: StaffMessageRef
    mark: StaffMessageRef | None


def staff_role(
    tx: Tx, settings: Settings, surface: str, user: str | None, *, stranger: bool
) -> Role:
    """The role of whoever acted in a thread; someone the surface could not name has none."""
    if user is None:
        return Role.NONE
    bridge = settings.bridge
    return effective_role(
        tx.conn,
        surface,
        user,
        admins=bridge.admins,
        default=bridge.default_role,
        stranger=stranger,
    )


def explanation(refusal: Refusal, admins: Sequence[str]) -> str:
    """What the person is told: why nothing reached the customer and who can change that."""
    prefix = "!" if refusal.surface == "matrix" else "/"  # Matrix has no slash commands
    who = refusal.user or "you"
    head = WHAT[refusal.what]
    if refusal.stranger and refusal.surface == "matrix":
        return (
            f"{head} needs the agent role, and {who} is on a homeserver whose users are not"
            " the bridge's staff: only users of its own homeserver and of those listed in"
            " [matrix] allowed_servers answer customers."
        )
    if refusal.stranger:
        return (
            f"{head} needs the agent role, and {who} is not a member of the workspace the"
            " bridge serves (a shared channel's guest from another organisation, say): only"
            " its own staff answer customers."
        )
    if admins:
        granters = ", ".join(f"`{admin}`" for admin in admins)
        how = f"An admin ({granters}) can give it with `{prefix}user role {who} agent`."
    else:
        how = (
            "Nobody is an admin yet: the bridge's settings name the first ones"
            f" ([bridge] admins), who can give it with `{prefix}user role {who} agent`."
        )
    return f"{head} needs the agent role, and you have the {refusal.role.label} role. {how}"


def refusal_jobs(
    tx: Tx, settings: Settings, surface: StaffSurface, refusal: Refusal
) -> list[NewJob]:
    """The outbox rows of a refusal: the private explanation and the failure mark."""
    log.info(
        "a %s by %s on %s was refused: role %s%s",
        refusal.what,
        refusal.user,
        refusal.surface,
        refusal.role.label,
        " (not of this workspace)" if refusal.stranger else "",
    )
    text = explanation(refusal, admins_of(tx.conn, settings.bridge.admins))
    tell = StaffTellJob(
        surface=refusal.surface,
        thread=refusal.thread,
        user=refusal.user,
        ref=refusal.answer_to,
        text=text,
    )
    conversation = refusal.conversation
    jobs = [tell.new_job(conversation, refusal.what, surface.rate_keys("post", None))]
    if refusal.mark is not None:
        mark = StaffMarkJob(surface=refusal.surface, ref=refusal.mark, status=DeliveryStatus.FAILED)
        jobs.append(mark.refused_job(conversation, surface.rate_keys("mark", None)))
    return jobs

"""The one refusal check: what may not be sent to a customer, and by whom.

A message to a contact is refused while the contact is blacklisted for outgoing messages, has
opted out, or (for a free-form message) is outside the platform's window. Staff actions are
refused for want of the agent role: anyone in the support channel (or room) can write in a
customer's thread; only the bridge's own staff with the agent role may reach the customer
through it. A refused action leaves nothing for the customer: the person gets an explanation
only they are meant to read (an ephemeral message in Slack, a notice in Matrix that answers
their event and names them) and their message gets the failure mark.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bridge.config import Settings
from bridge.jobs import StaffMarkJob, StaffTellJob
from bridge.pipeline.directory import Directory
from bridge.protocols import Connector, StaffSurface
from bridge.types import (
    ContactId,
    ConversationId,
    DeliveryStatus,
    Role,
    StaffMessageRef,
    StaffUserId,
    SurfaceName,
    ThreadRef,
)
from bridge.webhooks import SCOPE_CONTACT, WebhookEvents
from storage import ContactRecord, NewJob, Tx
from storage.subscriptions import BlockRecord

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
    return tx.roles.effective_role(
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
    text = explanation(refusal, tx.roles.admins_of(settings.bridge.admins))
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


def refused_now(
    contact: ContactRecord,
    entry: BlockRecord | None,
    connector: Connector | None,
    template: bool,
    now: datetime,
) -> tuple[str, str] | None:
    """`Policy.refused` from state already read: the contact (whole row) and its blacklist
    entry, so a batch of answers reads them once for all its contacts."""
    if entry is not None and entry.blocks("out", now):
        until = f" until {entry.until:%Y-%m-%d %H:%M} UTC" if entry.until else ""
        why = f" ({entry.reason})" if entry.reason else ""
        return f"the contact is blacklisted for outgoing messages{until}{why}", "blacklisted"
    if contact.opted_out_at is not None:
        return (
            f"the customer opted out on {contact.opted_out_at:%Y-%m-%d %H:%M} UTC; nothing"
            " is sent to them until they opt in again"
        ), "opted_out"
    if connector is not None and not template:
        window = connector.window_refusal(contact.last_seen, now)
        return (window, "window_closed") if window is not None else None
    return None


class Policy:
    """Whether a contact may be sent to now, and the opt-outs that decide it."""

    def __init__(
        self, directory: Directory, webhooks: WebhookEvents, clock: Callable[[], datetime]
    ) -> None:
        self.directory = directory
        self.webhooks = webhooks
        self.clock = clock

    def refusal(
        self,
        tx: Tx,
        contact: ContactRecord,
        connector: Connector | None,
        template: bool,
    ) -> str | None:
        """Why nothing may be sent to this contact now, or None."""
        refused = self.refused(tx, contact, connector, template)
        return refused[0] if refused is not None else None

    def refused(
        self,
        tx: Tx,
        contact: ContactRecord,
        connector: Connector | None,
        template: bool,
    ) -> tuple[str, str] | None:
        """Why nothing may be sent to this contact now, in words and as a code (blacklisted,
        opted_out, window_closed), or None."""
        entry = tx.subscriptions.blocks_of([contact.id]).get(contact.id)
        return refused_now(contact, entry, connector, template, self.clock())

    def opt_out(
        self,
        tx: Tx,
        contact_id: ContactId,
        conversation_id: ConversationId,
        source: str,
        *,
        back_in: bool = False,
        cause: str | None = None,
    ) -> list[NewJob]:
        """Record an opt-out (or an opt-in again) and tell the thread."""
        # `cause` (the message that asked for it) names the webhook event, else the moment of
        # the change does: a change is recorded once, so either is stable.
        at = self.clock()
        changed = tx.set_opt_out(contact_id, None if back_in else at, source)
        if not changed:
            return []
        text = (
            f"The customer opted in again ({source}); replies reach them again."
            if back_in
            else f"The customer opted out ({source}): nothing is sent to them until they opt in"
            " again (for SMS, by texting START)."
        )
        jobs = self.webhooks.opted(
            tx,
            contact_id,
            opted_in=back_in,
            scope=SCOPE_CONTACT,
            source=source,
            cause=cause or f"t{int(at.timestamp() * 1000)}",
        )
        for surface in self.directory.surfaces:
            jobs.append(self.directory.card_job(conversation_id, surface, None))
            jobs.append(
                self.directory.notice_job(
                    conversation_id, surface, f"consent:{contact_id}:{time.time()}", text
                )
            )
        return jobs

"""How the bridge is doing: its accounts, staff surfaces, delivery queue and contacts."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.services import Services
from storage import Tx


@dataclass(frozen=True, slots=True)
class Figures:
    """The bridge's figures as `/bridge status` shows them."""

    accounts: tuple[str, ...]  # platform:account
    surfaces: tuple[str, ...]
    outbox: dict[str, int]  # rows per state
    contacts: int
    open_conversations: int


async def figures(services: Services) -> Figures:
    """The bridge's figures now."""

    def read(tx: Tx) -> tuple[dict[str, int], tuple[int, int]]:
        return tx.outbox_counts(), tx.contact_admin.counts()

    outbox, (contacts, open_conversations) = await services.read(read)
    return Figures(
        accounts=tuple(f"{c.platform}:{c.account}" for c in services.connectors),
        surfaces=tuple(services.pipeline.surfaces),
        outbox=outbox,
        contacts=contacts,
        open_conversations=open_conversations,
    )

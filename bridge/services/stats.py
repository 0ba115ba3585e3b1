"""Statistics of the last days, as `/stats`, the REST API and the stats page show them."""

from __future__ import annotations

from datetime import datetime

from bridge.services import Services
from storage.stats import Overview


async def overview(
    services: Services, now: datetime, *, days: int, broadcasts: int, links: int
) -> Overview:
    """Messages per platform and day, contacts, channels, the latest `broadcasts` broadcasts
    and the `links` most clicked short links, over the last `days` UTC days."""
    return await services.read(
        lambda tx: tx.stats.overview(now, days=days, broadcasts=broadcasts, links=links)
    )

"""answer-file: the file an action sends, fetched through the outbound guard once the whole
rule passed its checks, and kept in the rule's own transaction (a refused rule keeps none)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

import aiohttp

from bridge.errors import AddressRefused, Invalid, Refused, TooLarge
from bridge.security import FILE_CAP, MAX_REDIRECTS, file_name, read_capped
from bridge.services import Services
from bridge.types import FileData, MediaKind, Rule
from storage import Tx

FILE_MAX = FILE_CAP
# Stands in for an answer-file's file while the rule is checked; it is fetched last.
FILE_PENDING = 1


def check_file_url(url: str) -> None:
    """An answer-file's URL has the shape of one (the guard checks where it leads)."""
    if not url.startswith(("https://", "http://")):
        raise Invalid("answer-file needs the file's URL (https://…)")


async def fetch_file(services: Services, url: str) -> FileData:
    """Download the file an answer-file action sends (it is kept with the rule).

    The guard's refusal names its reason; past the guard every failure reads the same, so
    that the answers do not tell which internal addresses or ports answer.
    """
    check_file_url(url)
    outbound = services.pipeline.outbound
    try:
        await outbound.check(url)
    except AddressRefused as exc:
        raise Refused(f"The rule was not saved: {exc.reason}") from None
    failed = Refused(f"The rule was not saved: the file at {url} could not be fetched")
    try:
        async with outbound.request(
            "GET", url, redirects=MAX_REDIRECTS, timeout=aiohttp.ClientTimeout(total=30)
        ) as response:
            if response.status != 200:
                raise failed
            data = await read_capped(response, FILE_MAX)
            mime = response.content_type or "application/octet-stream"
    except AddressRefused as exc:  # a redirect, or the name now resolves elsewhere
        raise Refused(f"The rule was not saved: {exc.reason}") from None
    except TooLarge:
        raise Refused("the file is larger than 16 MB; messengers would refuse it") from None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        raise failed from None
    if not data:
        raise Refused(f"The rule was not saved: {url} sent an empty file")
    return FileData(kind=MediaKind.DOCUMENT, filename=file_name(url), data=data, mime_type=mime)


async def fetch_files(services: Services, urls: Mapping[int, str]) -> dict[int, FileData]:
    """The files of a rule's answer-file actions, by action index (nothing is stored yet)."""
    return {index: await fetch_file(services, url) for index, url in urls.items()}


def with_files(tx: Tx, built: Rule, files: Mapping[int, FileData], who: str, now: datetime) -> Rule:
    """`built` with the files of its answer-file actions kept, in the rule's transaction."""
    if not files:
        return built
    actions = list(built.actions)
    for index, file in files.items():
        file_id = tx.rules.save_file(file, who, now)
        actions[index] = replace(actions[index], media_id=file_id)
    return replace(built, actions=tuple(actions))

"""Subscriber channels customers join and leave by keyword, their members, and the consent
words (stop, start) that act on every channel. The pipeline is told when keywords change."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from bridge.config_sections import PLATFORMS
from bridge.errors import Conflict, Invalid, NotFound, Refused
from bridge.services import Services
from bridge.services.contacts import label
from storage import ContactRecord, Tx
from storage.channels_extra import MemberRecord
from storage.subscriptions import ChannelRecord, fold

NAME_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_NAME = re.compile(NAME_PATTERN)
LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")
KEYWORD_MAX = 64
REPLY_MAX = 1000
CONSENT_MAX = 80
KINDS = {"stop": "unsubscribes from every channel", "start": "brings back what STOP ended"}

Counts = dict[int, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Members:
    """A channel, its member counts per platform, and the first page of its members."""

    channel: ChannelRecord
    counts: dict[str, int]
    page: list[MemberRecord]


# -- checks -----------------------------------------------------------------------------------


def channel_name(word: str) -> str:
    """A channel name as typed, if it is one: 1-64 letters, digits, - or _."""
    if _NAME.fullmatch(word) is None:
        raise Invalid(f"{word} is not a channel name: 1-64 letters, digits, - or _")
    return word


def checked_keyword(word: str, what: str = "a keyword") -> str:
    """A keyword or consent word: 1-64 characters, no outer spaces, backticks or breaks."""
    if not word or len(word) > KEYWORD_MAX:
        raise Invalid(f"{what} has 1-{KEYWORD_MAX} characters ({word!r} has {len(word)})")
    if word != word.strip():
        raise Invalid(f"{what} may not start or end with a space ({word!r})")
    if "`" in word or "\n" in word:
        raise Invalid(f"{what} may not contain backticks or line breaks")
    return word


def keyword_or_none(word: str | None) -> str | None:
    """A join or leave keyword, checked; None for none."""
    if word is None or word.lower() == "none":
        return None
    return checked_keyword(word)


def platform_or_none(word: str | None) -> str | None:
    """A platform a channel may be bound to; None for none."""
    if word is None or word.lower() == "none":
        return None
    if word.lower() not in PLATFORMS:
        raise Invalid(f"{word} is not a platform; use {', '.join(PLATFORMS)} or none")
    return word.lower()


def consent_text(typed: str | None) -> str:
    """How a contact added by hand agreed to get messages, as it is kept."""
    consent = (typed or "").strip()
    if not consent:
        raise Invalid("adding a contact by hand needs --consent: how they agreed to get messages")
    if len(consent) > CONSENT_MAX:
        raise Invalid(f"the consent text is {len(consent)} characters; at most {CONSENT_MAX}")
    return consent


def _check_keyword(tx: Tx, keyword: str, channel_id: int | None, which: str = "") -> None:
    """Refuse a consent word, and another channel's keyword (or this one's other keyword)."""
    folded = fold(keyword)
    kind = tx.subscriptions.consent_words().get(folded)
    if kind is not None:
        raise Refused(f"{keyword} is a {kind} word ({KINDS[kind]}); choose another keyword.")
    for ch in tx.subscriptions.all_channels():
        for used, label_ in ((ch.join_keyword, "join"), (ch.leave_keyword, "leave")):
            if used and fold(used) == folded and not (ch.id == channel_id and label_ == which):
                raise Conflict(f"{keyword} is the {label_} keyword of channel {ch.name} already.")


def _known(found: ChannelRecord | None, name: str) -> ChannelRecord:
    if found is None:
        raise NotFound(f"There is no channel {name}. `/channel list` shows them all.")
    return found


# -- reading ----------------------------------------------------------------------------------


async def all_channels(services: Services) -> tuple[list[ChannelRecord], Counts]:
    """Every channel, and the member counts per channel and platform."""

    def read(tx: Tx) -> tuple[list[ChannelRecord], Counts]:
        return tx.subscriptions.all_channels(), tx.subscriptions.member_counts()

    return await services.read(read)


async def list_channels(services: Services) -> list[ChannelRecord]:
    """Every channel."""
    return await services.read(lambda tx: tx.subscriptions.all_channels())


async def channel_by_name(services: Services, name: str) -> ChannelRecord | None:
    """A channel by its name."""
    return await services.read(lambda tx: tx.subscriptions.channel_by_name(name))


async def channel_joined_by(services: Services, text: str) -> ChannelRecord | None:
    """The channel whose join keyword a message of `text` is (compared as the pipeline does)."""
    join, _ = await services.read(lambda tx: tx.subscriptions.channels_by_keyword())
    return join.get(fold(text))


async def channel_by_id(services: Services, channel_id: int) -> ChannelRecord | None:
    """A channel by id."""
    return await services.read(lambda tx: tx.subscriptions.channel_by_id(channel_id))


async def channel_counted(
    services: Services, channel_id: int
) -> tuple[ChannelRecord | None, Counts]:
    """A channel by id, and the member counts per channel and platform."""

    def read(tx: Tx) -> tuple[ChannelRecord | None, Counts]:
        return tx.subscriptions.channel_by_id(channel_id), tx.subscriptions.member_counts()

    return await services.read(read)


async def channel_named(services: Services, name: str) -> tuple[ChannelRecord, dict[str, int]]:
    """A channel by name with its member counts per platform."""

    def read(tx: Tx) -> tuple[ChannelRecord | None, dict[str, int]]:
        found = tx.subscriptions.channel_by_name(name)
        counts = tx.subscriptions.member_counts().get(found.id, {}) if found else {}
        return found, counts

    found, counts = await services.read(read)
    return _known(found, name), counts


async def members(services: Services, name: str, shown: int) -> Members:
    """A channel's member counts and its first `shown` members."""

    def read(tx: Tx) -> Members | None:
        found = tx.subscriptions.channel_by_name(name)
        if found is None:
            return None
        counts = tx.subscriptions.member_counts().get(found.id, {})
        return Members(found, counts, tx.members.member_page(found.id, shown))

    listed = await services.read(read)
    if listed is None:
        raise NotFound(f"There is no channel {name}. `/channel list` shows them all.")
    return listed


async def members_after(
    services: Services, channel_id: int, after: int | None, limit: int
) -> list[MemberRecord]:
    """Current members by contact id, from after `after`."""
    return await services.read(
        lambda tx: tx.members.members_after(channel_id, after=after, limit=limit)
    )


# -- changing channels ------------------------------------------------------------------------


async def create_channel(
    services: Services,
    name: str,
    join: str | None,
    leave: str | None,
    platform: str | None,
    *,
    who: str,
    now: datetime,
) -> ChannelRecord:
    """Create a channel, checking its name, keywords (`none`: no keyword) and platform."""
    name = channel_name(name)
    join = keyword_or_none(join)
    leave = keyword_or_none(leave)
    platform = platform_or_none(platform)
    if join is not None and leave is not None and fold(join) == fold(leave):
        raise Invalid("the join and the leave keyword must differ")
    by = who[:128]

    def write(tx: Tx) -> ChannelRecord:
        if tx.subscriptions.channel_by_name(name) is not None:
            raise Conflict(f"There is a channel {name} already.")
        for keyword in (join, leave):
            if keyword is not None:
                _check_keyword(tx, keyword, None)
        created = tx.subscriptions.create_channel(name, by, now)
        tx.subscriptions.update_channel(
            created.id, join_keyword=join, leave_keyword=leave, platform=platform
        )
        found = tx.subscriptions.channel_by_name(name)
        assert found is not None
        return found

    created = await services.write(write)
    services.pipeline.keywords_changed()
    return created


async def rename_channel(services: Services, old: str, new: str) -> ChannelRecord:
    """Give a channel another name (checked by the caller); the channel as it was."""

    def write(tx: Tx) -> ChannelRecord:
        found = _known(tx.subscriptions.channel_by_name(old), old)
        other = tx.subscriptions.channel_by_name(new)
        if other is not None and other.id != found.id:
            raise Conflict(f"There is a channel {other.name} already.")
        tx.subscriptions.update_channel(found.id, name=new)
        return found

    found = await services.write(write)
    services.pipeline.keywords_changed()  # the default confirmations name the channel
    return found


async def delete_channel(
    services: Services, name: str, *, confirmed: bool
) -> tuple[ChannelRecord, int]:
    """Delete a channel (only count its members unless `confirmed`); the channel and how many
    members it had."""

    def write(tx: Tx) -> tuple[ChannelRecord, int]:
        found = _known(tx.subscriptions.channel_by_name(name), name)
        count = sum(tx.subscriptions.member_counts().get(found.id, {}).values())
        if confirmed:
            tx.subscriptions.delete_channel(found.id)
        return found, count

    found, count = await services.write(write)
    if confirmed:
        services.pipeline.keywords_changed()
    return found, count


async def set_keyword(
    services: Services, name: str, which: str, keyword: str | None
) -> ChannelRecord:
    """Set (or with None, clear) a channel's `join` or `leave` keyword (checked by the caller
    for its form; here for clashes)."""

    def write(tx: Tx) -> ChannelRecord:
        found = _known(tx.subscriptions.channel_by_name(name), name)
        if keyword is not None:
            _check_keyword(tx, keyword, found.id, which)
        tx.subscriptions.update_channel(found.id, **{f"{which}_keyword": keyword})
        return found

    found = await services.write(write)
    services.pipeline.keywords_changed()
    return found


async def set_fields(services: Services, name: str, **values: str | None) -> ChannelRecord:
    """Change a channel's confirmation texts (`join_reply`, `leave_reply`) or `platform`."""

    def write(tx: Tx) -> ChannelRecord:
        found = _known(tx.subscriptions.channel_by_name(name), name)
        tx.subscriptions.update_channel(found.id, **values)
        return found

    found = await services.write(write)
    services.pipeline.keywords_changed()  # the pipeline keeps channels with their texts
    return found


# -- members by hand --------------------------------------------------------------------------


async def add_member(
    services: Services, name: str, contact: ContactRecord, consent: str, *, who: str, now: datetime
) -> tuple[ChannelRecord, bool]:
    """Subscribe a contact by hand with the consent they gave; False when they were a member
    already. Someone who opted out has to opt in themselves."""
    consent = consent_text(consent)
    if contact.opted_out_at is not None:
        raise Refused(
            f"{label(contact)} opted out on {contact.opted_out_at:%Y-%m-%d}; they have to opt"
            " in again themselves (e.g. send START)."
        )
    source = f"by hand ({who}): {consent}"[:128]

    def write(tx: Tx) -> tuple[ChannelRecord, bool]:
        found = _known(tx.subscriptions.channel_by_name(name), name)
        return found, tx.subscriptions.join(found.id, contact.id, source, now)

    return await services.write(write)


async def remove_member(
    services: Services, name: str, contact: ContactRecord, *, who: str, now: datetime
) -> tuple[ChannelRecord, bool]:
    """Take a contact out of a channel by hand; False when they were not a member."""
    source = f"removed by {who}"[:128]

    def write(tx: Tx) -> tuple[ChannelRecord, list[int]]:
        found = _known(tx.subscriptions.channel_by_name(name), name)
        return found, tx.subscriptions.leave(contact.id, source, now, found.id)

    found, ended = await services.write(write)
    return found, bool(ended)


# -- consent words ----------------------------------------------------------------------------


async def consent_words(services: Services) -> list[tuple[str, str, str]]:
    """Every consent word as (kind, language, word)."""
    return await services.read(lambda tx: tx.subscriptions.list_consent_words())


async def add_consent_words(
    services: Services, kind: str, language: str, words: list[str]
) -> tuple[list[str], list[str]]:
    """Add stop or start words (checked by the caller); those added and those listed already."""

    def write(tx: Tx) -> tuple[list[str], list[str]]:
        known = tx.subscriptions.consent_words()
        join, leave = tx.subscriptions.channels_by_keyword()
        added: list[str] = []
        already: list[str] = []
        for word in words:
            folded = fold(word)
            owner = join.get(folded) or leave.get(folded)
            if owner is not None:
                which = "join" if folded in join else "leave"
                raise Refused(
                    f"{word} is the {which} keyword of channel {owner.name}; change that first."
                )
            if tx.subscriptions.add_consent_word(word, kind, language):
                added.append(folded)
            else:
                already.append(f"{folded} ({known.get(folded, kind)})")
        return added, already

    found = await services.write(write)
    services.pipeline.keywords_changed()
    return found


async def remove_consent_words(services: Services, words: list[str]) -> tuple[list[str], list[str]]:
    """Remove consent words (at least one stop word stays); those removed and those unknown."""
    wanted = [fold(word) for word in words]

    def write(tx: Tx) -> tuple[list[str], list[str]]:
        known = tx.subscriptions.consent_words()
        stops = {w for w, kind in known.items() if kind == "stop"}
        if stops and stops <= set(wanted):
            raise Refused("At least one stop word must stay: customers need a way out.")
        removed = [w for w in wanted if tx.subscriptions.remove_consent_word(w)]
        return removed, [w for w in wanted if w not in removed]

    found = await services.write(write)
    services.pipeline.keywords_changed()
    return found

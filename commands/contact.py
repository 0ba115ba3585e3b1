"""`/contact`: find, show and edit contacts; add one by hand; export or erase their data."""

from __future__ import annotations

import json
import re
from datetime import datetime

from bridge.config_sections import PLATFORMS
from bridge.services import contacts
from bridge.services.contacts import NAME_MAX, OPT_IN_MAX
from bridge.staffio import Reply
from bridge.types import FileData, MediaKind
from commands.base import CommandError, Context, Role, command
from storage import subscriptions
from storage.contacts_admin import FIND_LIMIT, ContactDetails, ContactLine, ErasureCounts

contact = command("contact", "Find, show and edit contacts; export or erase a contact's data")

DIRECTIONS = {"in": "inbound", "out": "outbound", "both": "inbound and outbound"}


# -- helpers ----------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "never"


def _address(platform: str, chat_id: str) -> str:
    """The address as people write it: WhatsApp numbers are stored without their +."""
    return f"+{chat_id}" if platform == "whatsapp" and chat_id.isdigit() else chat_id


def _label(found: ContactLine | ContactDetails) -> str:
    return f"`#{found.id}` {found.display_name}"


def _line(found: ContactLine) -> str:
    handle = f" @{found.username}" if found.username else ""
    return (
        f"{_label(found)}: {found.platform} `{_address(found.platform, found.chat_id)}`{handle},"
        f" last seen {_when(found.last_seen)}"
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _options(
    ctx: Context, args: list[str], valued: tuple[str, ...], flags: tuple[str, ...] = ()
) -> tuple[list[str], dict[str, str]]:
    """Split `--name value` / `--name=value` options and bare `--flag`s from the words."""
    rest: list[str] = []
    found: dict[str, str] = {}
    words = iter(args)
    for word in words:
        if not word.startswith("--"):
            rest.append(word)
            continue
        name, eq, value = word[2:].partition("=")
        name = name.lower()
        if name in flags and not eq:
            found[name] = ""
        elif name in valued:
            if not eq:
                value = next(words, "")
            if not value.strip():
                raise ctx.usage(f"--{name} needs a value")
            found[name] = value.strip()
        else:
            raise ctx.usage(f"unknown option {word}")
    return rest, found


async def _pick(ctx: Context, who: str) -> ContactLine | Reply:
    """The one contact `who` names, or a reply listing the candidates."""
    who = who.strip()
    if not who:
        raise ctx.usage("say which contact: an id like #12, a number, or a name")
    found = await contacts.resolve(ctx.services, who)
    if not found:
        raise CommandError(f"No contact matches {who}. Try /contact find {who}")
    if len(found) > 1:
        lines = [_line(c) for c in found[:FIND_LIMIT]]
        lines.append(f"Name the one you mean by its id, e.g. `#{found[0].id}`.")
        return Reply(ok=False, title=f"{who} matches several contacts", lines=tuple(lines))
    return found[0]


async def _set_field(ctx: Context, found: ContactLine, **values: str | None) -> None:
    """Change a staff field, then redraw the open conversation's card."""
    await contacts.change_contact(ctx.services, found.id, **values)


# -- find, show -------------------------------------------------------------------------------


@contact.sub(
    "find",
    usage="<name, number or @username>",
    summary="search contacts by name, chat id / phone number or username",
    example="/contact find anna",
)
async def _find(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    text = " ".join(args).strip()
    if not text:
        raise ctx.usage("say what to look for")
    found = await contacts.find(ctx.services, text, FIND_LIMIT + 1)
    if not found:
        return Reply(title=f"No contact matches {text}")
    lines = [_line(c) for c in found[:FIND_LIMIT]]
    if len(found) > FIND_LIMIT:
        lines.append(f"Only the {FIND_LIMIT} most recently seen are shown; narrow the search.")
        title = f"More than {FIND_LIMIT} contacts match {text}"
    else:
        title = f"{_plural(len(found), 'contact')} match{'es' if len(found) == 1 else ''} {text}"
    return Reply(title=title, lines=tuple(lines))


def _blacklist_state(entry: subscriptions.BlockRecord | None, now: datetime) -> str:
    if entry is None:
        return "not blacklisted"
    if entry.until is not None and entry.until <= now:
        return f"expired on {_when(entry.until)}"
    until = f" until {_when(entry.until)}" if entry.until else " permanently"
    reason = f" ({entry.reason})" if entry.reason else ""
    by = f", by {entry.created_by} on {_when(entry.created_at)}"
    return f"blocks {DIRECTIONS.get(entry.direction, entry.direction)}{until}{reason}{by}"


def _channels_text(rows: list[tuple[str, str, datetime, datetime | None]]) -> str:
    parts = []
    for name, source, joined, left in rows:
        if left is None:
            parts.append(f"{name} (since {joined:%Y-%m-%d}, {source})")
        else:
            parts.append(f"{name} (left {left:%Y-%m-%d})")
    return "; ".join(parts) or "none"


@contact.sub(
    "show",
    usage="<#id | number | name>",
    summary="the contact's card: platform, ids, opt-in, channels, blacklist, notes",
    example="/contact show #12",
)
async def _show(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    found = await _pick(ctx, " ".join(args))
    if isinstance(found, Reply):
        return found
    contact_id = found.id
    shown = await contacts.card(ctx.services, contact_id)
    details, channel_rows, entry = shown.details, shown.channels, shown.block
    if details is None:
        raise CommandError(f"Contact #{contact_id} no longer exists")
    d = details
    opt_in = f"{d.opt_in_source or 'unknown'} ({_when(d.opt_in_at)})"
    opted_out = (
        f"yes, since {_when(d.opted_out_at)} ({d.opt_out_source or 'unknown'})"
        if d.opted_out_at
        else "no"
    )
    fields = (
        ("Platform", f"{d.platform}, account {d.account}"),
        ("Chat id", _address(d.platform, d.chat_id)),
        ("Username", f"@{d.username}" if d.username else "none"),
        ("Language", d.language or "unknown"),
        ("First seen", _when(d.first_seen)),
        ("Last seen", _when(d.last_seen)),
        ("Messages", str(d.message_count)),
        ("Opt-in", opt_in),
        ("Opted out", opted_out),
        ("Channels", _channels_text(channel_rows)),
        ("Blacklist", _blacklist_state(entry, ctx.now)),
        ("Assigned to", d.assigned_to or "nobody"),
        ("Note", d.note or "none"),
        ("Remark", d.remark or "none"),
        ("Open conversation", f"#{d.open_conversation}" if d.open_conversation else "none"),
    )
    return Reply(title=f"#{d.id} {d.display_name}", fields=fields)


# -- name, note, remark -----------------------------------------------------------------------


@contact.sub(
    "name",
    usage="<#id | number | name> <new name…>",
    summary="change the contact's name (quote a current name that has spaces)",
    example="/contact name #12 Anna Schmidt",
    role=Role.MANAGER,
)
async def _name(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 2)
    name = " ".join(args[1:]).strip()
    if not name:
        raise ctx.usage("the new name is empty")
    if len(name) > NAME_MAX:
        raise ctx.usage(f"a name has at most {NAME_MAX} characters")
    found = await _pick(ctx, args[0])
    if isinstance(found, Reply):
        return found
    await _set_field(ctx, found, display_name=name)
    return Reply(title=f"Contact #{found.id} is now called {name} (was {found.display_name})")


async def _text_field(ctx: Context, args: list[str], field: str, label: str) -> Reply:
    ctx.need(args, 2)
    text = " ".join(args[1:]).strip()
    if not text:
        raise ctx.usage(f"the {label} is empty; `-` clears it")
    found = await _pick(ctx, args[0])
    if isinstance(found, Reply):
        return found
    cleared = text == "-"
    await _set_field(ctx, found, **{field: None if cleared else text})
    done = "cleared" if cleared else "saved"
    return Reply(title=f"{label.capitalize()} of #{found.id} {found.display_name} {done}")


@contact.sub(
    "note",
    usage="<#id | number | name> <text…>",
    summary="the team's note on the contact (`-` clears it)",
    example="/contact note #12 prefers calls in the morning",
    role=Role.MANAGER,
)
async def _note(ctx: Context, args: list[str]) -> Reply:
    return await _text_field(ctx, args, "note", "note")


@contact.sub(
    "remark",
    usage="<#id | number | name> <text…>",
    summary="the remark for CRMs (exported with the contact; `-` clears it)",
    example="/contact remark #12 CRM-4711",
    role=Role.MANAGER,
)
async def _remark(ctx: Context, args: list[str]) -> Reply:
    return await _text_field(ctx, args, "remark", "remark")


# -- add --------------------------------------------------------------------------------------


def _chat_id(platform: str, raw: str) -> str | None:
    """The address as the platform's connector stores it, or None if it is not valid."""
    if platform in ("sms", "whatsapp"):
        compact = re.sub(r"[\s().\-/]", "", raw)
        if not re.fullmatch(r"\+?[1-9]\d{7,14}", compact):
            return None
        number = compact.lstrip("+")
        # Twilio addresses numbers in E.164 with its +; WhatsApp's wa_id is the bare digits.
        return f"+{number}" if platform == "sms" else number
    if platform == "telegram":
        return raw if re.fullmatch(r"[1-9]\d{0,19}", raw) else None
    return raw if re.fullmatch(r"\d{5,20}", raw) else None  # a Messenger page-scoped id


ADDRESS_FORMS = {
    "sms": "a phone number in international format, e.g. +4915112345678",
    "whatsapp": "a phone number in international format, e.g. +4915112345678",
    "telegram": "the numeric Telegram chat id, e.g. 123456789",
    "messenger": "the numeric page-scoped id (PSID)",
}


@contact.sub(
    "add",
    usage='<platform> <address> <name…> --consent "<how they agreed>" [--account <id>]',
    summary="add a contact by hand; needs their consent (no messages without opt-in)",
    example='/contact add sms +4915112345678 Anna Schmidt --consent "signed up at the counter"',
    role=Role.MANAGER,
)
async def _add(ctx: Context, args: list[str]) -> Reply:
    rest, options = _options(ctx, args, ("consent", "account"))
    if "consent" not in options:
        raise ctx.usage(
            "adding a contact needs --consent with how they agreed to be contacted:"
            " messaging people who did not opt in is not allowed"
        )
    if len(rest) < 3:
        raise ctx.usage("say the platform, the address and the name")
    platform = rest[0].lower()
    if platform not in PLATFORMS:
        raise ctx.usage(f"{rest[0]} is not a platform; choose one of {', '.join(PLATFORMS)}")
    accounts = [c for c in ctx.services.connectors if c.platform == platform]
    if not accounts:
        raise CommandError(f"The bridge has no {platform} account configured")
    wanted = options.get("account")
    if wanted is not None:
        accounts = [c for c in accounts if c.account == wanted]
        if not accounts:
            known = ", ".join(c.account for c in ctx.services.connectors if c.platform == platform)
            raise ctx.usage(f"no {platform} account {wanted}; the accounts are {known}")
    elif len(accounts) > 1:
        known = ", ".join(c.account for c in accounts)
        raise ctx.usage(f"there are several {platform} accounts ({known}); choose with --account")
    account = accounts[0].account
    chat_id = _chat_id(platform, rest[1])
    if chat_id is None:
        raise ctx.usage(f"{rest[1]} is not a {platform} address; use {ADDRESS_FORMS[platform]}")
    name = " ".join(rest[2:]).strip()
    if len(name) > NAME_MAX:
        raise ctx.usage(f"a name has at most {NAME_MAX} characters")
    prefix = f"added by {ctx.who}: "
    if len(prefix) + len(options["consent"]) > OPT_IN_MAX:
        room = max(OPT_IN_MAX - len(prefix), 0)
        raise ctx.usage(f"the consent text is too long; keep it under {room} characters")
    source = prefix + options["consent"]
    contact_id, created = await contacts.add(
        ctx.services,
        platform=platform,
        account=account,
        chat_id=chat_id,
        name=name,
        source=source,
        now=ctx.now,
    )
    if not created:
        return Reply(
            ok=False,
            title=f"That contact exists already: #{contact_id}",
            lines=(f"`/contact show #{contact_id}` shows it.",),
        )
    return Reply(
        title=f"Contact #{contact_id} added: {name}",
        lines=(
            f"{platform} `{_address(platform, chat_id)}` on account `{account}`",
            f"Opt-in: {source}",
        ),
    )


# -- export -----------------------------------------------------------------------------------


@contact.sub(
    "export",
    usage="<#id | number | name>",
    summary="everything the bridge holds about the contact, as a JSON file (data requests)",
    example="/contact export #12",
    private=True,
)
async def _export(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    found = await _pick(ctx, " ".join(args))
    if isinstance(found, Reply):
        return found
    document = await contacts.export_document(ctx.services, found.id, ctx.who, ctx.now)
    data = json.dumps(document, ensure_ascii=False, indent=2).encode()
    conversations = len(document["conversations"])
    messages = len(document["messages"])
    return Reply(
        title=f"Everything held about #{found.id} {found.display_name}",
        lines=(
            f"{_plural(conversations, 'conversation')}, {_plural(messages, 'message')}.",
            "The file is personal data: it is given to you alone.",
        ),
        file=FileData(
            kind=MediaKind.DOCUMENT,
            filename=f"contact-{found.id}.json",
            mime_type="application/json",
            data=data,
        ),
        private=True,
    )


# -- forget -----------------------------------------------------------------------------------


def _erasure_lines(counts: ErasureCounts) -> tuple[str, ...]:
    return (
        f"{_plural(counts.conversations, 'conversation')} with"
        f" {_plural(counts.messages, 'message')}",
        f"{_plural(counts.threads, 'staff thread')} (each keeps a tombstone) and"
        f" {_plural(counts.staff_refs, 'link')} to thread messages",
        f"{_plural(counts.memberships, 'channel membership')},"
        f" {'the' if counts.blacklisted else 'no'} blacklist entry",
        f"{_plural(counts.outbox, 'queued or finished delivery job')} (nothing more is sent)",
    )


@contact.sub(
    "forget",
    usage="<#id | number | name> --confirm",
    summary="erase the contact and all their messages (data-protection requests)",
    example="/contact forget #12 --confirm",
    role=Role.ADMIN,
)
async def _forget(ctx: Context, args: list[str]) -> Reply:
    rest, options = _options(ctx, args, (), ("confirm",))
    if not rest:
        raise ctx.usage("say which contact to erase")
    found = await _pick(ctx, " ".join(rest))
    if isinstance(found, Reply):
        return found
    contact_id = found.id
    if "confirm" not in options:
        counts = await contacts.what_erasing_removes(ctx.services, contact_id)
        return Reply(
            title=f"This erases #{contact_id} {found.display_name} and everything stored about"
            " them:",
            lines=(
                *_erasure_lines(counts),
                f"It cannot be undone. To erase, type `/contact forget #{contact_id} --confirm`",
            ),
        )
    counts = await contacts.forget_contact(ctx.services, contact_id, ctx.who, ctx.now)
    return Reply(title=f"Contact #{contact_id} erased", lines=_erasure_lines(counts))

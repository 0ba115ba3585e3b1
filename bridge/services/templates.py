"""WhatsApp message templates kept in the bridge: names, languages and bodies checked as Meta
has them, stored, imported from WhatsApp and prepared for a contact."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bridge.errors import Invalid, Refused
from bridge.services import Services
from bridge.types import WHATSAPP, Template, TemplateCall
from storage import Tx
from storage.catalog import SyncCounts, TemplateRecord
from storage.queries import ContactRecord

log = logging.getLogger(__name__)

# Meta's rules: lowercase letters, digits and underscores, at most 512 characters.
_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
# Meta's language codes: `de`, `fil`, `en_US`, `pt_BR`, `es_419`…
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:_(?:[A-Z]{2}|[0-9]{3}))?$")
_BRACES = re.compile(r"\{\{(.*?)\}\}")
_PARAM = re.compile(r"\{\{([1-9][0-9]*)\}\}")
BODY_LIMIT = 1024  # characters of a template body, as Meta allows
PLATFORM_NAMES = {
    "telegram": "Telegram",
    "whatsapp": "WhatsApp",
    "messenger": "Messenger",
    "sms": "SMS",
}


@dataclass(frozen=True, slots=True)
class Synced:
    """What `sync_templates` found: the approved templates imported, the others, failures."""

    numbers: int
    found: int
    skipped: tuple[str, ...]
    failed: tuple[str, ...]
    counts: SyncCounts


def template_name(word: str) -> str:
    """A template name as Meta allows it (lowercase letters, digits, underscores)."""
    name = word.strip().lower()
    if not _NAME.match(name):
        raise Invalid(
            f"not a template name: {word or '(empty)'}; use lowercase letters, digits and"
            " underscores (at most 512)"
        )
    return name


def template_language(word: str) -> str:
    """A language code as Meta writes it (`en_US`, `de`); `en-us` is accepted too."""
    head, sep, region = word.strip().replace("-", "_").partition("_")
    language = head.lower() + (sep + region.upper() if sep else "")
    if not _LANGUAGE.match(language):
        raise Invalid(f"not a language code: {word or '(empty)'}; write it like en_US or de")
    return language


def check_body(body: str) -> int:
    """Validate a template body; its number of parameters."""
    if not body:
        raise Invalid("the body is missing")
    if len(body) > BODY_LIMIT:
        raise Invalid(f"the body has {len(body)} characters; WhatsApp allows {BODY_LIMIT}")
    for match in _BRACES.finditer(body):
        if not _PARAM.fullmatch(match.group(0)):
            raise Invalid(
                f"not a parameter: {match.group(0)}; parameters are numbered {{{{1}}}},"
                " {{2}}… in the body"
            )
    numbers = sorted({int(n) for n in _PARAM.findall(body)})
    missing = [n for n in range(1, (numbers[-1] if numbers else 0) + 1) if n not in numbers]
    if missing:
        gaps = ", ".join(f"{{{{{n}}}}}" for n in missing)
        raise Invalid(f"parameters must be numbered from {{{{1}}}} without gaps; {gaps} is missing")
    return len(numbers)


def param_count(body: str) -> int:
    """How many numbered parameters a body takes."""
    return len(set(_PARAM.findall(body)))


def count_text(n: int) -> str:
    """`1 parameter`, `2 parameters`."""
    return f"{n} parameter{'' if n == 1 else 's'}"


def fill(body: str, params: Sequence[str]) -> str:
    """The body with its parameters filled in, as the customer reads it."""
    return _PARAM.sub(lambda m: params[int(m.group(1)) - 1], body)


def unknown_text(name: str, language: str | None, stored: Sequence[TemplateRecord]) -> str:
    """Why a template asked for is not there, and where the stored ones are listed."""
    if language is not None and stored:
        have = ", ".join(t.language for t in stored)
        return f"Template {name} has no {language} version (stored: {have})"
    return (
        f"No template named {name}; /template list shows the stored ones and /template sync"
        " imports WhatsApp's approved ones"
    )


async def all_templates(services: Services) -> list[TemplateRecord]:
    """Every stored template, by name, then language."""
    return await services.read(lambda tx: tx.templates.all_templates())


async def templates_named(services: Services, name: str) -> list[TemplateRecord]:
    """A template's stored languages."""
    return await services.read(lambda tx: tx.templates.templates_named(name))


async def save_template(
    services: Services, name: str, language: str, body: str, by: str, now: datetime
) -> bool:
    """Store a template (checked by the caller), new or replacing; True when it is new."""
    return await services.write(
        lambda tx: tx.templates.save_template(name, language, body, by, now)
    )


async def add_template(
    services: Services, name: str, language: str, body: str, by: str, now: datetime
) -> bool:
    """Store a template only if it lacks this language; False when it has it already."""

    def write(tx: Tx) -> bool:
        if any(t.language == language for t in tx.templates.templates_named(name)):
            return False
        return tx.templates.save_template(name, language, body, by, now)

    return await services.write(write)


async def change_template(
    services: Services, name: str, language: str, body: str, by: str, now: datetime
) -> bool:
    """Replace the body of a template's language; False when it lacks that language."""

    def write(tx: Tx) -> bool:
        if not any(t.language == language for t in tx.templates.templates_named(name)):
            return False
        tx.templates.save_template(name, language, body, by, now)
        return True

    return await services.write(write)


async def delete_templates(services: Services, name: str, language: str | None = None) -> list[str]:
    """Delete a template in one language or all; the languages deleted."""
    return await services.write(lambda tx: tx.templates.delete_templates(name, language))


async def sync_templates(services: Services, by: str, now: datetime) -> Synced:
    """Import the approved templates of every WhatsApp number."""
    numbers = [c for c in services.connectors if c.platform == WHATSAPP]
    if not numbers:
        raise Refused("No WhatsApp number is configured; templates are a WhatsApp feature")
    found: dict[tuple[str, str], str] = {}
    skipped: list[str] = []
    failed: list[str] = []
    for connector in numbers:
        try:
            listed: Sequence[Template] = await connector.templates()
        except Exception as exc:
            log.warning("templates of WhatsApp number %s: %s", connector.account, exc)
            failed.append(f"WhatsApp number {connector.account} did not answer: {exc}")
            continue
        for t in listed:
            if t.status.upper() == "APPROVED":
                found[(t.name, t.language)] = t.body or ""
            else:
                skipped.append(f"{t.name}:{t.language} ({t.status.lower()})")
    if failed and not found:
        raise Refused("; ".join(failed))
    items = [(name, language, body) for (name, language), body in sorted(found.items())]
    counts = await services.write(lambda tx: tx.templates.import_templates(items, by, now))
    return Synced(len(numbers), len(found), tuple(skipped), tuple(failed), counts)


async def prepare_template(
    services: Services,
    name: str,
    language: str | None,
    params: Sequence[str],
    contact: ContactRecord,
) -> tuple[TemplateCall, str]:
    """The template call for a contact (the stored template, else WhatsApp's approved one),
    with its parameters checked, and its text as the customer reads it."""
    if contact.platform != WHATSAPP:
        shown = PLATFORM_NAMES.get(contact.platform, contact.platform)
        raise Refused(
            f"Templates are a WhatsApp feature; this customer writes on {shown}, where a normal"
            " reply in this thread works"
        )
    language, body = await _choose(services, name, language, contact)
    for param in params:
        # WhatsApp refuses empty parameters and ones with line breaks or tabs (error 132018).
        if not param.strip() or any(c in param for c in "\n\t"):
            raise Invalid("a parameter may not be empty or contain line breaks or tabs")
    if body is not None:
        expected = param_count(body)
        if len(params) != expected:
            raise Invalid(
                f"template {name} ({language}) takes {count_text(expected)}, you gave"
                f" {len(params)} (quote a parameter that has spaces)"
            )
    text = fill(body, params) if body else f"[template {name}:{language}] " + " | ".join(params)
    return TemplateCall(name=name, language=language, params=tuple(params)), text


async def _choose(
    services: Services, name: str, language: str | None, contact: ContactRecord
) -> tuple[str, str | None]:
    """The language and body to send: the stored template, else WhatsApp's approved one."""
    stored = await templates_named(services, name)
    if stored:
        if language is None:
            if len(stored) == 1:
                return stored[0].language, stored[0].body
            raise Refused(_ambiguous(name, [t.language for t in stored]))
        for t in stored:
            if t.language == language:
                return t.language, t.body
    connector = services.connector(contact.platform, contact.account)
    approved: list[Template] = []
    if connector is not None:
        try:
            listed = await connector.templates()
        except Exception as exc:
            raise Refused(f"WhatsApp did not list its templates: {exc}") from None
        approved = [
            t
            for t in listed
            if t.status.upper() == "APPROVED" and t.name == name and language in (None, t.language)
        ]
    if len(approved) > 1:
        raise Refused(_ambiguous(name, [t.language for t in approved]))
    if not approved:
        raise Refused(unknown_text(name, language, stored))
    return approved[0].language, approved[0].body


def _ambiguous(name: str, languages: Sequence[str]) -> str:
    return (
        f"Template {name} exists in {', '.join(sorted(languages))}; name the language:"
        f" !template send {name}:{sorted(languages)[0]} …"
    )

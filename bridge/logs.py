"""Log output: lines for people, or one JSON object per line for a log collector.

Whatever the format, every secret of the settings (tokens, passwords, signing secrets, the
database password) is masked in the output: the bridge never logs them on purpose, and this
keeps one a library logs at DEBUG (a URL with a bot token, say) out of the log as well.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic import BaseModel, SecretStr

from bridge.config import Settings
from storage.db import url_password

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"
# Shorter values are not masked: replacing them everywhere would garble ordinary words, and a
# secret that short is no secret anyway.
MASK_MIN = 8


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings, the database URL's password included."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, tuple | list):
            for item in value:
                walk(item)

    walk(settings)
    password = url_password(settings.bridge.database)
    if password:
        found.append(password)
    return found


class Masker:
    """Replaces known secret values in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first: a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= MASK_MIN}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """The text with every secret replaced by ***."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class TextFormatter(logging.Formatter):
    """`time level logger: message` lines, secrets masked."""

    def __init__(self, mask: Masker) -> None:
        super().__init__(TEXT_FORMAT)
        self._mask = mask

    def format(self, record: logging.LogRecord) -> str:
        """The line, exception and stack included, with secrets masked."""
        return self._mask(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, exception."""

    def __init__(self, mask: Masker) -> None:
        super().__init__()
        self._mask = mask

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, with secrets masked."""
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, str] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self._mask(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self._mask(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self._mask(record.exc_text)
        if record.stack_info:
            entry["stack"] = self._mask(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


def handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing to `stream` (stderr) in the configured format, secrets masked."""
    out = logging.StreamHandler(stream if stream is not None else sys.stderr)
    mask = Masker(secrets_of(settings))
    json_lines = settings.bridge.log_format == "json"
    out.setFormatter(JsonFormatter(mask) if json_lines else TextFormatter(mask))
    return out


def configure(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send the process's log to stderr (or `stream`) as the settings say; returns the handler."""
    root = logging.getLogger()
    out = handler(settings, stream)
    root.addHandler(out)
    root.setLevel(settings.bridge.log_level)
    return out

"""Settings: `bridge.toml` overlaid with `BRIDGE_<SECTION>__<KEY>` environment variables.

Validated once at start; a wrong value stops the start with a message that names the key.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from bridge.errors import ConfigError

ENV_PREFIX = "BRIDGE_"
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BridgeSettings(_Section):
    """The `[bridge]` section: database, HTTP listener, behaviour shared by all platforms."""

    database: str = "sqlite+aiosqlite:///var/bridge.db"
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None
    note_prefix: str = "//"
    admins: tuple[str, ...] = ()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Group commit: how long the writer waits to gather more rows into one transaction.
    commit_window_ms: float = Field(default=0.0, ge=0, le=50)
    # "process": the outbox dispatcher (everything sent to Slack and the platforms) runs in a
    # child process, on another CPU core than the webhooks; "inline": in the same process.
    dispatch: Literal["inline", "process"] = "inline"
    # Contact-card refreshes are gathered per conversation into one edit per this many seconds.
    card_refresh_s: float = Field(default=5.0, gt=0, le=3600)

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = "must be HOST:PORT, e.g. 127.0.0.1:8080"
            raise ValueError(msg)
        return value

    @field_validator("database")
    @classmethod
    def _database_is_supported(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            msg = "must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            raise ValueError(msg)
        return value

    @property
    def host(self) -> str:
        """The address to listen on."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port to listen on."""
        return int(self.listen.rpartition(":")[2])


class TelegramSettings(_Section):
    """The `[telegram]` section: one bot."""

    token: SecretStr | None = None
    mode: Literal["webhook", "polling"] | None = None
    webhook_secret: SecretStr | None = None
    api_base: str = "https://api.telegram.org"
    poll_timeout: int = Field(default=25, ge=0, le=50)
    # Telegram's documented limits: about 30 messages/s overall and 1/s per chat.
    rate_global: float = Field(default=30.0, gt=0)
    rate_per_chat: float = Field(default=1.0, gt=0)
    burst_per_chat: float = Field(default=3.0, ge=1)

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _SECRET_TOKEN.match(value.get_secret_value()):
            msg = "must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)"
            raise ValueError(msg)
        return value

    @property
    def enabled(self) -> bool:
        """A token turns the connector on."""
        return self.token is not None


class SlackSettings(_Section):
    """The `[slack]` section: one workspace, one app."""

    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None
    channel: str | None = None
    api_base: str = "https://slack.com/api/"
    # chat.postMessage allows about 1 message per second per channel with short bursts.
    rate_per_channel: float = Field(default=1.0, gt=0)
    burst_per_channel: float = Field(default=4.0, ge=1)
    # chat.update (the contact card) is a Tier 3 method: about 50 calls a minute.
    rate_updates: float = Field(default=0.8, gt=0)
    # reactions.add (delivery marks) is Tier 3 as well.
    rate_reactions: float = Field(default=0.8, gt=0)
    # Customer messages waiting in one thread are joined into one post when a backlog forms.
    coalesce_max: int = Field(default=20, ge=1, le=100)

    @property
    def enabled(self) -> bool:
        """A bot token turns the surface on."""
        return self.bot_token is not None

    @property
    def socket_mode(self) -> bool:
        """An app token means Socket Mode, else the HTTP Events API."""
        return self.app_token is not None


class Settings(_Section):
    """All settings of one bridge process."""

    bridge: BridgeSettings = BridgeSettings()
    telegram: TelegramSettings = TelegramSettings()
    slack: SlackSettings = SlackSettings()

    def check(self) -> None:
        """Checks that span several keys; raises ConfigError naming the key to fix."""
        tg = self.telegram
        if tg.enabled and self.telegram_mode == "webhook" and tg.webhook_secret is None:
            raise ConfigError(
                "telegram.webhook_secret",
                "webhook mode needs a secret so that forged updates are refused",
            )
        sl = self.slack
        if sl.enabled:
            if sl.channel is None:
                raise ConfigError("slack.channel", "the channel id for new threads is missing")
            if not sl.socket_mode and sl.signing_secret is None:
                raise ConfigError(
                    "slack.signing_secret", "the HTTP Events API needs the app's signing secret"
                )
            if sl.app_token is not None and not sl.app_token.get_secret_value().startswith("xapp-"):
                raise ConfigError("slack.app_token", "an app-level token starts with xapp-")

    @property
    def telegram_mode(self) -> Literal["webhook", "polling"]:
        """Webhook when asked for, or when a public URL is known; polling otherwise."""
        if self.telegram.mode is not None:
            return self.telegram.mode
        return "webhook" if self.bridge.public_url else "polling"


def _env_value(raw: str) -> Any:
    """Environment values are strings; lists may be given as JSON or comma-separated."""
    text = raw.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return raw
    return raw


def _overlay_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Apply BRIDGE_<SECTION>__<KEY> variables; return which key came from which variable."""
    sources: dict[str, str] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        section, key = section.lower(), key.lower()
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(section, f"is not a table (set by {name})")
        value = _env_value(raw)
        if key in ("admins",) and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        table[key] = value
        sources[f"{section}.{key}"] = name
    return sources


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, overlay and validate the settings; raise ConfigError on the first wrong key."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"is not valid TOML: {exc}") from exc
    sources = _overlay_env(data, env)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        where = f" (from {sources[key]})" if key in sources else ""
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "is not a known setting (see bridge.example.toml)"
        raise ConfigError(key, f"{message}{where}") from None
    settings.check()
    return settings

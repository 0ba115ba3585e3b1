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

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from bridge.config_sections import (
    PLATFORMS,
    CheckedSecret,
    FacebookPageSettings,
    MessengerPage,
    MessengerSettings,
    PlatformName,
    PlatformSections,
    Section,
    SmsAccount,
    SmsSettings,
    TelegramSettings,
    WhatsAppAccount,
    WhatsAppSettings,
    XSettings,
)
from bridge.errors import ConfigError

ENV_PREFIX = "BRIDGE_"


class BridgeSettings(Section):
    """The `[bridge]` section: database, HTTP listener, behaviour shared by all platforms."""

    database: str = "sqlite+aiosqlite:///var/bridge.db"
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None
    note_prefix: str = "//"
    admins: tuple[str, ...] = ()
    # The role of staff members nobody gave a role: "agent" lets everyone in the support channel
    # answer customers and look things up; "none" makes an admin hand out every role.
    default_role: Literal["agent", "none"] = "agent"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line (time, level, logger, message, exception) for a log
    # collector; "text": lines for people. Secrets of these settings are masked in both.
    log_format: Literal["text", "json"] = "text"
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


class SlackSettings(Section):
    """The `[slack]` section: one workspace, one app."""

    bot_token: SecretStr | None = None
    signing_secret: CheckedSecret | None = None
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
    # Workspaces (T…) or Enterprise Grid organisations (E…) whose members count as staff, besides
    # the bot token's own workspace (learned from auth.test at start). Everybody else (another
    # organisation's members in a Slack Connect channel, say) has role none.
    allowed_teams: tuple[str, ...] = ()

    @field_validator("allowed_teams")
    @classmethod
    def _team_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for team in value:
            if not re.fullmatch(r"[TE][A-Z0-9]{2,30}", team):
                msg = f"{team!r} is not a Slack team id (T…) or organisation id (E…)"
                raise ValueError(msg)
        return value

    @property
    def enabled(self) -> bool:
        """A bot token turns the surface on."""
        return self.bot_token is not None

    @property
    def socket_mode(self) -> bool:
        """An app token means Socket Mode, else the HTTP Events API."""
        return self.app_token is not None


class MatrixSettings(Section):
    """The `[matrix]` section: a bot account on a homeserver, threads in one or more rooms."""

    homeserver: str | None = None
    user_id: str | None = None
    access_token: SecretStr | None = None
    password: SecretStr | None = None
    device_id: str | None = None
    room: str | None = None
    # "bot": one bot account speaks for everyone. "appservice": an application service; each
    # customer appears as a Matrix user of their own (`@<user_prefix>…`).
    mode: Literal["bot", "appservice"] = "bot"
    # Application service: the tokens of the registration file (`run.py matrix-registration`),
    # the path the homeserver pushes to (below public_url), and the customers' user prefix.
    as_token: SecretStr | None = None
    hs_token: CheckedSecret | None = None
    listen_path: str = "/matrix"
    user_prefix: str = "customer_"
    # The key customers' Matrix user ids are derived from (HMAC of platform and chat id), so an
    # id shows nothing of the customer; unset: as_token. Changing it gives customers new users.
    puppet_key: SecretStr | None = None
    # Homeservers whose users count as staff besides the bot's own (the server of `user_id`).
    # A federated room lets users of any server in; everybody else has role none.
    allowed_servers: tuple[str, ...] = ()
    # How long one /sync waits for news on the homeserver (long polling).
    sync_timeout_s: float = Field(default=30.0, ge=1, le=300)
    # End-to-end encryption (Matrix spec, "End-to-End Encryption"): the bot decrypts what staff
    # write in encrypted rooms and encrypts what it posts there. Off: encrypted rooms are refused.
    encryption: bool = False
    # The passphrase the bot's encryption keys are encrypted with in the database (nio's
    # pickles). Unset: the configured access_token (a secret kept outside the database that
    # lives exactly as long as the bot's device), else the password. Never the token a
    # password login gets: that one is kept in the database, beside what it would protect.
    # Set it before changing the password (to the old one), or the keys cannot be read.
    pickle_key: SecretStr | None = None
    # Events the bot sends per second. Synapse's default rc_message (0.2/s, burst 10) is far
    # lower: ask the homeserver admin to lift it for the bot, and the bridge obeys 429s anyway.
    rate: float = Field(default=5.0, gt=0)
    burst: float = Field(default=10.0, ge=1)

    @field_validator("allowed_servers")
    @classmethod
    def _server_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for server in value:
            # A server name is a host with an optional port (Matrix spec, "Server name").
            if not re.fullmatch(
                r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?", server
            ):
                msg = f"{server!r} is not a Matrix server name (example.org, or host:port)"
                raise ValueError(msg)
        return value

    @property
    def enabled(self) -> bool:
        """A homeserver and a bot user turn the surface on."""
        return self.homeserver is not None and self.user_id is not None


class MailSettings(Section):
    """The `[mail]` section: the SMTP server that rule forwards (mailForward) go through."""

    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    # "starttls" upgrades a plain connection (port 587), "tls" is TLS from the start (465).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    # Mails per second the bridge hands to the server.
    rate: float = Field(default=5.0, gt=0)

    @property
    def enabled(self) -> bool:
        """A host and a sender address turn mail forwards on."""
        return self.host is not None and self.from_address is not None


class OutboxSettings(Section):
    """The `[outbox]` section: how long finished deliveries keep what they carried."""

    # Days a finished outbox row keeps its payload (the message text, chat id, names), then
    # it is emptied; the row itself stays (ids are never reused). 0: at the next hourly sweep.
    keep_payload_days: float = Field(default=7.0, ge=0, le=3650)


class RulesSettings(Section):
    """The `[rules]` section: the chatbot rules' time zone and forward timeouts."""

    # Rules' times of day and weekdays are read in this zone (an IANA name).
    timezone: str = "UTC"
    # How long a webserviceForward or httpBotFwd call may take.
    http_timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            msg = f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin"
            raise ValueError(msg) from None
        return value


class SecuritySettings(Section):
    """The `[security]` section: what the outbound guard lets through (bridge.security)."""

    # Internal destinations rules and webhooks may reach although they are not public: an
    # address ("10.1.2.3"), a network ("10.8.0.0/16"), a host ("bots.internal", any port) or
    # host:port ("bots.internal:8443"). Empty: only public addresses are reached.
    allow_private: tuple[str, ...] = ()

    @field_validator("allow_private")
    @classmethod
    def _entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from bridge.security import AllowList

        AllowList.parse(value)  # a ValueError names the entry
        return value


class StatsSettings(Section):
    """The `[stats]` section: access to the statistics page (GET /stats) for scripts."""

    # Sent as `Authorization: Bearer <api_key>`; people open the page with /stats's login link.
    api_key: SecretStr | None = None

    @field_validator("api_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 24:
            msg = "must be at least 24 characters, e.g. 32 random bytes in hex"
            raise ValueError(msg)
        return value


# An origin a page may be framed from: scheme and host (a leading *. allows subdomains), no path.
_ORIGIN = re.compile(r"^https?://(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:[0-9]{1,5})?$")
WIDGET_TEXT_MAX = 200


class WidgetSettings(Section):
    """The `[widget]` section: the click-to-chat page (GET /widget/<channel>) for other sites."""

    # The sites that may show the widget in an iframe (CSP frame-ancestors); none: any site.
    allowed_origins: tuple[str, ...] = ()
    # A short line under the channel's name: `text` on every widget, `texts` per channel name.
    text: str | None = Field(default=None, max_length=WIDGET_TEXT_MAX)
    texts: dict[str, str] = {}

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        origins = tuple(origin.strip().rstrip("/").lower() for origin in value)
        for origin in origins:
            if not _ORIGIN.match(origin):
                msg = (
                    f"{origin!r} is not an origin; write scheme and host only, such as"
                    " https://www.example.com or https://*.example.com"
                )
                raise ValueError(msg)
        return origins

    @field_validator("texts")
    @classmethod
    def _short_texts(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if len(text) > WIDGET_TEXT_MAX:
                msg = f"the text of {name} has {len(text)} characters; at most {WIDGET_TEXT_MAX}"
                raise ValueError(msg)
        return {name.casefold(): text for name, text in value.items()}

    def text_for(self, channel: str) -> str | None:
        """The line shown under a channel's name, if any."""
        return self.texts.get(channel.casefold(), self.text)


class MetricsSettings(Section):
    """The `[metrics]` section: who may read the Prometheus metrics (GET /metrics)."""

    # The scraper sends `Authorization: Bearer <token>`. Without a token /metrics is open to
    # whoever reaches the listener: keep the listener private then.
    token: CheckedSecret | None = None


class Route(Section):
    """`[[routes]]`: where one platform account's conversations are mirrored."""

    platform: PlatformName
    # Without an account the route covers every account of the platform.
    account: str | None = None
    slack_channel: str | None = None
    matrix_room: str | None = None


class Settings(PlatformSections):
    """All settings of one bridge process: the platforms' sections (bridge.config_sections)
    and the bridge's own."""

    bridge: BridgeSettings = BridgeSettings()
    slack: SlackSettings = SlackSettings()
    matrix: MatrixSettings = MatrixSettings()
    mail: MailSettings = MailSettings()
    rules: RulesSettings = RulesSettings()
    outbox: OutboxSettings = OutboxSettings()
    security: SecuritySettings = SecuritySettings()
    stats: StatsSettings = StatsSettings()
    metrics: MetricsSettings = MetricsSettings()
    widget: WidgetSettings = WidgetSettings()
    routes: tuple[Route, ...] = ()

    def slack_channel(self, platform: str, account: str) -> str | None:
        """The Slack channel for a platform account's threads; None means `[slack] channel`."""
        for route in self._routes_for(platform, account):
            if route.slack_channel:
                return route.slack_channel
        return None

    def matrix_room(self, platform: str, account: str) -> str | None:
        """The Matrix room for a platform account's threads; None means the default room."""
        for route in self._routes_for(platform, account):
            if route.matrix_room:
                return route.matrix_room
        return None

    def _routes_for(self, platform: str, account: str) -> list[Route]:
        # The route naming the account wins over one for the whole platform.
        exact = [r for r in self.routes if r.platform == platform and r.account == account]
        broad = [r for r in self.routes if r.platform == platform and r.account is None]
        return exact + broad

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
        mx = self.matrix
        if mx.enabled:
            if mx.mode == "appservice":
                for key in ("as_token", "hs_token"):
                    if getattr(mx, key) is None:
                        raise ConfigError(
                            f"matrix.{key}",
                            "appservice mode needs the tokens of the registration file"
                            " (python run.py matrix-registration writes one)",
                        )
                if not re.fullmatch(r"/[A-Za-z0-9/_-]*", mx.listen_path):
                    raise ConfigError("matrix.listen_path", "a path such as /matrix")
                if not re.fullmatch(r"[a-z0-9._=-]+", mx.user_prefix):
                    raise ConfigError(
                        "matrix.user_prefix", "lower-case letters, digits and . _ = - only"
                    )
                if mx.encryption:
                    raise ConfigError(
                        "matrix.encryption",
                        "end-to-end encryption is supported in bot mode; appservice mode needs"
                        ' an unencrypted room (set encryption = false, or mode = "bot")',
                    )
            elif mx.access_token is None and mx.password is None:
                raise ConfigError("matrix.access_token", "set the bot's access_token or password")
            if mx.room is None:
                raise ConfigError("matrix.room", "the room id for new threads is missing")
            if not re.fullmatch(r"@[^:\s]+:\S+", mx.user_id or ""):
                raise ConfigError("matrix.user_id", "a Matrix user id looks like @bot:example.org")
            # Room version 12 ids carry no server name ("!hash"); older ones do ("!abc:server").
            if not re.fullmatch(r"!\S+", mx.room):
                raise ConfigError("matrix.room", "a room id starts with ! (not an #alias)")

        seen: set[tuple[str, str]] = set()
        for section in PLATFORMS:
            # The platforms that take several accounts list them in `accounts`.
            for account in getattr(getattr(self, section), "accounts", ()):
                if (section, account.account) in seen:
                    raise ConfigError(
                        f"{section}.accounts", f"account {account.account} is configured twice"
                    )
                seen.add((section, account.account))
        if self.sms.enabled and not self.bridge.public_url:
            raise ConfigError(
                "bridge.public_url",
                "SMS needs the public URL: Twilio signs its webhooks over it, and fetches"
                " MMS media from it",
            )
        fb = self.facebook_page
        if (fb.page_id is None) != (fb.page_token is None):
            missing = "page_token" if fb.page_token is None else "page_id"
            raise ConfigError(
                f"facebook_page.{missing}", "publishing to a page needs its page_id and page_token"
            )
        for index, route in enumerate(self.routes):
            if route.slack_channel is None and route.matrix_room is None:
                raise ConfigError(f"routes.{index}", "names neither slack_channel nor matrix_room")

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
        lists = ("admins", "allowed_origins", "allowed_teams", "allowed_servers")
        if key in lists and isinstance(value, str):
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
        section = data.get(key.partition(".")[0])
        if key.count(".") >= 2 and isinstance(section, dict) and "accounts" not in section:
            # The one-account form: name the key as the user wrote it, `[whatsapp] access_token`.
            parts = key.split(".")
            if parts[1:3] == ["accounts", "0"]:
                key = ".".join([parts[0], *parts[3:]])
        if first["type"] == "extra_forbidden":
            message = "is not a known setting (see bridge.example.toml)"
        raise ConfigError(key, f"{message}{where}") from None
    settings.check()
    return settings


# The platform sections live in bridge.config_sections; they are part of this module's face.
__all__ = [
    "BridgeSettings",
    "ENV_PREFIX",
    "FacebookPageSettings",
    "MailSettings",
    "MatrixSettings",
    "MessengerPage",
    "MessengerSettings",
    "MetricsSettings",
    "OutboxSettings",
    "Route",
    "RulesSettings",
    "SecuritySettings",
    "Settings",
    "SlackSettings",
    "SmsAccount",
    "SmsSettings",
    "StatsSettings",
    "TelegramSettings",
    "WIDGET_TEXT_MAX",
    "WhatsAppAccount",
    "WhatsAppSettings",
    "WidgetSettings",
    "XSettings",
    "load_settings",
]

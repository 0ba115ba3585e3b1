"""The base of every settings section, and the sections of the platforms the connectors talk to.

A platform's section is a class here and one field of `PlatformSections`, which `Settings`
(bridge.config) extends: a new messenger adds both here and leaves bridge.config alone. Each
customer platform's section takes one account or several (`[[whatsapp.accounts]]`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from bridge.types import Platform

PlatformName = Literal["telegram", "whatsapp", "messenger", "sms"]
"""THE list of customer-side platforms, in the order staff see them (help, forms, the API).

It lives beside the platforms' settings sections because a platform is what has one: a new
messenger adds its name here with its section, and the API's enums, the commands' checks and
the route settings follow."""
PLATFORMS: tuple[Platform, ...] = tuple(Platform(name) for name in get_args(PlatformName))

# The shortest secret the bridge checks requests against (webhook secrets, verify tokens,
# app secrets, bearer tokens): shorter ones can be guessed by whoever reaches the listener.
SECRET_MIN = 16


def _hard_to_guess(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < SECRET_MIN:
        msg = (
            f"must be at least {SECRET_MIN} characters: the bridge checks requests against it"
            " and a shorter one can be guessed (e.g. `openssl rand -hex 32`)"
        )
        raise ValueError(msg)
    return value


CheckedSecret = Annotated[SecretStr, AfterValidator(_hard_to_guess)]
"""A secret the bridge checks what it receives against (not one it only sends)."""


class Section(BaseModel):
    """A settings section: frozen, and a key it does not know is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


GRAPH_API = "https://graph.facebook.com/v21.0"
TWILIO_API = "https://api.twilio.com"
_DIGITS = re.compile(r"^\+?[0-9]{6,15}$")


_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class TelegramSettings(Section):
    """The `[telegram]` section: one bot."""

    token: SecretStr | None = None
    mode: Literal["webhook", "polling"] | None = None
    webhook_secret: CheckedSecret | None = None
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


class WhatsAppAccount(Section):
    """One WhatsApp Business phone number on the Cloud API."""

    phone_number_id: str = Field(min_length=1)
    access_token: SecretStr
    app_secret: CheckedSecret
    verify_token: CheckedSecret
    # The number customers write to, for wa.me links (international format, digits).
    number: str | None = None
    # The WhatsApp Business Account id: lets the bridge list the approved templates.
    business_account_id: str | None = None
    api_base: str = GRAPH_API
    # Cloud API throughput: 80 messages/s per number by default, raised by Meta up to 1,000.
    rate: float = Field(default=80.0, gt=0, le=1000)
    # The pair limit: one message to the same customer about every 6 s, with short bursts.
    rate_pair: float = Field(default=1 / 6, gt=0)
    burst_pair: float = Field(default=10.0, ge=1)

    @field_validator("number")
    @classmethod
    def _number_digits(cls, value: str | None) -> str | None:
        if value is None:
            return None
        compact = re.sub(r"[\s()-]", "", value)
        if not _DIGITS.match(compact):
            msg = "must be an international phone number, e.g. 4915112345678"
            raise ValueError(msg)
        return compact.lstrip("+")

    @property
    def account(self) -> str:
        """The account id the bridge files this number's conversations under."""
        return self.phone_number_id


class MessengerPage(Section):
    """One Facebook page whose Messenger inbox the bridge serves."""

    page_id: str = Field(min_length=1)
    page_token: SecretStr
    app_secret: CheckedSecret
    verify_token: CheckedSecret
    # The page's username for m.me links; the page id works too.
    page_name: str | None = None
    api_base: str = GRAPH_API
    # Send API: about 300 calls per second per page for text.
    rate: float = Field(default=300.0, gt=0)

    @property
    def account(self) -> str:
        """The account id the bridge files this page's conversations under."""
        return self.page_id


class SmsAccount(Section):
    """One Twilio sender: a phone number, or a messaging service."""

    account_sid: str = Field(min_length=1)
    auth_token: CheckedSecret
    from_number: str | None = None
    messaging_service_sid: str | None = None
    # The number shown in sms: links when sending through a messaging service.
    number: str | None = None
    api_base: str = TWILIO_API
    # A US long code sends 1 segment/s; toll-free 3/s; short codes 100/s and more.
    rate: float = Field(default=1.0, gt=0)
    burst: float = Field(default=1.0, ge=1)

    @model_validator(mode="after")
    def _one_sender(self) -> SmsAccount:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            msg = "give exactly one of from_number and messaging_service_sid"
            raise ValueError(msg)
        for value in (self.from_number, self.number):
            if value is not None and not _DIGITS.match(value):
                msg = f"{value!r} is not an E.164 number such as +14155550100"
                raise ValueError(msg)
        return self

    @property
    def account(self) -> str:
        """The sender's number, or the messaging service's sid."""
        return self.from_number or self.messaging_service_sid or ""


X_API = "https://api.x.com"


class FacebookPageSettings(Section):
    """The `[facebook_page]` section: the Facebook page broadcasts may be published to."""

    page_id: str | None = None
    # A page access token with pages_manage_posts: posting to a page's feed needs it (the
    # Messenger token, pages_messaging only, is not enough).
    page_token: SecretStr | None = None
    api_base: str = GRAPH_API

    @property
    def enabled(self) -> bool:
        """A page id and its token turn publishing to the page on."""
        return self.page_id is not None and self.page_token is not None


class XSettings(Section):
    """The `[x]` section: the X account broadcasts may be published to."""

    # An OAuth 2.0 user-context access token (scopes tweet.write, tweet.read, users.read), sent
    # as `Authorization: Bearer`; an app-only bearer token cannot post.
    access_token: SecretStr | None = None
    api_base: str = X_API

    @property
    def enabled(self) -> bool:
        """An access token turns publishing to X on."""
        return self.access_token is not None


def _single_form(data: Any) -> Any:
    """`[whatsapp] phone_number_id = …` is the one-account form of `[[whatsapp.accounts]]`."""
    if isinstance(data, dict) and data and "accounts" not in data:
        return {"accounts": [data]}
    return data


class WhatsAppSettings(Section):
    """The `[whatsapp]` section: one number, or several as `[[whatsapp.accounts]]`."""

    accounts: tuple[WhatsAppAccount, ...] = ()
    _single = model_validator(mode="before")(_single_form)

    @property
    def enabled(self) -> bool:
        """Any configured number turns the connector on."""
        return bool(self.accounts)


class MessengerSettings(Section):
    """The `[messenger]` section: one page, or several as `[[messenger.accounts]]`."""

    accounts: tuple[MessengerPage, ...] = ()
    _single = model_validator(mode="before")(_single_form)

    @property
    def enabled(self) -> bool:
        """Any configured page turns the connector on."""
        return bool(self.accounts)


# `[sms]` keys that belong to the section, not to its one sender in the single-sender form.
_SMS_OWN_KEYS = ("gsm_lookalikes",)


def _sms_single_form(data: Any) -> Any:
    """`[sms] from_number = …` is the one-sender form; the section's own keys stay outside."""
    if isinstance(data, dict) and "accounts" not in data:
        own = {key: data[key] for key in _SMS_OWN_KEYS if key in data}
        sender = {key: value for key, value in data.items() if key not in own}
        return {**own, "accounts": [sender]} if sender else own
    return data


class SmsSettings(Section):
    """The `[sms]` section (Twilio): one sender, or several as `[[sms.accounts]]`."""

    accounts: tuple[SmsAccount, ...] = ()
    # Replace typographic quotes, dashes, the ellipsis and odd spaces with their GSM-7
    # look-alikes before sending, so one curly apostrophe does not turn a whole message into
    # UCS-2 (70 characters a segment instead of 160). Off: messages go out as written.
    gsm_lookalikes: bool = False
    _single = model_validator(mode="before")(_sms_single_form)

    @property
    def enabled(self) -> bool:
        """Any configured sender turns the connector on."""
        return bool(self.accounts)


class PlatformSections(Section):
    """One field per platform section, `[telegram]` to `[x]`; `Settings` adds the bridge's own."""

    telegram: TelegramSettings = TelegramSettings()
    whatsapp: WhatsAppSettings = WhatsAppSettings()
    messenger: MessengerSettings = MessengerSettings()
    sms: SmsSettings = SmsSettings()
    facebook_page: FacebookPageSettings = FacebookPageSettings()
    x: XSettings = XSettings()

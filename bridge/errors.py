"""The bridge's one error tree.

    BridgeError
     ├── ConfigError            a setting is missing or wrong (names the key)
     ├── BadRequest             an inbound request is malformed (→ HTTP 400)
     │    └── BadSignature       unsigned, wrongly signed or stale (→ HTTP 401/403)
     ├── NotAllowed             someone's role does not give the power they tried to use
     ├── Refused                a command or an API call cannot do what was asked (→ 422)
     │    ├── NotFound           what it names does not exist (→ 404)
     │    ├── Conflict           the change clashes with what exists (→ 409)
     │    └── Invalid            a value is wrong; `field` names it when known (→ 422)
     └── DeliveryError          talking to an outside platform failed
          ├── RateLimited        the platform said "slow down"; retry after `retry_after` s
          ├── TransientError     worth retrying with backoff (5xx, timeouts)
          │    └── Unreachable   no connection at all
          └── PermanentError     retrying will not help; `code` and `reason` say why
               ├── WindowClosed  the platform's customer-service window is closed
               ├── OptedOut      the customer unsubscribed (e.g. replied STOP to an SMS)
               ├── AddressRefused  the outbound guard refused a destination (bridge.security)
               └── TooLarge      past a size limit: a post the platform refused as too large,
                                 or an answer from outside longer than the bridge reads

Each connector maps its platform's HTTP/JSON errors into this tree in one function. Commands
and the REST API share the `Refused` branch: a chat command shows its message, the API answers
with the status beside it.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """A setting is missing or has a wrong value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"setting {key}: {message}")
        self.key = key


class BadRequest(BridgeError):
    """An inbound request cannot be understood."""

    status = 400


class BadSignature(BadRequest):
    """An inbound request is not signed by the party it claims to come from."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class DeliveryError(BridgeError):
    """Talking to an outside platform failed."""


class RateLimited(DeliveryError):
    """The platform asked us to wait before the next call.

    `per_recipient` says whether the limit is on sends to this one recipient (a chat, a pair)
    or on the whole account; the outbox holds back only what the limit covers.
    """

    def __init__(
        self, retry_after: float, message: str = "", *, per_recipient: bool = True
    ) -> None:
        super().__init__(message or f"rate limited, retry after {retry_after:g}s")
        self.retry_after = retry_after
        self.per_recipient = per_recipient


class Held(DeliveryError):
    """Not attempted now on purpose (a paused broadcast): wait without counting an attempt.

    The outbox blocks the rate key `key` for `retry_after` seconds, so every row carrying it
    waits together, without one wake-up or database write per row.
    """

    def __init__(self, key: str, retry_after: float, message: str = "") -> None:
        super().__init__(message or f"held for {retry_after:g}s")
        self.key = key
        self.retry_after = retry_after


class TransientError(DeliveryError):
    """A failure that may pass: retry later with backoff."""


class Unreachable(TransientError):
    """The platform could not be reached at all."""


class PermanentError(DeliveryError):
    """A failure that retrying will not fix."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{reason} ({code})")
        self.code = code
        self.reason = reason


class WindowClosed(PermanentError):
    """The platform only accepts templates (or tagged messages) outside its service window."""


class OptedOut(PermanentError):
    """The customer unsubscribed on the platform; the bridge records it on the contact."""


class NotAllowed(BridgeError):
    """Someone tried to use a power their role does not give (sending to a customer without
    the agent role, say)."""


class AddressRefused(PermanentError):
    """The outbound guard refused a destination; `reason` says which rule of it refused."""


class TooLarge(PermanentError):
    """Past a size limit: a post the platform refused as too large (the same content in smaller
    pieces may pass), or an answer read from outside that is longer than its cap."""


class Refused(BridgeError):
    """What a command or an API call asked for cannot be done; the message says why, in words
    for the caller."""


class NotFound(Refused):
    """What the request names does not exist (a contact, a channel, a blacklist entry)."""


class Conflict(Refused):
    """The change clashes with what exists (a channel of that name, a keyword in use)."""


class Invalid(Refused):
    """A value does not fit; `field` names it when the caller gave it by name."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

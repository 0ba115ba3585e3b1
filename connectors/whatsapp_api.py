"""What WhatsApp's Cloud API takes and answers: media types, templates, errors in words.

Every Graph error is turned into the bridge's error tree in `raise_for`; `ERROR_WORDS` also
gives the reasons of `failed` status webhooks.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from typing import Any, NoReturn

from bridge.errors import PermanentError, RateLimited, TransientError, WindowClosed
from bridge.types import FileData, MediaKind, Template
from connectors.wire import int_or_none, opt_str, retry_after

# Supported media (…/cloud-api/reference/media#supported-media-types): images only as JPEG or
# PNG (WebP is for stickers only), video as MP4 or 3GPP, audio as AAC, AMR, MP3, M4A or OGG/Opus;
# images up to 5 MB, audio and video up to 16 MB, documents up to 100 MB. A file that does not
# fit its own type is sent as a document, which takes any of these.
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})
_VIDEO_TYPES = frozenset({"video/mp4", "video/3gpp"})
_AUDIO_TYPES = frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"})
_IMAGE_LIMIT = 5 * 1024 * 1024
_AUDIO_VIDEO_LIMIT = 16 * 1024 * 1024
DOCUMENT_LIMIT = 100 * 1024 * 1024

_EXTENSIONS: Mapping[str, str] = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "audio/aac": "aac",
    "audio/amr": "amr",
    "audio/mp4": "m4a",
    "video/mp4": "mp4",
    "video/3gpp": "3gp",
    "application/pdf": "pdf",
    "text/plain": "txt",
}

# Graph and Cloud API error codes (…/cloud-api/support/error-codes) in words for staff; used for
# send errors and for the errors of `failed` status webhooks alike.
ERROR_WORDS: Mapping[int, str] = {
    1: "the WhatsApp API had an unknown error",
    2: "the WhatsApp API service is temporarily unavailable",
    3: "the app lacks the capability or permission for this call",
    4: "the app made too many calls; WhatsApp asks to slow down",
    10: "the app lacks the permission for this call",
    100: "WhatsApp refused a parameter of the message as invalid",
    190: "the access token has expired or is invalid",
    200: "the app lacks the permission for this call",
    368: "the number is temporarily blocked for violating WhatsApp's policies",
    80007: "the WhatsApp Business Account reached its rate limit",
    130429: "the number reached its message throughput limit",
    130472: "Meta withheld the message: the customer's number is part of an experiment",
    131000: "WhatsApp failed to send the message for an unknown reason",
    131005: "WhatsApp denied access for this call",
    131008: "a required parameter of the message is missing",
    131009: "a parameter value of the message is not valid",
    131016: "the WhatsApp service is temporarily unavailable",
    131021: "the message was addressed to the business's own number",
    131026: (
        "the message could not be delivered: the number may not be on WhatsApp, may use an old"
        " app version, or has not accepted WhatsApp's new terms"
    ),
    131031: "the WhatsApp Business Account is locked",
    131042: "the WhatsApp Business Account has a payment problem",
    131045: "the number's certificate is not valid",
    131047: ("the customer has not written for more than 24 hours; only a template can be sent"),
    131048: "WhatsApp limits this number for spam: too many of its messages were blocked",
    131049: "Meta did not deliver this marketing message to keep engagement healthy",
    131050: "the customer stopped marketing messages from this business",
    131051: "WhatsApp does not support this message type",
    131052: "WhatsApp could not download the media the customer sent",
    131053: "WhatsApp could not upload or process the media file",
    131056: "too many messages to the same customer in a short time (pair rate limit)",
    131057: "the WhatsApp Business Account is in maintenance mode",
    132000: "the number of template parameters does not match the template",
    132001: "the template does not exist in that language or is not approved",
    132005: "the template text is too long once the parameters are filled in",
    132007: "the template's content violates a WhatsApp policy",
    132012: "the template parameters are not in the format the template expects",
    132015: "the template is paused for low quality",
    132016: "the template is disabled for low quality",
    133004: "the WhatsApp server is temporarily unavailable",
    133010: "the business phone number is not registered on WhatsApp",
}
# How long to wait when WhatsApp says slow down without a Retry-After header: throughput
# (130429) frees up within a second; the pair limit allows about one message per 6 s to one
# customer; app (4) and WABA (80007) limits are per hour; the spam limit needs a long pause.
_RATE_LIMITS: Mapping[int, float] = {130429: 1.0, 131056: 6.0, 4: 60.0, 80007: 60.0, 131048: 300.0}
_TRANSIENT_CODES = frozenset({1, 2, 131000, 131016, 131057, 133004})

_DEFAULT_RETRY = 60.0


def base_mime(mime_type: str | None) -> str:
    """A MIME type without its parameters, lower case."""
    return (mime_type or "").partition(";")[0].strip().lower()


def send_type(file: FileData) -> str:
    """The message type a file goes as: its own kind when WhatsApp takes it so, else document."""
    mime, size = base_mime(file.mime_type), len(file.data)
    if file.kind is MediaKind.IMAGE and mime in _IMAGE_TYPES and size <= _IMAGE_LIMIT:
        return "image"
    if file.kind is MediaKind.VIDEO and mime in _VIDEO_TYPES and size <= _AUDIO_VIDEO_LIMIT:
        return "video"
    if file.kind is MediaKind.AUDIO and mime in _AUDIO_TYPES and size <= _AUDIO_VIDEO_LIMIT:
        return "audio"
    return "document"


def extension(mime: str) -> str:
    """A file name extension for a MIME type (`bin` when none is known)."""
    known = _EXTENSIONS.get(mime)
    if known:
        return known
    guessed = mimetypes.guess_extension(mime) if mime else None
    return guessed.lstrip(".") if guessed else "bin"


def raise_for(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> NoReturn:
    """Map a Graph API error answer to the bridge's error tree."""
    raw_error = body.get("error")
    error: Mapping[str, Any] = raw_error if isinstance(raw_error, Mapping) else {}
    code = int_or_none(error.get("code"))
    message = opt_str(error, "message") or f"HTTP {status}"
    data = error.get("error_data")
    details = opt_str(data, "details") if isinstance(data, Mapping) else None
    words = ERROR_WORDS.get(code) if code is not None else None
    described = f"whatsapp: {message}" + (f" — {details}" if details else "")
    if code in _RATE_LIMITS or status == 429:
        default = _RATE_LIMITS.get(code, _DEFAULT_RETRY) if code is not None else _DEFAULT_RETRY
        wait = retry_after(headers)
        # 131056 is the pair limit (this one customer); the others cover the whole number.
        raise RateLimited(
            default if wait is None else wait, described, per_recipient=code == 131056
        )
    if code == 131047:
        raise WindowClosed("131047", ERROR_WORDS[131047])
    if code in _TRANSIENT_CODES:
        raise TransientError(described)
    if words is not None:
        if code in (100, 131008, 131009) and (details or message):
            # "Invalid parameter" alone does not say which one; Graph's details do.
            words = f"{words}: {details or message}"
        raise PermanentError(str(code), words)
    if status >= 500:
        raise TransientError(described)
    if status == 401:
        raise PermanentError(str(code or 190), ERROR_WORDS[190])
    raise PermanentError(str(code or status), details or message)


def template_of(item: Any) -> Template | None:
    """A template of the Graph API's listing; None for an item it cannot use."""
    if not isinstance(item, Mapping):
        return None
    name, language, status = (opt_str(item, key) for key in ("name", "language", "status"))
    if not name or not language or not status:
        return None
    body: str | None = None
    components = item.get("components")
    for component in components if isinstance(components, list) else []:
        if isinstance(component, Mapping) and component.get("type") == "BODY":
            body = opt_str(component, "text")
            break
    return Template(
        name=name,
        language=language,
        status=status,
        category=opt_str(item, "category"),
        body=body,
    )

"""What a click-to-chat link may carry on each platform, and its QR code to print; shared by
`/link` and the website widget."""

from __future__ import annotations

import io
import re

import qrcode  # type: ignore[import-untyped]
import qrcode.constants  # type: ignore[import-untyped]
from qrcode.image.pil import PilImage  # type: ignore[import-untyped]

from bridge.types import MESSENGER, TELEGRAM

# t.me start payloads: 1-64 of A-Za-z0-9_- (core.telegram.org/api/links#bot-links).
_TELEGRAM_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# m.me refs: fewer than 150 of letters, digits and + / = - . : _ (Messenger Platform docs).
_MESSENGER_REF = re.compile(r"^[A-Za-z0-9+/=.:_-]{1,149}$")
TEXT_LIMIT = 500  # a prefilled WhatsApp/SMS text; longer ones make QR codes hard to scan


def qr_png(data: str) -> bytes:
    """A QR code of `data` as PNG, large enough to print (medium error correction)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=12, border=4)
    code.add_data(data)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image(image_factory=PilImage).save(out)
    return out.getvalue()


def payload_problem(platform: str, text: str) -> str | None:
    """Why `platform`'s click-to-chat links cannot carry `text`, or None when they can."""
    if platform == TELEGRAM and not _TELEGRAM_PAYLOAD.match(text):
        return (
            f"a Telegram start payload is 1-64 characters of A-Z, a-z, 0-9, _ and -, and {text}"
            " is not; give the channel a join keyword like JOIN_NEWS for Telegram links"
        )
    if platform == MESSENGER and not _MESSENGER_REF.match(text):
        return (
            f"a Messenger ref is up to 149 characters of A-Z, a-z, 0-9 and + / = - . : _, and"
            f" {text} is not; use a keyword like JOIN_NEWS"
        )
    if len(text) > TEXT_LIMIT:
        return f"the payload has {len(text)} characters; at most {TEXT_LIMIT} fit"
    return None

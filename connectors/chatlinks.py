"""Click-to-chat links: the link that opens a chat with an account on its platform.

Pure: no storage and no I/O. Each customer connector builds its own account's link with it
(`Connector.chat_link`); `/link`, the widget and the start log ask the connectors.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from bridge.types import MESSENGER, SMS, TELEGRAM, WHATSAPP, Platform

# t.me deep links: the start payload is 1-64 characters of A-Z, a-z, 0-9, _ and -.
_TELEGRAM_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def chat_link(platform: Platform, address: str, payload: str | None = None) -> str:
    """The link that opens a chat with `address` on `platform`, carrying `payload`.

    `address` is the bot username (Telegram), the number in international format (WhatsApp,
    SMS) or the page username or id (Messenger). WhatsApp and SMS prefill the payload as the
    message text; Messenger passes it as the `ref` and Telegram as the /start parameter, which
    the bridge records as the contact's opt-in source.
    """
    if not address:
        msg = f"a {platform} link needs an address"
        raise ValueError(msg)
    if platform == WHATSAPP:
        # wa.me wants the full international number without +, spaces or dashes.
        digits = re.sub(r"\D", "", address)
        link = f"https://wa.me/{digits}"
        return f"{link}?{urlencode({'text': payload}, quote_via=quote)}" if payload else link
    if platform == MESSENGER:
        link = f"https://m.me/{quote(address, safe='.')}"
        return f"{link}?{urlencode({'ref': payload}, quote_via=quote)}" if payload else link
    if platform == TELEGRAM:
        link = f"https://t.me/{address.lstrip('@')}"
        if not payload:
            return link
        if not _TELEGRAM_PAYLOAD.match(payload):
            msg = "a Telegram start payload is 1-64 characters of A-Z, a-z, 0-9, _ and -"
            raise ValueError(msg)
        return f"{link}?start={payload}"
    if platform == SMS:
        number = "+" + re.sub(r"\D", "", address)
        # RFC 5724 sms: URI; `body` prefills the message on iOS and Android alike.
        return (
            f"sms:{number}?{urlencode({'body': payload}, quote_via=quote)}"
            if payload
            else (f"sms:{number}")
        )
    msg = f"no click-to-chat link for platform {platform}"
    raise ValueError(msg)

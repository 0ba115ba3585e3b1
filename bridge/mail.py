"""The mails rules forward: built from filled placeholders so that a customer's text can neither
add a header nor a recipient, and a mail that cannot be built is a permanent failure."""

from __future__ import annotations

import email.errors
import email.policy
import re
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr

from bridge.errors import PermanentError

# An address as RFC 5321 takes it in an envelope (dot-atom local part, a domain of labels):
# no display name, no comma, no second address, nothing the customer could add one with.
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
SHOWN_MAX = 80


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A mail ready for SMTP: the envelope says who gets it, whatever the headers say."""

    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage


def header_value(text: str) -> str:
    """`text` on one line: each line break (CR LF, CR, LF, and Unicode's line and paragraph
    separators) and every other control character becomes a space.

    A header ends at a line break (RFC 5322 2.2), so a break in a filled value would start a
    header of the customer's choosing; Python's email package refuses such values outright."""
    text = text.replace("\r\n", " ")
    return "".join(
        " " if c != "\t" and unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text
    )


def _shown(value: str) -> str:
    return value if len(value) <= SHOWN_MAX else value[: SHOWN_MAX - 1] + "…"


def build_mail(*, sender: str, to: str, subject: str, body: str, message_id: str) -> OutgoingMail:
    """The mail a mailForward rule sends; PermanentError when it cannot be built."""
    address = header_value(to).strip()
    if not _ADDRESS.fullmatch(address):
        raise PermanentError(
            "mail_address",
            f"{_shown(address)!r} is not one e-mail address once its placeholders are filled",
        )
    message = EmailMessage(policy=email.policy.SMTP)
    try:
        message["From"] = sender
        message["To"] = address
        message["Subject"] = header_value(subject)
        message["Message-ID"] = header_value(message_id)
        message.set_content(body)
        message.as_bytes()  # what cannot be written out fails here, once, not at each retry
    except (ValueError, TypeError, UnicodeError, email.errors.MessageError) as exc:
        raise PermanentError(
            "mail_unbuildable", f"the mail could not be built: {type(exc).__name__}"
        ) from None
    # The envelope's sender is the bare address of `[mail] from_address` ("Support <a@b>").
    envelope_sender = parseaddr(sender)[1] or sender
    return OutgoingMail(sender=envelope_sender, recipients=(address,), message=message)

"""Twilio's request signature (X-Twilio-Signature), as its helper libraries compute and check it
("Webhooks security", https://www.twilio.com/docs/usage/webhooks/webhooks-security)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit


def signature(token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature: base64 HMAC-SHA1 over the URL and the sorted parameters."""
    # As Twilio's helper libraries: names sorted, and a repeated name's values sorted too.
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def url_variants(url: str) -> list[str]:
    """The URL as given, with the scheme's default port spelled out, and without a port.

    Twilio's validators accept the signature over either form, because Twilio signs the URL as
    configured and proxies add or drop an explicit :443 / :80.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    default = {"https": 443, "http": 80}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return [url]
    variants = [url]
    if port is None and default is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    elif port is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}")))
    return variants

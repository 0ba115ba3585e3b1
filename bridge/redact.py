"""URLs as people and logs may see them: a rule's or webhook's URL often carries a token in its
query string or userinfo, so both are left out wherever the URL is not shown to a manager."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# A URL inside free text (a command line, an error message): scheme, then up to a space.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def short_url(url: str) -> str:
    """`scheme://host[:port]/path` of a URL: no userinfo, query or fragment."""
    try:
        parts = urlsplit(url.strip())
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "(a URL that cannot be read)"
    if not parts.scheme or not host:
        # Not an absolute URL (a typo, a placeholder): cut at the first sign of a query.
        return re.split(r"[?#@]", url, maxsplit=1)[0]
    return f"{parts.scheme}://{host}{parts.path}"


def redact_urls(text: str) -> str:
    """Text with every URL in it shortened (see `short_url`)."""
    return _URL.sub(lambda m: short_url(m.group(0)), text)

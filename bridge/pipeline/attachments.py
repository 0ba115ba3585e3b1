"""Attachments as outbox payloads and stored messages carry them: plain dicts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from bridge.types import Attachment, MediaKind


def attachment_dict(a: Attachment) -> dict[str, Any]:
    """An attachment as a dict, without its unknown fields."""
    return {k: v for k, v in asdict(a).items() if v is not None}


def attachment(d: Mapping[str, Any]) -> Attachment:
    """An attachment back from its dict."""
    return Attachment(
        kind=MediaKind(d["kind"]),
        ref=str(d["ref"]),
        filename=d.get("filename"),
        mime_type=d.get("mime_type"),
        size=d.get("size"),
    )

"""Files of encrypted Matrix rooms: the `file` object of an event (Matrix spec, "Sending
encrypted attachments") as the reference an Attachment carries, and decrypting what is
downloaded with it."""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from typing import Any

from nio.crypto.attachments import decrypt_attachment
from nio.exceptions import EncryptionError

from bridge.errors import PermanentError

_SEP = "#e2e="


def file_ref(content: Mapping[str, Any]) -> str | None:
    """An encrypted file's reference: its mxc URI with the key, IV and hash after it."""
    file = content.get("file")
    if not isinstance(file, Mapping) or not isinstance(file.get("url"), str):
        return None
    try:
        key = str(file["key"]["k"])
        iv = str(file["iv"])
        digest = str(file["hashes"]["sha256"])
    except (KeyError, TypeError):
        return None
    return f"{file['url']}{_SEP}{json.dumps([key, iv, digest], separators=(',', ':'))}"


def split_file_ref(ref: str) -> tuple[str, tuple[str, str, str] | None]:
    """The mxc URI of a file reference, and the key, IV and hash when it is encrypted."""
    mxc, sep, keys = ref.partition(_SEP)
    if not sep:
        return ref, None
    try:
        key, iv, digest = json.loads(keys)
    except (ValueError, TypeError):
        raise PermanentError("bad_file", "an encrypted file's keys are unreadable") from None
    return mxc, (str(key), str(iv), str(digest))


def decrypt_file(data: bytes, keys: tuple[str, str, str]) -> bytes:
    """An encrypted attachment's plain bytes (AES-CTR, checked against its SHA-256)."""
    key, iv, digest = keys
    try:
        return bytes(decrypt_attachment(data, key, digest, iv))
    except (EncryptionError, ValueError, binascii.Error) as exc:
        raise PermanentError("bad_file", f"an encrypted file did not decrypt: {exc}") from None

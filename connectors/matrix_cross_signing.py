"""The bot's cross-signing identity (Matrix spec, "Cross-signing"), so that clients show its
device as verified by its owner rather than as an unknown device.

The account gets a master key, a self-signing key and a user-signing key, made once and kept in
the bridge's database (the surface's key-value store); the self-signing key signs the bot's
device. Everything is pure here except `cross_sign`, which makes the calls.

Ed25519 comes from `cryptography`: vodozemac's Python binding (0.10) signs only with an Olm
account's own device key and offers no standalone Ed25519 key to generate and sign with, and
the three cross-signing keys are key pairs of their own, apart from any device.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pydantic import SecretStr

from bridge.errors import PermanentError
from bridge.protocols import StateStore
from connectors.matrix_api import Homeserver

log = logging.getLogger(__name__)

KEYS_KEY = "cross_signing_keys"
QUERY = "/_matrix/client/v3/keys/query"
SIGNING_UPLOAD = "/_matrix/client/v3/keys/device_signing/upload"
SIGNATURES_UPLOAD = "/_matrix/client/v3/keys/signatures/upload"
WHOAMI = "/_matrix/client/v3/account/whoami"
USAGES = ("master", "self_signing", "user_signing")
# Seconds between looks for the device's keys after the first sync, about four minutes in all.
KEY_WAITS = (2.0, 5.0, 15.0, 30.0, 60.0, 120.0)


class Outcome(enum.Enum):
    """What a run of `cross_sign` did."""

    SIGNED = "signed"  # keys and/or the device's signature uploaded
    ALREADY_DONE = "already done"  # the server has our keys and the device is signed
    NO_DEVICE_KEYS = "no device keys"  # the device has not uploaded its keys yet: try later
    NEEDS_PASSWORD = "needs password"  # the homeserver asks for the account's password


# -- encodings (spec, "Appendices": canonical JSON, unpadded base64, signing JSON) --------


def unpadded_b64(data: bytes) -> str:
    """Standard base64 without `=` padding, as every Matrix key and signature is written."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def from_unpadded_b64(text: str) -> bytes:
    """The bytes of an unpadded (or padded) base64 string."""
    return base64.b64decode(text + "=" * (-len(text) % 4))


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no insignificant whitespace, UTF-8 unescaped."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signing_bytes(obj: Mapping[str, Any]) -> bytes:
    """What a signature of a JSON object covers: the object without `signatures` and
    `unsigned`, in canonical JSON (spec, "Signing JSON")."""
    return canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def sign_json(
    obj: Mapping[str, Any], user_id: str, key_id: str, key: Ed25519PrivateKey
) -> dict[str, Any]:
    """The object with one more signature under `signatures[user_id][key_id]`."""
    signature = unpadded_b64(key.sign(signing_bytes(obj)))
    signed = dict(obj)
    signatures = {u: dict(s) for u, s in (obj.get("signatures") or {}).items()}
    signatures.setdefault(user_id, {})[key_id] = signature
    signed["signatures"] = signatures
    return signed


def verifies(obj: Mapping[str, Any], user_id: str, public: str) -> bool:
    """Whether the object carries a valid signature by the Ed25519 key `public`."""
    signature = (obj.get("signatures") or {}).get(user_id, {}).get(f"ed25519:{public}")
    if not isinstance(signature, str):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(from_unpadded_b64(public)).verify(
            from_unpadded_b64(signature), signing_bytes(obj)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


# -- the keys ---------------------------------------------------------------------------


def public_of(key: Ed25519PrivateKey) -> str:
    """The public half in unpadded base64, which is also the key's id after `ed25519:`."""
    return unpadded_b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


@dataclass(frozen=True)
class SigningKeys:
    """The account's master, self-signing and user-signing keys (32-byte Ed25519 seeds)."""

    master: bytes
    self_signing: bytes
    user_signing: bytes

    @classmethod
    def generate(cls) -> SigningKeys:
        """Three fresh key pairs."""
        return cls(*(_seed(Ed25519PrivateKey.generate()) for _ in USAGES))

    @classmethod
    def from_json(cls, text: str) -> SigningKeys:
        """Read back what `to_json` wrote."""
        stored = json.loads(text)
        return cls(*(from_unpadded_b64(stored[usage]) for usage in USAGES))

    def to_json(self) -> str:
        """The seeds, for the key-value store."""
        seeds = (self.master, self.self_signing, self.user_signing)
        return json.dumps({u: unpadded_b64(s) for u, s in zip(USAGES, seeds, strict=True)})

    def private(self, usage: str) -> Ed25519PrivateKey:
        """The private key of one usage (`master`, `self_signing`, `user_signing`)."""
        return Ed25519PrivateKey.from_private_bytes(getattr(self, usage))

    def public(self, usage: str) -> str:
        """The public key of one usage, unpadded base64."""
        return public_of(self.private(usage))


def _seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def key_object(keys: SigningKeys, user_id: str, usage: str) -> dict[str, Any]:
    """One cross-signing key object; the self- and user-signing keys signed by the master."""
    public = keys.public(usage)
    obj: dict[str, Any] = {
        "user_id": user_id,
        "usage": [usage],
        "keys": {f"ed25519:{public}": public},
    }
    if usage == "master":
        return obj
    master = keys.public("master")
    return sign_json(obj, user_id, f"ed25519:{master}", keys.private("master"))


def upload_body(keys: SigningKeys, user_id: str) -> dict[str, Any]:
    """The body of POST /keys/device_signing/upload (without `auth`)."""
    return {f"{usage}_key": key_object(keys, user_id, usage) for usage in USAGES}


def signed_device(keys: SigningKeys, user_id: str, device: Mapping[str, Any]) -> dict[str, Any]:
    """The device's keys as the server has them, signed by the self-signing key."""
    public = keys.public("self_signing")
    plain = {k: v for k, v in device.items() if k != "unsigned"}
    return sign_json(plain, user_id, f"ed25519:{public}", keys.private("self_signing"))


# -- reading /keys/query ------------------------------------------------------------------


def server_key(answer: Mapping[str, Any], user_id: str, usage: str) -> str | None:
    """The public key the server holds for one usage of the user, if any."""
    section = answer.get(f"{usage}_keys") or {}
    obj = section.get(user_id) if isinstance(section, Mapping) else None
    found = (obj or {}).get("keys") if isinstance(obj, Mapping) else None
    if not isinstance(found, Mapping) or not found:
        return None
    value = next(iter(found.values()))
    return value if isinstance(value, str) else None


def server_has(keys: SigningKeys, answer: Mapping[str, Any], user_id: str) -> bool:
    """Whether the server holds exactly our master and self-signing keys."""
    return server_key(answer, user_id, "master") == keys.public("master") and server_key(
        answer, user_id, "self_signing"
    ) == keys.public("self_signing")


def device_of(answer: Mapping[str, Any], user_id: str, device_id: str) -> dict[str, Any] | None:
    """The device's keys in a /keys/query answer, or None when it has uploaded none."""
    device = ((answer.get("device_keys") or {}).get(user_id) or {}).get(device_id)
    return dict(device) if isinstance(device, Mapping) and device.get("keys") else None


def password_flow(challenge: Mapping[str, Any]) -> bool:
    """Whether a user-interactive auth challenge offers a flow of `m.login.password` alone."""
    flows = challenge.get("flows") or []
    return any(
        isinstance(flow, Mapping) and flow.get("stages") == ["m.login.password"] for flow in flows
    )


# -- the calls ----------------------------------------------------------------------------


async def stored_keys(state: StateStore) -> SigningKeys:
    """The account's keys from the database, made (and stored) the first time."""
    text = await state.get(KEYS_KEY)
    if text is not None:
        return SigningKeys.from_json(text)
    keys = SigningKeys.generate()
    await state.put(KEYS_KEY, keys.to_json())
    return keys


async def _upload_keys(
    hs: Homeserver, user_id: str, keys: SigningKeys, password: SecretStr | None
) -> bool:
    """Upload the keys; True when the homeserver took them.

    A first upload needs no auth on servers with MSC3967 (in the spec since v1.11); replacing
    keys asks for user-interactive auth, which a bot can only answer with its password."""
    body = upload_body(keys, user_id)
    challenge = await hs.api("POST", SIGNING_UPLOAD, json=body, uia=True)
    if "flows" not in challenge:
        return True
    if password is None:
        log.warning(
            "Matrix: cross-signing the bot's device needs [matrix] password once: the homeserver"
            " asks for the account's password to set up its cross-signing keys. Until then"
            " Element shows the bot's device as not verified by its owner."
        )
        return False
    if not password_flow(challenge):
        log.warning(
            "Matrix: the homeserver offers no password confirmation for cross-signing (%s);"
            " the bot's device stays unverified by its owner",
            [flow.get("stages") for flow in challenge.get("flows") or []],
        )
        return False
    body["auth"] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password.get_secret_value(),
        "session": challenge.get("session"),
    }
    again = await hs.api("POST", SIGNING_UPLOAD, json=body, uia=True)
    if "flows" in again:
        log.warning(
            "Matrix: the homeserver refused [matrix] password for cross-signing (%s)",
            again.get("error") or again.get("errcode") or "no reason given",
        )
        return False
    return True


async def _sign_device(
    hs: Homeserver, user_id: str, keys: SigningKeys, device: Mapping[str, Any]
) -> None:
    device_id = str(device.get("device_id"))
    body = {user_id: {device_id: signed_device(keys, user_id, device)}}
    answer = await hs.api("POST", SIGNATURES_UPLOAD, json=body)
    failure = ((answer.get("failures") or {}).get(user_id) or {}).get(device_id)
    if failure:
        # The upload answers 200 and lists what it refused (spec, POST /keys/signatures/upload).
        raise PermanentError(
            str(failure.get("errcode", "")), f"the device signature was refused: {failure}"
        )


async def cross_sign(
    hs: Homeserver,
    state: StateStore,
    user_id: str,
    device_id: str | None,
    password: SecretStr | None,
) -> Outcome:
    """Make sure the server has the account's cross-signing keys and the device is signed."""
    keys = await stored_keys(state)
    if device_id is None:
        device_id = str((await hs.api("GET", WHOAMI)).get("device_id") or "")
    answer = await hs.api("POST", QUERY, json={"device_keys": {user_id: []}})
    uploaded = False
    if not server_has(keys, answer, user_id):
        if not await _upload_keys(hs, user_id, keys, password):
            return Outcome.NEEDS_PASSWORD
        log.info("Matrix: uploaded the cross-signing keys of %s", user_id)
        uploaded = True
    device = device_of(answer, user_id, device_id)
    if device is None:
        log.info("Matrix: device %s has no keys on the server yet; signing it later", device_id)
        return Outcome.NO_DEVICE_KEYS
    if not uploaded and verifies(device, user_id, keys.public("self_signing")):
        return Outcome.ALREADY_DONE
    await _sign_device(hs, user_id, keys, device)
    log.info("Matrix: device %s of %s is cross-signed", device_id, user_id)
    return Outcome.SIGNED


async def cross_sign_when_ready(
    hs: Homeserver,
    state: StateStore,
    user_id: str,
    password: SecretStr | None,
    synced: asyncio.Event,
) -> Outcome | None:
    """Cross-sign the bot's device after the first sync, waiting a while for its keys.

    The client uploads its device keys when it starts encrypting, which may come after the
    first sync; until then there is nothing to sign. Never raises: without cross-signing the
    bridge still works, and clients show the device as not verified by its owner."""
    await synced.wait()
    for delay in (*KEY_WAITS, None):
        try:
            outcome = await cross_sign(hs, state, user_id, hs.client.device_id, password)
        except Exception as exc:
            log.warning(
                "Matrix: cross-signing the bot's device failed (%s); the bridge goes on, and"
                " clients show the device as not verified by its owner",
                exc,
            )
            return None
        if outcome is not Outcome.NO_DEVICE_KEYS:
            return outcome
        if delay is None:
            log.warning("Matrix: the bot's device has uploaded no keys; it is not cross-signed")
            return outcome
        await asyncio.sleep(delay)
    return None

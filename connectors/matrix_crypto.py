"""End-to-end encryption for the Matrix bot (Matrix spec, "End-to-End Encryption"), on
matrix-nio's Olm machine (vodozemac).

nio's machine reads and writes a synchronous store. Here that store is nio's own SQLite schema
held in memory, loaded at start from one blob in the bridge's database and written back as a
whole (SQLite's serialize) after each sync response, before the sync position moves on: a
room key the homeserver hands out once (to-device messages are deleted once a later position is
acknowledged) is in the database before the position that drops it is. No file lies beside
the database, and a restart or another host keeps the bot's device and identity key.

Only the process that runs the sync loop opens the state (see MatrixSurface.start_loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any

from nio import (
    Event,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    LocalProtocolError,
    MegolmEvent,
    SyncError,
    WhoamiResponse,
)
from nio.exceptions import EncryptionError
from nio.store import SqliteMemoryStore
from peewee import SqliteDatabase  # type: ignore[import-untyped]

from bridge.config import MatrixSettings
from bridge.errors import TransientError
from bridge.protocols import SecretStateStore, StateStore
from connectors.matrix_api import Homeserver, checked, raise_response
from connectors.matrix_keyshare import KeyShare, SharingOlm
from connectors.matrix_render import in_thread, txn_id

log = logging.getLogger(__name__)

# How long an event that cannot be decrypted waits for its keys before the thread is told.
KEY_WAIT_S = 120.0


class _SnapshotDatabase(SqliteDatabase):  # type: ignore[misc]
    """An in-memory SQLite database that starts from a serialized snapshot."""

    def __init__(self, snapshot: bytes | None, **kwargs: Any) -> None:
        self._snapshot = snapshot
        super().__init__(":memory:", **kwargs)

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = super()._connect()
        if self._snapshot:
            conn.deserialize(self._snapshot)
        return conn


class SnapshotStore(SqliteMemoryStore):  # type: ignore[misc]
    """nio's SQLite store in memory, loaded from and saved to one blob of the bridge's DB."""

    def __init__(self, user_id: str, device_id: str, pickle_key: str, snapshot: bytes | None):
        self._snapshot = snapshot
        super().__init__(user_id, device_id, pickle_key)

    def _create_database(self) -> SqliteDatabase:
        return _SnapshotDatabase(self._snapshot, pragmas={"foreign_keys": 1, "secure_delete": 1})

    def changes(self) -> int:
        """How many rows were written since the store was opened (a cheap change mark)."""
        return int(self.database.connection().total_changes)

    def snapshot(self) -> bytes:
        """The whole store as bytes."""
        return bytes(self.database.connection().serialize())


@dataclass
class _Waiting:
    """An event the bot could not decrypt yet, and since when (seconds since the epoch)."""

    room: str
    source: dict[str, Any]
    since: float


Notify = Callable[[str, str, dict[str, Any], str], Awaitable[object]]


def crypto_for(
    settings: MatrixSettings, hs: Homeserver, state: StateStore, send: Notify
) -> Crypto | None:
    """The bot's device keys, when `[matrix] encryption` is on (bot mode); `send` posts the
    notice about a message that could not be decrypted (room, type, content, txn)."""
    if not settings.encryption or settings.mode != "bot" or not isinstance(state, SecretStateStore):
        return None
    # The pickles' key is a secret of the settings, never of the database they lie in.
    key = settings.pickle_key or settings.access_token or settings.password
    if key is None:
        msg = "matrix.encryption needs matrix.pickle_key, access_token or password"
        raise ValueError(msg)
    # Staff as the bridge counts them (MatrixSurface.staff_servers): whose devices get keys.
    staff = frozenset({(settings.user_id or "").partition(":")[2], *settings.allowed_servers})
    return Crypto(hs, state, key.get_secret_value(), send, staff)


def undecryptable_notice(event: Mapping[str, Any]) -> dict[str, Any]:
    """The notice for a staff message that never became readable: who wrote it, how to fix
    it; in the event's thread when its (unencrypted) relation names one."""
    sender = str(event.get("sender", "someone"))
    content = event.get("content")
    relation = (content.get("m.relates_to") if isinstance(content, Mapping) else None) or {}
    text = (
        f"A message from {sender} could not be decrypted by the bridge, so it did not reach"
        " the customer. Their client has not shared its keys with the bridge's device:"
        " they can verify the bridge's device (or share keys with unverified devices)"
        " and send it again."
    )
    notice: dict[str, Any] = {"msgtype": "m.notice", "m.mentions": {}, "body": f"ℹ️ {text}"}
    if relation.get("rel_type") == "m.thread" and isinstance(relation.get("event_id"), str):
        notice["m.relates_to"] = in_thread(relation["event_id"])
    return notice


class Crypto:
    """The bot's device: its store, key uploads and queries, decryption and waiting events."""

    def __init__(
        self,
        hs: Homeserver,
        secrets: SecretStateStore,
        pickle_key: str,
        send: Notify,
        staff_servers: Set[str] = frozenset(),
    ) -> None:
        self._hs = hs
        hs.keys_required = True  # no send before the keys are open (see Homeserver.send)
        self.client = hs.client
        self._secrets = secrets
        self._pickle_key = pickle_key
        self._send = send
        self._store: SnapshotStore | None = None
        self._saved = 0
        self._waiting: dict[str, _Waiting] = {}
        self._waiting_saved: list[str] | None = None
        self._ask: list[MegolmEvent] = []
        self._lock = asyncio.Lock()
        self._share = KeyShare(self.client, staff_servers)

    @property
    def _name(self) -> str:
        return f"olm.{self.client.user_id}.{self.client.device_id}"

    async def login(self, token_configured: bool) -> WhoamiResponse:
        """Log in: with a password, as the device of the first login (kept in the database,
        its token too), so the keys stay the bot's; who the bot is."""
        hs = self._hs
        if not token_configured:
            await self._restore_login()
        await hs.ready()
        try:
            who = await checked(self.client.whoami(), WhoamiResponse)
        except TransientError:
            if token_configured:
                raise
            # The kept token was revoked: log in again as the same device (same keys).
            self.client.access_token = ""
            await hs.ready()
            who = await checked(self.client.whoami(), WhoamiResponse)
        if who.device_id:
            self.client.device_id = who.device_id
        if not token_configured:
            await self._keep_login()
        return who

    async def start(self, sync_filter: dict[str, Any]) -> None:
        """In the process that syncs: open the store, store it after each send, and learn
        the rooms (which are encrypted, who is in them) before anything is sent."""
        await self.open()
        self._hs.after_send = self.save
        # A sync from the start, not stored as the position: nio's view of the rooms' state.
        quiet = {**sync_filter, "room": {**sync_filter["room"], "timeline": {"limit": 1}}}
        response = await self.client.sync(timeout=0, sync_filter=quiet, full_state=True)
        if isinstance(response, SyncError):
            raise_response(response)
        await self.keys()
        await self.save()

    async def _restore_login(self) -> None:
        """Password login: take the device id and token of the first login, if kept."""
        kept = await self._secrets.load_secret("device")
        if kept is None:
            return
        device = json.loads(kept)
        self.client.device_id = device["device_id"]
        self.client.access_token = device["access_token"]

    async def _keep_login(self) -> None:
        """Keep the device id and token, so a restart logs in as the same device."""
        device = {"device_id": self.client.device_id, "access_token": self.client.access_token}
        await self._secrets.save_secret("device", json.dumps(device).encode())

    async def open(self) -> None:
        """Load the store (a new device's keys are made and uploaded once)."""
        if self._store is not None:
            return
        snapshot = await self._secrets.load_secret(self._name)
        store = SnapshotStore(
            self.client.user_id, self.client.device_id, self._pickle_key, snapshot
        )
        self.client.store = store
        self.client.olm = SharingOlm(self.client.user_id, self.client.device_id, store)
        self.client.encrypted_rooms = store.load_encrypted_rooms()
        self._store = store
        self._saved = -1  # a first snapshot, also of a store that was just made
        waiting = await self._secrets.load_secret("waiting")
        for item in json.loads(waiting) if waiting else []:
            self._waiting[item["source"]["event_id"]] = _Waiting(**item)
        self._waiting_saved = list(self._waiting)
        log.info(
            "Matrix: device %s, identity key %s",
            self.client.device_id,
            self.client.olm.account.identity_keys["ed25519"],
        )
        await self.keys()
        await self.save()

    async def keys(self) -> None:
        """Upload, query and claim what nio says is due (after each sync and at start)."""
        client = self.client
        await self._request_keys()
        await client.send_to_device_messages()
        if client.should_upload_keys:
            _warn(await client.keys_upload(), KeysUploadResponse)
        queried = client.should_query_keys and _warn(await client.keys_query(), KeysQueryResponse)
        if client.should_claim_keys:
            users = client.get_users_for_key_claiming()
            _warn(await client.keys_claim(users), KeysClaimResponse)
        if await self._share.answer() or queried:
            # A member's devices changed (a new member, a new device): the next message starts
            # a new room key, shared with every device known now (nio shares a key once).
            for room in list(client.encrypted_rooms):
                client.invalidate_outbound_session(room)

    async def after_sync(self, handle: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None:
        """After a sync response: keys due, waiting events whose keys came (to `handle`), and
        the store written, before the position that makes the homeserver drop those keys."""
        await self.keys()
        for room, event in await self.retry():
            await handle(room, event)
        await self.save()

    async def save(self) -> None:
        """Write the store to the database when it changed since the last write."""
        store = self._store
        if store is None:
            return
        async with self._lock:
            # Events waiting for keys are kept too: the sync position moves past them.
            if list(self._waiting) != self._waiting_saved:
                waiting = [vars(w) for w in self._waiting.values()]
                await self._secrets.save_secret("waiting", json.dumps(waiting).encode())
                self._waiting_saved = list(self._waiting)
            mark = store.changes()
            if mark == self._saved:
                return
            await self._secrets.save_secret(self._name, store.snapshot())
            self._saved = mark

    async def forget(self, room: str, root: str) -> None:
        """After a thread's erasure: the room's next message starts a new room key, and the
        thread's events waiting for keys are dropped. Room keys serve a whole room, not a
        thread, so the keys of the room's history stay (other threads need them)."""
        if self.client.olm is not None and room in self.client.encrypted_rooms:
            self.client.invalidate_outbound_session(room)
        for event_id, waiting in list(self._waiting.items()):
            if waiting.room == room and _thread_of(waiting.source) == root:
                del self._waiting[event_id]
        self._ask = [e for e in self._ask if e.event_id in self._waiting]
        await self.save()

    def decrypted(self, room: str, source: dict[str, Any]) -> dict[str, Any] | None:
        """An event as it reads in clear (unchanged when it was not encrypted); None while
        its keys are missing (kept, and asked for: see `retry`)."""
        if source.get("type") != "m.room.encrypted" or self.client.olm is None:
            return source
        clear = self.peek(room, source)
        if clear is not source:
            return clear
        parsed = Event.parse_event({**source, "room_id": room})
        if isinstance(parsed, MegolmEvent):
            self._wait(room, source, parsed)
        return None  # an Olm event in a room, or a broken one: nothing to show

    def peek(self, room: str, source: dict[str, Any]) -> dict[str, Any]:
        """An event of the room's history decrypted if the bot can (its own posts among them:
        nio keeps the bot's outbound room keys as inbound ones), else as it is."""
        if source.get("type") != "m.room.encrypted" or self.client.olm is None:
            return source
        parsed = Event.parse_event({**source, "room_id": room})
        if not isinstance(parsed, MegolmEvent):
            return source
        try:
            clear = self.client.decrypt_event(parsed)
        except (EncryptionError, LocalProtocolError):
            return source
        return dict(clear.source) if hasattr(clear, "source") else source

    def _wait(self, room: str, source: dict[str, Any], parsed: MegolmEvent) -> None:
        event_id = str(source.get("event_id"))
        if event_id in self._waiting:
            return
        log.info("Matrix: no key yet for %s from %s", event_id, source.get("sender"))
        self._waiting[event_id] = _Waiting(room, source, time.time())
        self._ask.append(parsed)

    async def _request_keys(self) -> None:
        """Ask for the keys of waiting events: nio asks the bot's own devices (and notes the
        request, without which it takes no forwarded key), the sender's devices are asked too
        (Matrix spec, "Key requests")."""
        asks, self._ask = self._ask, []
        for event in asks:
            with contextlib.suppress(LocalProtocolError):  # asked already for this session
                await self.client.request_room_key(event)
                request = event.as_key_request(event.sender, self.client.device_id)
                await self.client.to_device(request)

    async def retry(self) -> list[tuple[str, dict[str, Any]]]:
        """Waiting events whose keys have arrived (room and clear event); those waiting past
        KEY_WAIT_S are given up and the thread told."""
        ready: list[tuple[str, dict[str, Any]]] = []
        now = time.time()
        for event_id, waiting in list(self._waiting.items()):
            clear = self.peek(waiting.room, waiting.source)
            if clear is not waiting.source:
                del self._waiting[event_id]
                ready.append((waiting.room, clear))
            elif now - waiting.since > KEY_WAIT_S:
                del self._waiting[event_id]
                notice = undecryptable_notice(waiting.source)
                if "m.relates_to" not in notice:
                    # Talk in the room itself never reaches a customer: the log says it.
                    log.warning("Matrix: %s was never decrypted", event_id)
                    continue
                await self._send(
                    waiting.room,
                    "m.room.message",
                    notice,
                    txn_id("undecryptable", event_id),
                )
        return ready


def _thread_of(event: Mapping[str, Any]) -> str | None:
    """The thread root an event belongs to (its relation is outside the encryption), or its
    own id."""
    content = event.get("content")
    relation = (content.get("m.relates_to") if isinstance(content, Mapping) else None) or {}
    if relation.get("rel_type") == "m.thread" and isinstance(relation.get("event_id"), str):
        return str(relation["event_id"])
    return str(event.get("event_id"))


def _warn(answer: Any, ok: type) -> bool:
    if isinstance(answer, ok):
        return True
    log.warning("Matrix: a key request failed: %s", answer)
    return False

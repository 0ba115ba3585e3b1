"""A staff member whose Matrix client encrypts: nio's AsyncClient with end-to-end encryption,
its key store in a directory of the test, syncing in the background and keeping every event it
could decrypt (and those it could not)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    LoginResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
    ToDeviceMessage,
    UploadResponse,
)
from nio.crypto import OutgoingKeyRequest
from nio.crypto.attachments import decrypt_attachment
from nio.exceptions import EncryptionError

from tests.synapse import Synapse

ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


class E2eStaff:
    """An encrypting staff client: what it reads is decrypted, what it sends is encrypted."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.user_id: str = client.user_id
        self.events: list[dict[str, Any]] = []  # decrypted (or clear) timeline events
        self.undecrypted: list[str] = []
        self.megolm: dict[str, MegolmEvent] = {}  # the events it could not decrypt
        self.password = ""
        self.syncs = 0  # sync responses handled
        self.decrypted: set[str] = set()  # ids of the events that came encrypted
        self.sessions: dict[str, str] = {}  # event id: the room key (Megolm session) it used
        self._task: asyncio.Task[None] | None = None
        client.add_event_callback(self._on_event, Event)
        client.add_response_callback(self._on_sync, SyncResponse)

    @classmethod
    async def login(cls, server: Synapse, store: Path, name: str) -> E2eStaff:
        """Register a user and log in with an encrypting client."""
        localpart = f"{name}{secrets.token_hex(3)}"
        password = secrets.token_hex(8)
        server.register(localpart, password)
        return await cls._login(server, store, localpart, password, name)

    async def another_device(self, server: Synapse, store: Path) -> E2eStaff:
        """The same user logged in on a second device (with keys of its own)."""
        localpart = self.user_id.partition(":")[0][1:]
        return await self._login(server, store, localpart, self.password, "second")

    @classmethod
    async def _login(
        cls, server: Synapse, store: Path, localpart: str, password: str, name: str
    ) -> E2eStaff:
        store.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
        client = AsyncClient(
            server.base_url, f"@{localpart}:localhost", store_path=str(store), config=config
        )
        answer = await client.login(password, device_name=name)
        assert isinstance(answer, LoginResponse), answer
        staff = cls(client)
        staff.password = password
        staff._task = asyncio.create_task(client.sync_forever(timeout=500, full_state=True))
        return staff

    async def _on_sync(self, response: SyncResponse) -> None:
        self.syncs += 1

    async def _on_event(self, room: Any, event: Event) -> None:
        if isinstance(event, MegolmEvent):
            self.undecrypted.append(event.event_id)
            self.megolm[event.event_id] = event
        else:
            if getattr(event, "decrypted", False):
                self.decrypted.add(event.event_id)
                self.sessions[event.event_id] = str(event.session_id)
            self.events.append(event.source)

    async def ask_key(self, event_id: str, holder: str) -> None:
        """Ask another user's devices for an event's room key (`m.room_key_request`), and
        take a forwarded key from them: nio takes forwarded keys only from the user's own
        verified devices, as matrix-rust-sdk does; older clients took them from any device
        they had asked."""
        event = self.megolm[event_id]
        request = event.as_key_request(holder, self.client.device_id, secrets.token_hex(8))
        olm = self.client.olm
        asked = OutgoingKeyRequest.from_message(request)
        olm.outgoing_key_requests[event.session_id] = asked
        olm.store.add_outgoing_key_request(asked)
        olm._should_accept_forward = lambda sender, key, forward: (
            forward.session_id in olm.outgoing_key_requests
        )
        await self.client.to_device(request)

    def read(self, event_id: str) -> dict[str, Any] | None:
        """An event it could not decrypt, decrypted now if its key has come since."""
        try:
            clear = self.client.decrypt_event(self.megolm[event_id])
        except EncryptionError:
            return None
        return dict(clear.source)

    async def close(self) -> None:
        """Stop syncing and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()

    async def create_encrypted_room(self, invite: list[str]) -> str:
        """A private room with encryption on from the start, as Element creates them."""
        answer = await self.client.room_create(
            name="support", invite=invite, initial_state=[ENCRYPTION]
        )
        assert isinstance(answer, RoomCreateResponse), answer
        return str(answer.room_id)

    async def create_room(self, invite: list[str]) -> str:
        """A room without encryption (it may be switched on later)."""
        answer = await self.client.room_create(name="support", invite=invite)
        assert isinstance(answer, RoomCreateResponse), answer
        return str(answer.room_id)

    async def encrypt_room(self, room: str) -> None:
        """Switch encryption on in a room (it cannot be switched off again)."""
        await self.client.room_put_state(room, ENCRYPTION["type"], ENCRYPTION["content"])

    async def join(self, room: str) -> None:
        """Join a room the user was invited to."""
        await self.client.join(room)

    async def invite(self, room: str, user: str) -> None:
        """Invite a user into a room."""
        await self.client.room_invite(room, user)

    async def blacklist(self, user: str) -> None:
        """Share no room key with this user's devices (as a client that only encrypts for
        verified devices does with a device it does not trust)."""
        async with asyncio.timeout(30):
            while not list(self.client.device_store.active_user_devices(user)):
                await asyncio.sleep(0.1)
        for device in self.client.device_store.active_user_devices(user):
            self.client.blacklist_device(device)

    def hold_room_key(self, room: str) -> dict[str, str]:
        """Start a new room key now and keep its first index, to share it later."""
        olm = self.client.olm
        olm.create_outbound_group_session(room)
        session = olm.outbound_group_sessions[room]
        return {
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": room,
            "session_id": session.id,
            "session_key": session.session_key,
        }

    async def share_late(self, user: str, key: dict[str, str]) -> None:
        """Send a held room key to a user's devices (an `m.room_key` that arrives late)."""
        olm = self.client.olm
        for device in self.client.device_store.active_user_devices(user):
            olm_dict = olm._olm_encrypt(
                olm.session_store.get(device.curve25519), device, "m.room_key", key
            )
            message = ToDeviceMessage("m.room.encrypted", user, device.id, olm_dict)
            await self.client.to_device(message)

    async def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        """The first decrypted event that matches, waiting for syncs to bring it."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if match(event):
                        return event
                await asyncio.sleep(0.1)

    async def send(self, room: str, content: dict[str, Any]) -> str:
        """Send a message (encrypted, as the room is), to every device of the members."""
        await self.client.joined_members(room)
        answer = await self.client.room_send(
            room, "m.room.message", content, ignore_unverified_devices=True
        )
        assert isinstance(answer, RoomSendResponse), answer
        return str(answer.event_id)

    async def reply(self, room: str, root: str, text: str) -> str:
        """A text in the thread of `root`."""
        relation = {"rel_type": "m.thread", "event_id": root}
        return await self.send(room, {"msgtype": "m.text", "body": text, "m.relates_to": relation})

    async def edit(self, room: str, event: str, text: str) -> str:
        """Replace a message's text (`m.replace`)."""
        return await self.send(
            room,
            {
                "msgtype": "m.text",
                "body": f"* {text}",
                "m.new_content": {"msgtype": "m.text", "body": text},
                "m.relates_to": {"rel_type": "m.replace", "event_id": event},
            },
        )

    async def redact(self, room: str, event: str) -> None:
        """Remove a message."""
        await self.client.room_redact(room, event)

    async def send_image(self, room: str, root: str, data: bytes, name: str) -> str:
        """An encrypted image in the thread (the `file` object instead of `url`)."""
        upload, keys = await self.client.upload(
            lambda *_: data, "application/octet-stream", encrypt=True, filesize=len(data)
        )
        assert isinstance(upload, UploadResponse), upload
        return await self.send(
            room,
            {
                "msgtype": "m.image",
                "body": name,
                "file": {"url": upload.content_uri, **(keys or {})},
                "info": {"mimetype": "image/png", "size": len(data)},
                "m.relates_to": {"rel_type": "m.thread", "event_id": root},
            },
        )

    async def download(self, file: dict[str, Any]) -> bytes:
        """An encrypted file's plain bytes."""
        answer = await self.client.download(file["url"])
        return bytes(
            decrypt_attachment(answer.body, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
        )

"""Answers to room key requests from staff devices (Matrix spec, "Key requests" and
`m.forwarded_room_key`), and what an erasure drops of the crypto state.

nio answers `m.room_key_request`s from the bot's own devices only and drops every other one
(olm_machine.collect_key_requests). The bridge answers a request itself when all of these hold:
- the requester is staff: a user of the bot's homeserver or of `[matrix] allowed_servers` (the
  rule the bridge uses for staff everywhere);
- the requester is a joined member of the request's room now;
- the requesting device is one the bot knows from its `keys/query` of that user (not deleted,
  not blacklisted). That is what "verified" means here: the homeserver vouches that the device
  belongs to the user, as it does for every device the bot encrypts for (the bridge encrypts
  for unverified devices too); cross-signing of staff devices is not checked;
- the session asked for is one the bot's own device started in that room (the bot never passes
  on other members' keys).
"""

from __future__ import annotations

import logging
from collections.abc import Set
from typing import Any

from nio import AsyncClient, KeysClaimResponse, KeysQueryResponse
from nio.crypto import Olm, OlmDevice
from nio.events import RoomKeyRequest, RoomKeyRequestCancellation

log = logging.getLogger(__name__)


class SharingOlm(Olm):  # type: ignore[misc]
    """nio's Olm machine that also keeps the key requests of other users' devices."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peer_requests: dict[str, RoomKeyRequest] = {}

    def _handle_key_requests(self, event: Any) -> None:
        if isinstance(event, RoomKeyRequest) and event.sender != self.user_id:
            self.peer_requests[event.request_id] = event
        elif isinstance(event, RoomKeyRequestCancellation):
            self.peer_requests.pop(event.request_id, None)
        super()._handle_key_requests(event)


class KeyShare:
    """Answers the key requests of staff devices with the bot's own room keys."""

    def __init__(self, client: AsyncClient, staff_servers: Set[str]) -> None:
        self.client = client
        self.staff_servers = staff_servers

    def refusal(self, request: RoomKeyRequest) -> str | None:
        """Why a request gets no key (None: it may have it, once its device is known)."""
        olm = self.client.olm
        if request.sender.partition(":")[2] not in self.staff_servers:
            return "not staff"
        room = self.client.rooms.get(request.room_id)
        if (
            room is None
            or request.sender not in room.users
            or request.sender in (room.invited_users)
        ):
            return "not a member of the room"
        if request.sender_key != olm.account.identity_keys["curve25519"]:
            return "not a session of the bot's device"
        if olm.inbound_group_store.get(request.room_id, request.sender_key, request.session_id):
            return None
        return "an unknown session"

    def _device(self, request: RoomKeyRequest) -> OlmDevice | None:
        device = self.client.olm.device_store[request.sender].get(request.requesting_device_id)
        if device is None or device.deleted or device.blacklisted:
            return None
        return device

    async def answer(self) -> bool:
        """Share the keys asked for (after a sync), claiming Olm sessions where needed;
        whether the devices of some members were queried (new devices may have turned up)."""
        olm = self.client.olm
        if not isinstance(olm, SharingOlm) or not olm.peer_requests:
            return False
        asked, olm.peer_requests = list(olm.peer_requests.values()), {}
        for room_id in {r.room_id for r in asked}:
            room = self.client.rooms.get(room_id)
            if room is not None and not room.members_synced:
                # The sync filter loads members lazily: the whole list, as nio does to encrypt.
                await self.client.joined_members(room_id)
        allowed = []
        for request in asked:
            why = self.refusal(request)
            if why is None:
                allowed.append(request)
            else:
                log.info("Matrix: no key for %s (%s)", request.sender, why)
        queried = any(self._device(r) is None for r in allowed)
        if queried:
            # A device that logged in since the last query: ask the homeserver about it once.
            olm.users_for_key_query.update(r.sender for r in allowed)
            answer = await self.client.keys_query()
            if not isinstance(answer, KeysQueryResponse):
                log.warning("Matrix: a key request failed: %s", answer)
        pairs = [(r, d) for r in allowed if (d := self._device(r)) is not None]
        missing: dict[str, list[str]] = {}
        for _, device in pairs:
            if olm.session_store.get(device.curve25519) is None:
                missing.setdefault(device.user_id, []).append(device.id)
        if missing:
            answer = await self.client.keys_claim(missing)
            if not isinstance(answer, KeysClaimResponse):
                log.warning("Matrix: a key request failed: %s", answer)
        for request, device in pairs:
            session = olm.session_store.get(device.curve25519)
            group = olm.inbound_group_store.get(
                request.room_id, request.sender_key, request.session_id
            )
            if session is None or group is None:
                log.info("Matrix: no Olm session with %s %s", device.user_id, device.id)
                continue
            log.info("Matrix: sharing room key %s with %s", request.session_id, device.id)
            # nio's own forwarding of a key (as it does for the bot's own devices).
            olm.outgoing_to_device_messages.append(
                olm._encrypt_forwarding_key(request.room_id, group, session, device)
            )
        await self.client.send_to_device_messages()
        return queried

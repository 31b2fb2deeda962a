"""The bot's devices: is this one lost, setting up a new one, deleting stale ones.

Helpers of L{jupybot.matrix.login.MatrixLogin}; every call goes through
C{MatrixApi.retrying} without renewing the token (they run inside a renewal).
"""

from __future__ import annotations

from typing import Any

from nio import AsyncClient, DeleteDevicesAuthResponse, DevicesResponse, ErrorResponse
from twisted.logger import Logger

from .api import MatrixApi, MatrixError
from .tokens import published_device_key

__all__ = [
    "carry_room_keys",
    "delete_devices",
    "keys_lost",
    "prepare_new_device",
    "reset_key_sharing",
]

log = Logger()


async def keys_lost(client: AsyncClient, api: MatrixApi, user_id: str) -> bool:
    """Whether the homeserver no longer has this device's identity keys (the device was
    deleted). False without encryption, or while the keys were never uploaded."""
    if client.olm is None or client.should_upload_keys or not client.device_id:
        return False
    device_id: str = client.device_id
    published = await api.retrying(
        "checking the device's published keys",
        lambda: published_device_key(client, user_id, device_id),
        forever=True,
        renew=False,
    )
    if isinstance(published, ErrorResponse):
        log.warn("matrix: could not check the device's keys: {error}", error=published)
        return False
    own: str = client.olm.account.identity_keys["ed25519"]
    return published != own


async def prepare_new_device(client: AsyncClient, api: MatrixApi, lost_olm: Any) -> None:
    """A new device's keys uploaded, the lost device's room keys given to it, and its rooms'
    members' devices learnt (its next encrypted send shares a room key with them)."""
    olm = client.olm
    if olm is None:
        return
    if lost_olm is not None:
        carried = carry_room_keys(lost_olm, olm)
        log.info("matrix: {count} room key(s) kept from the lost device", count=carried)
    if client.should_upload_keys:
        response = await api.retrying(
            "uploading the new device's keys", client.keys_upload, forever=True, renew=False
        )
        if isinstance(response, ErrorResponse):
            log.warn("matrix: uploading the new device's keys failed: {e}", e=response)
    for room in client.rooms.values():
        if room.encrypted:
            olm.update_tracked_users(room)
    if client.should_query_keys:
        await api.retrying("querying encryption keys", client.keys_query, forever=True, renew=False)


async def delete_devices(
    client: AsyncClient, api: MatrixApi, user_id: str, password: str, devices: list[str]
) -> list[str]:
    """Delete those of C{devices} still on the account (user-interactive auth with the
    password); the ones gone from it, whether deleted now or before. Raises L{MatrixError}."""
    listed = await api.retrying("listing the account's devices", client.devices, renew=False)
    if not isinstance(listed, DevicesResponse):
        raise MatrixError(f"listing the account's devices refused: {listed}")
    present = {device.id for device in listed.devices}
    doomed = [d for d in devices if d in present]
    if doomed:
        response = await api.retrying(
            "deleting stale devices", lambda: client.delete_devices(doomed), renew=False
        )
        if isinstance(response, DeleteDevicesAuthResponse):
            auth: dict[str, Any] = {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user_id},
                "password": password,
                "session": response.session,
            }
            response = await api.retrying(
                "deleting stale devices",
                lambda: client.delete_devices(doomed, auth),
                renew=False,
            )
        if isinstance(response, ErrorResponse):
            raise MatrixError(f"deleting the devices {doomed} refused: {response}")
        log.info("matrix: deleted stale devices {devices}", devices=doomed)
    return devices


def carry_room_keys(lost: Any, new: Any) -> int:
    """Give the new device the room keys (Megolm inbound sessions) the lost one had, as a key
    backup would: it still reads messages encrypted for the lost device, and later ones in the
    same sessions (a sender's client shares a session with a new device only when it
    notices it, Element at its next message, matrix-nio not until it rotates)."""
    carried = 0
    for session in lost.inbound_group_store:
        if new.inbound_group_store.add(session):
            new.save_inbound_group_session(session)
            carried += 1
    return carried


def reset_key_sharing(client: AsyncClient) -> None:
    """After refused calls, make every encrypted room share its room key again at its next send.

    matrix-nio shares a room key inside a send (claiming one-time keys, then to-device
    messages) and marks it shared even when those calls were refused: the room's members would
    never get it and could not read a word from the bot. (A sharing still under way with the
    refused token may mark its key shared once more: a refusal comes back at once, before the
    renewal's own round trips end, so this is not seen in practice.)"""
    if client.olm is None:
        return
    for session in client.olm.outbound_group_sessions.values():
        session.shared = False

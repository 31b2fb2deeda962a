"""The bot's cross-signing identity, as any other user's client reads it from a real Synapse."""

from __future__ import annotations

import asyncio
import json
import stat
import urllib.request
from typing import Any

import pytest
import signedjson.key
import signedjson.sign

from tests.peers.synapse import MatrixUser, Synapse

from .conftest import BotRunner
from .user import asyncio_test

pytestmark = pytest.mark.peers


def _keys_of(synapse: Synapse, reader: MatrixUser, user_id: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{synapse.base_url}/_matrix/client/v3/keys/query",
        data=json.dumps({"device_keys": {user_id: []}}).encode(),
        headers={
            "Authorization": f"Bearer {reader.access_token}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def _verify(signed: dict[str, Any], user_id: str, public: str) -> None:
    """Raises unless C{signed} carries C{user_id}'s valid signature by the key C{public}."""
    key = signedjson.key.decode_verify_key_base64("ed25519", public, public)
    signedjson.sign.verify_signed_json(signed, user_id, key)


def _chain(answer: dict[str, Any], user_id: str, device_id: str) -> str:
    """Check master -> self-signing -> device; the master's public key."""
    master = answer["master_keys"][user_id]
    assert master["usage"] == ["master"]
    (master_public,) = master["keys"].values()
    self_signing = answer["self_signing_keys"][user_id]
    _verify(self_signing, user_id, master_public)
    (self_signing_public,) = self_signing["keys"].values()
    device = answer["device_keys"][user_id][device_id]
    _verify(device, user_id, self_signing_public)
    return str(master_public)


@asyncio_test
async def test_the_bots_device_is_signed_by_its_owner_and_stays_so_on_a_new_device(
    bot: BotRunner, synapse: Synapse, alice: MatrixUser
) -> None:
    part = await bot.start(encryption=True)
    first_device = part.bot.client.device_id if part.bot else None
    assert first_device and part.detail is None
    answer = await asyncio.to_thread(_keys_of, synapse, alice, bot.user_id)
    master = _chain(answer, bot.user_id, first_device)
    private = bot.state.file("matrix-cross-signing.json")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    # A new device (the saved session gone): the same identity signs it.
    await bot.stop()
    bot.state.file("matrix-session.json").unlink()
    part = await bot.start()
    second_device = part.bot.client.device_id if part.bot else None
    assert second_device and second_device != first_device
    answer = await asyncio.to_thread(_keys_of, synapse, alice, bot.user_id)
    assert _chain(answer, bot.user_id, second_device) == master


@asyncio_test
async def test_an_identity_made_elsewhere_is_kept_and_reported(
    bot: BotRunner, synapse: Synapse, alice: MatrixUser
) -> None:
    part = await bot.start(encryption=True)
    answer = await asyncio.to_thread(_keys_of, synapse, alice, bot.user_id)
    master = answer["master_keys"][bot.user_id]
    await bot.stop()
    # As if the owner had made the identity in Element: jupybot has no private key of it.
    bot.state.file("matrix-cross-signing.json").unlink()
    part = await bot.start()
    assert part.detail is not None
    assert "already has a cross-signing identity" in part.detail
    answer = await asyncio.to_thread(_keys_of, synapse, alice, bot.user_id)
    assert answer["master_keys"][bot.user_id] == master


@asyncio_test
async def test_without_cross_signing_the_account_has_no_identity(
    bot: BotRunner, synapse: Synapse, alice: MatrixUser
) -> None:
    await bot.start(encryption=True, cross_signing=False)
    answer = await asyncio.to_thread(_keys_of, synapse, alice, bot.user_id)
    assert bot.user_id not in answer.get("master_keys", {})
    assert not bot.state.file("matrix-cross-signing.json").exists()

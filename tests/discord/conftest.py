"""Real discord.py (jupybot's Discord part, in this process) against our fake Discord server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest_twisted

from jupybot.aio import await_deferred, deferred_from_coroutine
from jupybot.config import Secret
from jupybot.config.commands import NotebooksConfig
from jupybot.config.discord import DiscordConfig
from jupybot.discord import DiscordPart
from jupybot.kernels import KernelManager
from tests.matrix.kernels_double import CannedKernels
from tests.peers.fake_discord import FakeDiscord, Json


@dataclass
class World:
    discord: FakeDiscord
    part: DiscordPart
    kernels: KernelManager
    owner: Json
    alice: Json
    mallory: Json


async def start_world(
    kernels: KernelManager | None = None,
    notebooks: NotebooksConfig | None = None,
    **changes: Any,
) -> World:
    """The fake Discord and the Discord part on it (C{changes}: to its DiscordConfig)."""
    from twisted.internet import reactor  # installed by pytest-twisted, after collection

    fake = FakeDiscord()
    await fake.start()
    owner, alice, mallory = fake.add_user("owner"), fake.add_user("alice"), fake.add_user("mallory")
    config = DiscordConfig(
        token=Secret(fake.bot_token),
        owner_id=int(owner["id"]),
        allowed_users=(alice["id"],),
        api_base=fake.api_base,
        gateway_url=fake.gateway_url,
        edit_interval_seconds=0.2,
    )
    config = replace(config, **changes)
    kernels = kernels or CannedKernels()
    part = DiscordPart(config, kernels, reactor, notebooks=notebooks)
    ready = part.start_part()
    await await_deferred(ready)
    return World(fake, part, kernels, owner, alice, mallory)


async def stop_world(world: World) -> None:
    stopping = world.part.stop_part()
    if stopping is not None:
        await await_deferred(stopping)
    await world.discord.stop()


@pytest_twisted.async_yield_fixture
async def world() -> AsyncIterator[World]:
    started = await deferred_from_coroutine(start_world())
    yield started
    await deferred_from_coroutine(stop_world(started))

"""Fixtures for the Matrix tests: the bot running in-process against the real Synapse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from jupybot.aio import await_deferred, deferred_from_coroutine
from jupybot.commands.streaming import RenderFunction
from jupybot.config import Secret
from jupybot.config.commands import NotebooksConfig
from jupybot.config.kernels import GatewayConfig
from jupybot.config.matrix import MatrixConfig
from jupybot.kernels import GatewayKernelManager, KernelManager
from jupybot.matrix import MatrixPart
from jupybot.state import StateDirectory
from tests.commands.fakes import simple_render
from tests.peers.kernel_gateway import KernelGateway
from tests.peers.synapse import MatrixUser, Synapse

from .user import UserClient


class ObservedMatrixPart(MatrixPart):
    """The real part, with a Deferred fired when it says it is ready (first sync done)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.serving: Deferred[None] = Deferred()

    def ready(self) -> None:
        super().ready()
        if not self.serving.called:
            self.serving.callback(None)


@dataclass
class BotRunner:
    """Starts and stops the Matrix part as a test needs, keeping its state directory."""

    synapse: Synapse
    account: MatrixUser
    config: MatrixConfig
    state: StateDirectory
    kernels: KernelManager
    part: ObservedMatrixPart | None = None
    render: RenderFunction = simple_render
    notebooks: NotebooksConfig | None = None

    @property
    def user_id(self) -> str:
        return self.account.user_id

    async def start(self, **changes: object) -> ObservedMatrixPart:
        if changes:
            self.config = replace(self.config, **changes)  # type: ignore[arg-type]
        from twisted.internet import reactor  # installed by pytest-twisted, after collection

        part = ObservedMatrixPart(
            self.config,
            self.kernels,
            self.state,
            reactor,
            backoff=lambda attempt: 0.2,
            render=self.render,
            notebooks=self.notebooks,
        )
        self.part = part
        part.startService()
        await await_deferred(part.serving)
        return part

    async def stop(self) -> None:
        part, self.part = self.part, None
        if part is not None:
            await await_deferred(part.stopService())


@pytest_twisted.async_yield_fixture
async def gateway_kernels(kernel_gateway: KernelGateway) -> AsyncIterator[KernelManager]:
    """Kernels of the run's real Kernel Gateway, for a module whose bot runs real code: it
    names this as its own C{kernels} fixture."""
    from twisted.internet import reactor

    manager = GatewayKernelManager(reactor, GatewayConfig(url=None, token=None))
    manager.connect(kernel_gateway.url, kernel_gateway.token)
    yield manager
    await manager.shutdown_all()


@pytest.fixture
def kernels() -> KernelManager:
    from .kernels_double import CannedKernels

    return CannedKernels()


@pytest.fixture
def alice(synapse: Synapse) -> MatrixUser:
    return synapse.register(synapse.unique_localpart("alice"))


@pytest.fixture
def mallory(synapse: Synapse) -> MatrixUser:
    return synapse.register(synapse.unique_localpart("mallory"))


@pytest_twisted.async_yield_fixture
async def bot(
    synapse: Synapse, tmp_path: Path, kernels: KernelManager, alice: MatrixUser
) -> AsyncIterator[BotRunner]:
    localpart = synapse.unique_localpart("bot")
    account = synapse.register(localpart)
    config = MatrixConfig(
        homeserver=synapse.base_url,
        user_id=account.user_id,
        access_token=None,
        password=Secret(account.password),
        prefix="!bot",
        allowed_users=(alice.user_id,),
        admins=(),
        edit_interval_seconds=1.0,
    )
    runner = BotRunner(synapse, account, config, StateDirectory(tmp_path / "state"), kernels)
    yield runner
    await deferred_from_coroutine(runner.stop())


@pytest_twisted.async_yield_fixture
async def alice_client(synapse: Synapse, alice: MatrixUser) -> AsyncIterator[UserClient]:
    client = UserClient(synapse, alice)
    await deferred_from_coroutine(client.start())
    yield client
    await deferred_from_coroutine(client.stop())


@pytest_twisted.async_yield_fixture
async def mallory_client(synapse: Synapse, mallory: MatrixUser) -> AsyncIterator[UserClient]:
    client = UserClient(synapse, mallory)
    await deferred_from_coroutine(client.start())
    yield client
    await deferred_from_coroutine(client.stop())

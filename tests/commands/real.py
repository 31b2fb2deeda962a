"""Chat commands over a real gateway's kernels, as the real-gateway tests build them."""

from __future__ import annotations

from twisted.internet import reactor

from jupybot.commands import (
    AccessPolicy,
    Addressing,
    ChatCommands,
    ChatLimits,
    ChatNetwork,
    ChatRules,
)
from jupybot.commands.notebook import NotebookLimits
from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import GatewayKernelManager
from tests.peers.kernel_gateway import KernelGateway


def bot_on(
    gateway: KernelGateway, notebooks: NotebookLimits | None = None
) -> tuple[GatewayKernelManager, ChatCommands]:
    """The chat commands over C{gateway}'s kernels, for anyone at example.org, unthrottled."""
    kernels = GatewayKernelManager(reactor, GatewayConfig(url=None, token=None))
    kernels.connect(gateway.url, gateway.token)
    limits = ChatLimits(commands_per_minute=0)
    rules = ChatRules(limits) if notebooks is None else ChatRules(limits, notebooks)
    network = ChatNetwork(
        AccessPolicy.build(["*:example.org"], [], []), Addressing(prefixes=("!jupybot",))
    )
    return kernels, ChatCommands(kernels, network, reactor, rules=rules)

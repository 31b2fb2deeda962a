"""One way to build a chat part's L{ChatCommands}: what every chat adapter hands the command layer.

Both chat parts call L{build_chat_commands} with their section's L{ChatSettings} and what is
theirs alone (who may use the bot, how it is addressed, how replies are rendered); the state
files are named after the network (`matrix-running.json`, `discord-notebooks`), so that a new
chat network is one more call, not one more copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from ..config import Secret
from ..config.chat import ChatSettings
from ..config.commands import NotebooksConfig
from ..kernels import KernelManager
from ..rendering import RenderOptions, render_outputs
from ..state import StateDirectory
from .access import AccessPolicy
from .bot import ChatCommands
from .inflight import RunningReplies
from .notebook import NotebookLimits
from .parse import Addressing
from .rooms import ChatLimits
from .streaming import RenderFunction

__all__ = ["ChatNetwork", "build_chat_commands"]


@dataclass(frozen=True)
class ChatNetwork:
    """What one chat adapter says of its network to the command layer."""

    # Names the network's state files, and starts its conversations' keys ("matrix").
    name: str
    access: AccessPolicy
    addressing: Addressing
    render_options: RenderOptions
    render: RenderFunction = render_outputs


def build_chat_commands(
    network: ChatNetwork,
    settings: ChatSettings,
    kernels: KernelManager,
    clock: IReactorTime,
    *,
    secrets: Iterable[Secret] = (),
    state: StateDirectory | None = None,
    notebooks: NotebooksConfig | None = None,
) -> ChatCommands:
    """The network's command layer, limits from C{settings}. Without C{state} (tests), replies
    a crash leaves running are not recorded and rooms' notebooks are kept in memory only."""
    return ChatCommands(
        kernels,
        network.access,
        network.addressing,
        clock,
        render=network.render,
        render_options=network.render_options,
        edit_interval=settings.edit_interval_seconds,
        secrets=secrets,
        limits=ChatLimits.from_settings(settings),
        running_replies=RunningReplies(
            state.file(f"{network.name}-running.json") if state is not None else None
        ),
        notebooks=NotebookLimits.from_config(notebooks or NotebooksConfig()),
        notebook_folder=state.file(f"{network.name}-notebooks") if state is not None else None,
    )

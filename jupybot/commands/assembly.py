"""One way to build a chat part's L{ChatCommands}: what every chat adapter hands the command layer.

Both chat parts call L{build_chat_commands} with their network's name, their L{ChatNetwork}
(who may use the bot, how it is addressed, how replies are rendered) and their section's
L{ChatSettings}; it makes the command layer's L{ChatRules} and L{ChatStores} from them, the
state files named after the network (`matrix-running.json`, `discord-notebooks`), so that a new
chat network is one more call, not one more copy.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.interfaces import IReactorTime

from ..config import Secret
from ..config.chat import ChatSettings
from ..config.commands import NotebooksConfig
from ..kernels import KernelManager
from ..state import StateDirectory
from .bot import ChatCommands
from .notebook import NotebookLimits
from .rooms import ChatLimits
from .wiring import ChatNetwork, ChatRules, ChatStores

__all__ = ["ChatNetwork", "build_chat_commands"]


def build_chat_commands(
    name: str,
    network: ChatNetwork,
    settings: ChatSettings,
    kernels: KernelManager,
    clock: IReactorTime,
    *,
    secrets: Iterable[Secret] = (),
    state: StateDirectory | None = None,
    notebooks: NotebooksConfig | None = None,
) -> ChatCommands:
    """The command layer of chat network C{name} ("matrix": its conversations' keys start with
    it, its state files are named after it), limits from C{settings}. Without C{state} (tests),
    replies a crash leaves running are not recorded and rooms' notebooks are kept in memory
    only."""
    rules = ChatRules(
        limits=ChatLimits.from_settings(settings),
        notebooks=NotebookLimits.from_config(notebooks or NotebooksConfig()),
        edit_interval=settings.edit_interval_seconds,
        secrets=tuple(secrets),
    )
    stores = ChatStores.under(state, name) if state is not None else ChatStores()
    return ChatCommands(kernels, network, clock, rules=rules, stores=stores)

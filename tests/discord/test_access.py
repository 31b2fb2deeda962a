"""Discord access: roles count only in the server a message was written in."""

from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import create_autospec

import discord
from twisted.internet.task import Clock

from jupybot.commands import Addressing, ChatCommands, ChatNetwork, IncomingMessage
from jupybot.discord import DiscordAccess, roles_of
from jupybot.rendering import RenderOptions
from tests.commands.fakes import FakeConversation, FakeKernels, simple_render

CODERS = "111"  # a role allowed to run code
OWNER = "1"
CAROL = "7"  # no allowed user: only the role lets her in


def make_bot() -> tuple[ChatCommands, FakeKernels, Clock]:
    clock = Clock()
    kernels = FakeKernels()
    access = DiscordAccess(allowed=(OWNER,), admins=(OWNER,), allowed_roles=frozenset({CODERS}))
    network = ChatNetwork(
        access, Addressing(prefixes=("!jupybot",)), RenderOptions(max_text_chars=50), simple_render
    )
    bot = ChatCommands(kernels, network, clock)
    return bot, kernels, clock


def test_a_role_opens_the_server_it_is_held_in_and_not_a_later_dm() -> None:
    bot, kernels, clock = make_bot()
    server_channel, dm = FakeConversation(), FakeConversation(is_direct=True)
    bot.handle(
        IncomingMessage(
            "m1", CAROL, "!jupybot run 1", server_channel, sender_roles=frozenset({CODERS})
        )
    )
    assert [e.code for e in kernels.executions] == ["1"]
    # The same person right after, in a DM (no server, so no roles): refused, whatever
    # server message came before.
    bot.handle(IncomingMessage("m2", CAROL, "run 2", dm))
    assert dm.texts() == [f"Sorry, {CAROL} is not allowed to use this bot."]
    # And in a server where she holds other roles (after the minute a refusal is said once in).
    clock.advance(61)
    other_server = FakeConversation()
    bot.handle(
        IncomingMessage(
            "m3", CAROL, "!jupybot run 3", other_server, sender_roles=frozenset({"222"})
        )
    )
    assert other_server.texts() == [f"Sorry, {CAROL} is not allowed to use this bot."]
    assert [e.code for e in kernels.executions] == ["1"]


def test_the_roles_of_a_message_are_its_authors_in_that_server() -> None:
    member = create_autospec(discord.Member, instance=True)
    member.roles = [SimpleNamespace(id=111), SimpleNamespace(id=222)]
    assert roles_of(member) == {"111", "222"}
    user = create_autospec(discord.User, instance=True)  # the author of a DM
    assert roles_of(user) == frozenset()

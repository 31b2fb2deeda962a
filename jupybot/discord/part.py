"""The Discord part: a discord.py client on the shared loop, answering slash commands and
messages through the platform-neutral command layer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ..aio import await_deferred, deferred_from_coroutine
from ..commands import (
    Addressing,
    Conversation,
    IncomingAttachment,
    IncomingMessage,
    IncomingReaction,
)
from ..commands.assembly import ChatNetwork, build_chat_commands
from ..config import Secret
from ..config.commands import NotebooksConfig
from ..config.discord import DiscordConfig
from ..contact.registry import ChannelRegistry
from ..kernels import KernelManager
from ..parts import PartContext
from ..rendering import RenderOptions
from ..retry import retrying
from ..service import AsyncioPart, JupybotService
from ..state import StateDirectory
from .access import DiscordAccess, roles_of
from .conversation import DiscordConversation
from .delivery import OwnerDirectMessages

__all__ = ["DiscordPart", "build_discord"]

STOP_GRACE_SECONDS = 5.0
KERNEL_ACTIONS = ("start", "stop", "restart", "interrupt", "list")
# 1, 2, 4 ... 60 s between attempts to log in while Discord cannot be reached.
LOGIN_RETRY_POLICY: Callable[[int], float] = backoffPolicy(
    initialDelay=1.0, maxDelay=60.0, factor=2.0, jitter=lambda: 0.0
)
# What an unreachable Discord fails a login with (a refused token, LoginFailure, is none of them).
_UNREACHABLE = (discord.HTTPException, aiohttp.ClientError, OSError)


class _Client(discord.Client):
    def __init__(self, part: DiscordPart, **options: Any) -> None:
        super().__init__(**options)
        self.part = part
        self.tree = app_commands.CommandTree(self)

    async def on_ready(self) -> None:
        self.part.gateway_connected = True
        self.part.connected()

    # The gateway connection as /ping shows it (discord.py reconnects by itself).
    async def on_connect(self) -> None:
        self.part.gateway_connected = True

    async def on_resumed(self) -> None:
        self.part.gateway_connected = True

    async def on_disconnect(self) -> None:
        self.part.gateway_connected = False

    async def on_message(self, message: discord.Message) -> None:
        await self.part.message(message)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        await self.part.message(payload.message, edited=True)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.part.reaction(payload)


class DiscordPart(AsyncioPart):
    """Logs in, connects to the gateway (discord.py reconnects by itself) until stopped."""

    def __init__(
        self,
        config: DiscordConfig,
        kernels: KernelManager,
        clock: IReactorTime,
        secrets: Sequence[Secret] = (),
        state: StateDirectory | None = None,
        notebooks: NotebooksConfig | None = None,
    ) -> None:
        """Without C{state}, replies a crash leaves running are not recorded, and rooms'
        notebooks are kept in memory only (tests)."""
        super().__init__("discord")
        self.config = config
        self.gateway_connected = False
        self._clock = clock
        owner = (str(config.owner_id),) if config.owner_id else ()
        self.access = DiscordAccess(
            allowed=tuple(config.allowed_users) + owner,
            admins=owner,
            admin_commands=frozenset(config.admin_commands),
            allowed_roles=frozenset(config.allowed_roles),
        )
        intents = discord.Intents.default()
        intents.message_content = True
        self.client = _Client(
            self,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            # No guild data is worth waiting for before answering.
            guild_ready_timeout=0,
        )
        network = ChatNetwork(
            self.access,
            Addressing(prefixes=(config.prefix,)),
            RenderOptions(max_text_chars=1800, allow_html=False),
        )
        self.commands = build_chat_commands(
            "discord",
            network,
            config,
            kernels,
            clock,
            secrets=secrets,
            state=state,
            notebooks=notebooks,
        )
        self._recovered = False
        self._conversations: dict[int, DiscordConversation] = {}
        self._define_slash_commands()

    async def run(self) -> None:
        assert self.config.token is not None
        # discord.py reads its API base and gateway from class attributes: one Discord per
        # process.
        discord.http.Route.BASE = self.config.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.config.gateway_url)
        try:
            await self._log_in()
            user = self.client.user
            assert user is not None
            self.commands.addressing = Addressing(
                prefixes=(self.config.prefix,), mentions=(f"<@{user.id}>", f"<@!{user.id}>")
            )
            await self.client.connect(reconnect=True)
        except discord.LoginFailure as e:
            raise RuntimeError(f"Discord refused the token: {e}") from e
        finally:
            # Also tells the channels with kernels that their variables go.
            stopping = self.commands.stop()
            stopping.addTimeout(STOP_GRACE_SECONDS, self._clock)
            try:
                await await_deferred(stopping)
            except Exception:
                self.log.warn("discord: executions did not stop in time")
            await self.client.close()

    async def _log_in(self) -> None:
        """Log in, waiting out an unreachable Discord (L{retrying} on L{LOGIN_RETRY_POLICY}); a
        refused token is final."""
        assert self.config.token is not None
        token = self.config.token.reveal()

        def on_retry(failure: Failure, delay: float) -> None:
            self.log.warn(
                "discord: cannot log in ({error}); retrying in {delay:g}s",
                error=failure.value,
                delay=delay,
            )

        await await_deferred(
            retrying(
                self._clock,
                LOGIN_RETRY_POLICY,
                lambda: deferred_from_coroutine(self.client.login(token)),
                should_retry=lambda failure: failure.check(*_UNREACHABLE) is not None,
                on_retry=on_retry,
            )
        )

    def connected(self) -> None:
        user = self.client.user
        self.log.info(
            "discord: connected as {name} ({id})", name=str(user), id=user.id if user else "?"
        )
        if not (self.config.allowed_users or self.config.allowed_roles or self.config.owner_id):
            self.log.warn(
                "discord: no allowed_users, allowed_roles or owner_id: nobody may run code"
            )
        self.ready()
        if not self._recovered:
            self._recovered = True
            # Replies a crash left "running" say so (once: on_ready comes again on reconnects).
            self.commands.recover(self._find_conversation).addErrback(
                lambda failure: self.log.failure(
                    "discord: could not tell the replies a restart cut short", failure
                )
            )

    def _find_conversation(self, key: str) -> Deferred[Conversation | None]:
        return deferred_from_coroutine(self._channel_conversation(key))

    async def _channel_conversation(self, key: str) -> Conversation | None:
        prefix, _, channel_id = key.partition(":")
        if prefix != "discord" or not channel_id.isdigit():
            return None
        channel = self.client.get_channel(int(channel_id))
        if channel is None:
            try:
                channel = await self.client.fetch_channel(int(channel_id))
            except discord.HTTPException:
                return None
        return self.conversation(channel)

    def problem(self) -> str | None:
        if self.gateway_connected:
            return None
        return "the Discord gateway connection is lost; reconnecting"

    def conversation(self, channel: Any) -> DiscordConversation:
        conversation = self._conversations.get(channel.id)
        if conversation is None:
            conversation = self._conversations[channel.id] = DiscordConversation(
                self.client, channel
            )
        return conversation

    async def message(self, message: discord.Message, edited: bool = False) -> None:
        """A new message, or (C{edited}) the new text of one: the command layer decides."""
        if message.author.bot or (self.client.user and message.author.id == self.client.user.id):
            return
        reference = message.reference.message_id if message.reference else None
        conversation = self.conversation(message.channel)
        attachments: tuple[IncomingAttachment, ...] = ()
        if message.attachments and not edited:
            attachments = await self._attachments(message, conversation)
        self.commands.handle(
            IncomingMessage(
                message_id=str(message.id),
                sender=str(message.author.id),
                text=message.content,
                conversation=conversation,
                in_reply_to=str(reference) if reference else None,
                sender_roles=roles_of(message.author),
                edit_of=str(message.id) if edited else None,
                attachments=attachments,
            )
        )

    async def _attachments(
        self, message: discord.Message, conversation: DiscordConversation
    ) -> tuple[IncomingAttachment, ...]:
        """The message's files, downloaded only for a command that takes one (C{run} with a
        notebook, C{put}) from someone allowed to use it; one too big is not downloaded."""
        wanted = self.commands.file_limit(message.content, conversation.is_direct)
        if wanted is None:
            return ()
        command, cap = wanted
        roles = roles_of(message.author)
        if self.access.refusal(str(message.author.id), command, conversation.is_direct, roles):
            return ()
        files = []
        for attachment in message.attachments[:1]:
            mimetype = attachment.content_type or "application/octet-stream"
            if attachment.size > cap:
                files.append(
                    IncomingAttachment(attachment.filename, mimetype, b"", attachment.size)
                )
                continue
            try:
                data = await attachment.read()
            except discord.HTTPException as e:
                self.log.warn("discord: could not download an attachment: {e}", e=str(e))
                continue
            files.append(IncomingAttachment(attachment.filename, mimetype, data))
        return tuple(files)

    async def reaction(self, payload: discord.RawReactionActionEvent) -> None:
        if self.client.user is not None and payload.user_id == self.client.user.id:
            return
        conversation = await self._channel_conversation(f"discord:{payload.channel_id}")
        if conversation is None:
            return
        self.commands.handle_reaction(
            IncomingReaction(
                message_id=str(payload.message_id),
                sender=str(payload.user_id),
                key=str(payload.emoji),
                conversation=conversation,
                sender_roles=roles_of(payload.member) if payload.member else frozenset(),
            )
        )

    # Slash commands: each becomes the same text command a message would carry.

    def _define_slash_commands(self) -> None:
        tree = self.client.tree

        @tree.command(name="whoami", description="Your Discord user id (the owner needs it).")
        async def whoami(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(
                f"Your Discord user id is {interaction.user.id}.", ephemeral=True
            )

        @tree.command(name="sync", description="Owner only: publish the bot's slash commands.")
        async def sync(interaction: discord.Interaction) -> None:
            if interaction.user.id != self.config.owner_id:
                await interaction.response.send_message(
                    "Only the bot's owner may sync its commands.", ephemeral=True
                )
                return
            synced = await tree.sync()
            await interaction.response.send_message(
                f"Synced {len(synced)} command(s).", ephemeral=True
            )

        @tree.command(name="run", description="Run code in this channel's kernel.")
        @app_commands.describe(code="The code to run")
        async def run(interaction: discord.Interaction, code: str) -> None:
            body = f"run\n```\n{code}\n```" if "\n" in code else f"run {code}"
            await self._slash(interaction, body, f"▶ `{discord.utils.escape_markdown(code[:80])}`")

        @tree.command(name="kernel", description="Start, stop, restart, interrupt or list kernels.")
        @app_commands.choices(action=[app_commands.Choice(name=a, value=a) for a in KERNEL_ACTIONS])
        async def kernel(interaction: discord.Interaction, action: str) -> None:
            word = "kernels" if action == "list" else action
            await self._slash(interaction, word, f"▶ kernel {action}")

    async def _slash(self, interaction: discord.Interaction, body: str, echo: str) -> None:
        """Answer at once (Discord wants it within 3 s), then run the command as if typed."""
        await interaction.response.send_message(
            echo, allowed_mentions=discord.AllowedMentions.none()
        )
        original = await interaction.original_response()
        channel = interaction.channel or await self.client.fetch_channel(
            interaction.channel_id or 0
        )
        self.commands.handle(
            IncomingMessage(
                message_id=str(original.id),
                sender=str(interaction.user.id),
                text=f"{self.config.prefix} {body}",
                conversation=self.conversation(channel),
                sender_roles=roles_of(interaction.user),
            )
        )


def build_discord(
    context: PartContext,
    top: JupybotService,
    kernels: KernelManager,
    channels: ChannelRegistry,
) -> None:
    """The Discord part, unless it lacks a token; with `discord.owner_id`, it also offers the
    contact outbox its "discord" channel."""
    config = context.config.discord
    reason = config.disabled_reason()
    if reason is not None:
        top.add_disabled("discord", reason)
        return
    part = DiscordPart(
        config,
        kernels,
        IReactorTime(context.reactor),
        secrets=context.config.secrets,
        state=context.state,
        notebooks=context.config.notebooks,
    )
    if config.owner_id:
        channels.register(OwnerDirectMessages(part.client, config.owner_id))
    else:
        part.log.warn("discord: no discord.owner_id: contact messages cannot reach you on Discord")
    top.add_part(part)

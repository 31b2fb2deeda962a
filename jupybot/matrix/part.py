"""The Matrix part: a matrix-nio AsyncClient on the shared loop, logged in, syncing, answering."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nio import AsyncClient, AsyncClientConfig
from twisted.internet.interfaces import IReactorTime

from ..aio import await_deferred
from ..commands import AccessPolicy, Addressing, RenderFunction
from ..commands.assembly import ChatNetwork, build_chat_commands
from ..config import Secret
from ..config.commands import NotebooksConfig
from ..config.matrix import MatrixConfig
from ..contact.registry import ChannelRegistry
from ..kernels import KernelManager
from ..parts import PartContext
from ..rendering import RenderOptions, render_outputs
from ..service import DOWN, RUNNING, STARTING, AsyncioPart, JupybotService
from ..state import StateDirectory
from .api import MatrixApi, MatrixError
from .bot import MatrixBot
from .crosssigning import cross_sign_device
from .delivery import MatrixContactRoom
from .login import Login, MatrixLogin, RenewalPolicy
from .session import SessionFile, SyncFile
from .tokens import RenewingClient

__all__ = ["MatrixPart", "build_matrix"]

SYNC_TIMEOUT_MS = 30_000
# A sync answers within its timeout; one this much later means the homeserver is out of reach
# (api.py is retrying): /ping shows the part down.
SYNC_LATE_SECONDS = 15.0
STOP_GRACE_SECONDS = 5.0


class MatrixPart(AsyncioPart):
    """Logs in (reusing the saved device), catches up, then syncs until stopped."""

    def __init__(
        self,
        config: MatrixConfig,
        kernels: KernelManager,
        state: StateDirectory,
        clock: IReactorTime,
        backoff: Callable[[int], float] | None = None,
        render: RenderFunction | None = None,
        secrets: Sequence[Secret] = (),
        renewal: RenewalPolicy | None = None,
        notebooks: NotebooksConfig | None = None,
    ) -> None:
        super().__init__("matrix")
        # What rooms keep for 'notebook' (under the state directory), and the files they move.
        self.notebooks = notebooks
        # Never shown in a reply, even when a kernel prints one.
        self.secrets = tuple(secrets)
        assert config.homeserver is not None and config.user_id is not None
        self.config = config
        self.kernels = kernels
        self.state_dir = state
        self.clock = clock
        self.backoff = backoff
        self.render = render
        # How refused tokens come back (RenewalPolicy(): every way there is).
        self.renewal = renewal or RenewalPolicy()
        self.bot: MatrixBot | None = None
        self.login: MatrixLogin | None = None
        self._last_sync: float | None = None
        # A new device knows nothing of the rooms' members' devices: the next sync is a full one.
        self._full_sync = False

    async def run(self) -> None:
        config = self.config
        assert config.homeserver is not None and config.user_id is not None
        store_path = self.state_dir.file("matrix-store")
        if config.encryption:
            store_path.mkdir(mode=0o700, exist_ok=True)
        client = RenewingClient(
            config.homeserver,
            config.user_id,
            store_path=str(store_path) if config.encryption else "",
            config=AsyncClientConfig(
                # jupybot retries itself (api.py), on the injected clock.
                max_limit_exceeded=0,
                max_timeouts=0,
                store_sync_tokens=False,
                encryption_enabled=config.encryption,
            ),
        )
        api = MatrixApi(client, self.clock, self.backoff)
        commands = None
        try:
            await self._log_in(client, api)
            if config.encryption and not client.olm:
                raise MatrixError(
                    "matrix.encryption is true but matrix-nio's e2e support is not installed "
                    "(pip install 'matrix-nio[e2e]')"
                )
            # Element shares room keys only with devices their owner cross-signed.
            self.detail = await cross_sign_device(config, client, api, self.state_dir)
            network = ChatNetwork(
                AccessPolicy.build(config.allowed_users, config.admins, config.admin_commands),
                await self._addressing(client),
                RenderOptions(max_text_chars=config.max_output_chars),
                self.render or render_outputs,
            )
            commands = build_chat_commands(
                "matrix",
                network,
                config,
                self.kernels,
                self.clock,
                # A token from a password login is a secret too, though not in config.yml.
                secrets=[*self.secrets, Secret(client.access_token)],
                state=self.state_dir,
                notebooks=self.notebooks,
            )
            bot = self.bot = MatrixBot(
                client,
                api,
                commands,
                commands.access,
                SyncFile(self.state_dir.file("matrix-sync.json")),
                config.encryption,
            )
            if not (config.allowed_users or config.admins):
                self.log.warn("matrix: matrix.allowed_users is empty: nobody may use the bot")
            if bot.state.next_batch is None:
                await bot.initial_sync()
            # Full state once per process: nio learns every room's members and encryption.
            await bot.sync_once(0, full_state=True)
            # Replies a crash left "running" say so, now that the bot knows its rooms again.
            await bot.recover()
            self.log.info(
                "matrix: logged in as {user} (device {device}), syncing",
                user=client.user_id,
                device=client.device_id,
            )
            self._last_sync = self.clock.seconds()
            self.ready()
            while True:
                full, self._full_sync = self._full_sync, False
                await bot.sync_once(0 if full else SYNC_TIMEOUT_MS, full_state=full)
                self._last_sync = self.clock.seconds()
        finally:
            if self.login is not None:
                self.login.stop()
            if commands is not None:
                # Also tells the rooms with kernels that their variables go.
                stopping = commands.stop()
                stopping.addTimeout(STOP_GRACE_SECONDS, self.clock)
                try:
                    await await_deferred(stopping)
                except Exception:
                    self.log.warn("matrix: executions did not stop in time")
            await client.close()

    def connected_api(self) -> MatrixApi | None:
        """The bot's API while the part is running (what the contact room posts through)."""
        if self.bot is None or self.status != RUNNING:
            return None
        return self.bot.api

    @property
    def status(self) -> str:
        """Also C{down} while still starting when the homeserver refuses every credential."""
        status = super().status
        if status == STARTING and self.login is not None and self.login.problem is not None:
            return f"{DOWN}: {self.login.problem}"
        return status

    def problem(self) -> str | None:
        """Down while the homeserver refuses every credential the bot has (with what to do), or
        while no sync came back from the homeserver for longer than a sync takes."""
        if self.login is not None and self.login.problem is not None:
            return self.login.problem
        if self._last_sync is None:
            return None
        since = self.clock.seconds() - self._last_sync
        if since <= SYNC_TIMEOUT_MS / 1000 + SYNC_LATE_SECONDS:
            return None
        return f"no sync from the homeserver for {since:.0f} s"

    async def _log_in(self, client: AsyncClient, api: MatrixApi) -> None:
        """Reuse the saved device; else log in with the access token or the password. From
        then on the login keeper renews refused tokens (docs/matrix.md, "Staying logged in")."""
        self.login = MatrixLogin(
            client,
            api,
            self.config,
            SessionFile(self.state_dir.file("matrix-session.json")),
            self.clock,
            after_login=[self._after_login],
            policy=self.renewal,
        )
        await self.login.log_in()

    async def _after_login(self, login: Login) -> None:
        """Called after every login: at start, after a renewal that logged in again, and for a
        new device (its keys just uploaded). What must hold for each device goes here."""
        if not login.new_device:
            return
        self._full_sync = True
        if self.bot is not None:
            # A device replaced while running (the start signs its own in run()): Element
            # shares room keys only with a cross-signed device.
            self.detail = await cross_sign_device(
                self.config, self.bot.client, self.bot.api, self.state_dir
            )

    async def _addressing(self, client: AsyncClient) -> Addressing:
        user_id = self.config.user_id
        assert user_id is not None
        localpart = user_id[1:].split(":", 1)[0]
        mentions = [user_id, localpart]
        try:
            profile = await client.get_displayname(user_id)
            name = getattr(profile, "displayname", None)
            if name and name not in mentions:
                mentions.append(name)
        except Exception:
            self.log.info("matrix: no display name (mentions use the user id)")
        return Addressing(prefixes=self.config.command_prefixes, mentions=tuple(mentions))


def build_matrix(
    context: PartContext,
    top: JupybotService,
    kernels: KernelManager,
    channels: ChannelRegistry,
) -> None:
    """The Matrix part, unless it lacks credentials; with `matrix.contact_room`, it also offers
    the contact outbox its "matrix" channel."""
    config = context.config.matrix
    reason = config.disabled_reason()
    if reason is not None:
        top.add_disabled("matrix", reason)
        return
    part = MatrixPart(
        config,
        kernels,
        context.state,
        IReactorTime(context.reactor),
        secrets=context.config.secrets,
        notebooks=context.config.notebooks,
    )
    if config.contact_room:
        channels.register(MatrixContactRoom(part.connected_api, config.contact_room))
    top.add_part(part)

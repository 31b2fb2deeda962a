"""Staying logged in: the saved device reused, tokens renewed, a lost device replaced.

Homeservers on next-generation auth (matrix.org since 2025) hand out access tokens that expire
after a few hours; an admin may delete the bot's device. When the homeserver refuses
the token (401 C{M_UNKNOWN_TOKEN}) any call the bot makes waits here (L{MatrixLogin.renew}, one
renewal however many calls were refused) while it climbs down this ladder:

1. the refresh token (MSC2918; also a little before the token expires, on the injected clock);
2. the configured password, logging in again as the same device, whose encryption keys and
   crypto store stay valid;
3. if that device's keys are gone from the homeserver (it was deleted, and the login made an
   empty device of the same id), a new device: its keys uploaded, the lost device's room keys
   given to it, and the stale devices this jupybot made deleted (user-interactive auth with the
   password), the new one kept; the L{AfterLogin} hooks then cross-sign it (part.py);
4. with an access token alone and nothing else, the part is down with what to do, and the
   token is tried again on Twisted's backoff until it works.

Every call retries through C{MatrixApi.retrying}: one backoff mechanism in the whole project.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from nio import AsyncClient, ErrorResponse, WhoamiResponse
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..config.matrix import MatrixConfig
from ._devices import delete_devices, keys_lost, prepare_new_device, reset_key_sharing
from .api import MatrixApi, MatrixError, is_transient
from .session import SessionFile, StoredSession
from .tokens import Grant, RefreshTimer, password_login, refresh_access_token

__all__ = ["AfterLogin", "Login", "MatrixLogin", "RenewalPolicy"]


@dataclass(frozen=True)
class Login:
    """A login of the bot: at start, after a renewal that had to log in again, or of a new
    device (whose keys were just made and uploaded)."""

    device_id: str
    new_device: bool


AfterLogin = Callable[[Login], Awaitable[None]]


@dataclass(frozen=True)
class RenewalPolicy:
    """How tokens come back. Everything on in production; the tests switch parts off to show
    what each one does."""

    # Ask for a refresh token at login (else a refused token means logging in again).
    refresh: bool = True
    # Refresh a little before the expiry, instead of only once the token is refused.
    ahead: bool = True
    # Renew at all: without it a refused token ends the part (the control of the tests).
    enabled: bool = True


class MatrixLogin:
    """The bot's session with its homeserver: logs in at start and renews what is refused."""

    log = Logger()

    def __init__(
        self,
        client: AsyncClient,
        api: MatrixApi,
        config: MatrixConfig,
        sessions: SessionFile,
        clock: IReactorTime,
        after_login: Sequence[AfterLogin] = (),
        policy: RenewalPolicy = RenewalPolicy(),
    ) -> None:
        assert config.homeserver is not None and config.user_id is not None
        self._client = client
        self._api = api
        self._config = config
        self._homeserver = config.homeserver
        self._user_id = config.user_id
        self._sessions = sessions
        self._clock = clock
        self._after_login = list(after_login)
        self._policy = policy
        # Bumped by every new access token (MatrixApi.retrying compares).
        self.generation = 0
        # Why the bot cannot get a working token now, and what to do (shown by /ping).
        self.problem: str | None = None
        # What happened so far, for the logs and the tests.
        self.refreshes = 0
        self.relogins = 0
        self.replaced_devices = 0
        self._session: StoredSession | None = None
        self._renewing: asyncio.Future[Login | None] | None = None
        self._ahead: set[asyncio.Future[None]] = set()
        self._refused = False
        self._timer = RefreshTimer(clock, self._renew_ahead)
        if policy.enabled:
            api.renewal = self

    @property
    def session(self) -> StoredSession | None:
        return self._session

    # -- at start -------------------------------------------------------------------------------

    async def log_in(self) -> Login:
        """Reuse the saved device (renewing its token if refused); else log in with the access
        token or the password. Calls the L{AfterLogin} hooks."""
        client = self._client
        config = self._config
        saved = self._sessions.load(self._homeserver, self._user_id)
        if saved is not None and _replaced_token(saved, config):
            # A new matrix.access_token (what the "down" reason asks for) beats the saved one.
            self._session = saved
            saved = None
        new_device = False
        if saved is not None:
            self._session = saved
            client.restore_login(saved.user_id, saved.device_id, saved.access_token)
            self._schedule(saved.expires_at)
            # A refused token is renewed in there, down the whole ladder if need be.
            await self._api.retrying("checking the access token", client.whoami)
            if await keys_lost(self._client, self._api, self._user_id):
                await self._replace_device("its encryption keys are gone from the homeserver")
                new_device = True
        elif config.access_token is not None:
            token = config.access_token.reveal()
            client.access_token = token
            whoami = await self._api.retrying(
                "checking the access token", client.whoami, renew=False
            )
            if not isinstance(whoami, WhoamiResponse):
                whoami = await self._wait_for_the_token(token)
            if whoami.user_id != self._user_id:
                raise MatrixError(
                    f"matrix.access_token belongs to {whoami.user_id}, not {self._user_id}"
                )
            kept = self._session.created_devices if self._session is not None else ()
            self._session = StoredSession(
                self._homeserver, self._user_id, whoami.device_id or "", token, None, None, kept
            )
            client.restore_login(self._user_id, self._session.device_id, token)
            self._sessions.save(self._session)
        else:
            grant = await self._password_login(None, for_good=False)
            self._adopt(grant, created=True)
            new_device = True
        assert client.device_id
        login = Login(client.device_id, new_device)
        await self._call_hooks(login)
        return login

    def stop(self) -> None:
        """No refresh ahead any more; a renewal under way is abandoned."""
        self._timer.cancel()
        for ahead in list(self._ahead):
            ahead.cancel()
        if self._renewing is not None:
            self._renewing.cancel()

    # -- renewing -----------------------------------------------------------------------------

    async def renew(self, seen: int) -> None:
        """Fires once the client holds an access token newer than generation C{seen}, which
        the homeserver refused."""
        # A call nio made inside another one (a room key shared inside a send) was refused too.
        self._refused = True
        await self._renew(seen)

    async def _renew(self, seen: int) -> None:
        if seen < self.generation:
            return  # renewed meanwhile: the call is simply made again
        if self._renewing is None:
            self._renewing = asyncio.ensure_future(self._renew_once())
        await asyncio.shield(self._renewing)

    async def _renew_once(self) -> Login | None:
        try:
            login = await self._climb()
            self.generation += 1
            if self._refused:
                self._refused = False
                reset_key_sharing(self._client)
        finally:
            self._renewing = None
        if login is not None:
            await self._call_hooks(login)
        return login

    async def _climb(self) -> Login | None:
        """Down the ladder of the module's docstring, to the first step that gives a token."""
        session = self._session
        assert session is not None
        if session.refresh_token is not None:
            refresh_token = session.refresh_token
            response = await self._api.retrying(
                "refreshing the access token",
                lambda: refresh_access_token(
                    self._client, self._user_id, session.device_id, refresh_token
                ),
                forever=True,
                renew=False,
            )
            if isinstance(response, Grant):
                self._adopt(response)
                self.refreshes += 1
                self.log.info(
                    "matrix: access token refreshed (valid {lifetime})",
                    lifetime=_lifetime(response.expires_in),
                )
                return None
            self.log.warn(
                "matrix: the refresh token was refused ({error}); logging in again",
                error=str(response),
            )
        if self._config.password is None:
            configured = self._config.access_token
            await self._wait_for_the_token(
                configured.reveal() if configured is not None else session.access_token
            )
            return None
        grant = await self._password_login(session.device_id, for_good=True)
        self._adopt(grant, created=session.device_id in session.created_devices)
        self.relogins += 1
        self.log.info("matrix: logged in again as device {device}", device=grant.device_id)
        if await keys_lost(self._client, self._api, self._user_id):
            await self._replace_device("it was deleted from the account")
            return Login(self._device_id, new_device=True)
        return Login(grant.device_id, new_device=False)

    def _renew_ahead(self) -> None:
        if not self._policy.ahead:
            return
        renewal = asyncio.ensure_future(self._renew(self.generation))
        self._ahead.add(renewal)
        renewal.add_done_callback(self._renewed_ahead)

    def _renewed_ahead(self, renewal: asyncio.Future[None]) -> None:
        self._ahead.discard(renewal)
        if not renewal.cancelled() and renewal.exception() is not None:
            self.log.warn(
                "matrix: renewing the access token failed: {error}", error=renewal.exception()
            )

    # -- steps --------------------------------------------------------------------------------

    @property
    def _device_id(self) -> str:
        assert self._session is not None
        return self._session.device_id

    def _schedule(self, expires_at: float | None) -> None:
        if not self._policy.enabled:
            return
        self._timer.expires_in(None if expires_at is None else expires_at - self._clock.seconds())

    def _adopt(self, grant: Grant, created: bool = False) -> None:
        """Use C{grant}'s tokens from now on, and keep them in the session file."""
        kept = self._session.created_devices if self._session is not None else ()
        if created and grant.device_id not in kept:
            kept = (*kept, grant.device_id)
        expires_at = None
        if grant.expires_in is not None:
            expires_at = self._clock.seconds() + grant.expires_in
        self._session = StoredSession(
            self._homeserver,
            self._user_id,
            grant.device_id,
            grant.access_token,
            grant.refresh_token,
            expires_at,
            kept,
        )
        # Same device: nio keeps its loaded crypto store; a new one loads a store of its own.
        self._client.restore_login(self._user_id, grant.device_id, grant.access_token)
        self._sessions.save(self._session)
        self._schedule(expires_at)

    async def _password_login(self, device_id: str | None, for_good: bool) -> Grant:
        """A login with the configured password. Refused: at the first start the part fails
        (a wrong password in config.yml); later it is down and tries again on the backoff."""
        password = self._config.password
        assert password is not None

        async def attempt() -> Grant | ErrorResponse:
            response = await password_login(
                self._client,
                self._user_id,
                password.reveal(),
                self._config.device_name,
                device_id,
                refreshable=self._policy.refresh,
            )
            if isinstance(response, ErrorResponse) and is_transient(response) is None:
                self.problem = (
                    f"the homeserver refuses matrix.password ({response.status_code}: "
                    f"{response.message}); set the right password in config.yml and restart "
                    "jupybot (it keeps trying meanwhile)"
                )
            return response

        if not for_good:
            response = await self._api.retrying("logging in", attempt, renew=False)
            if not isinstance(response, Grant):
                self.problem = None
                raise MatrixError(f"login refused: {getattr(response, 'message', response)}")
            return response
        grant = await self._api.retrying(
            "logging in again",
            attempt,
            forever=True,
            renew=False,
            accept=lambda response: isinstance(response, Grant),
        )
        self.problem = None
        assert isinstance(grant, Grant)
        return grant

    async def _wait_for_the_token(self, token: str) -> WhoamiResponse:
        """An access token alone, refused: down, saying what to do, until it works again."""
        self.problem = (
            "the homeserver refuses the access token (expired or revoked) and there is no "
            "matrix.password to log in again: put a new matrix.access_token (or a "
            "matrix.password) in config.yml and restart jupybot (it keeps trying meanwhile)"
        )
        self.log.error("matrix: {problem}", problem=self.problem)
        client = self._client

        async def attempt() -> Any:
            client.access_token = token
            return await client.whoami()

        whoami = await self._api.retrying(
            "checking the access token",
            attempt,
            forever=True,
            renew=False,
            accept=lambda response: isinstance(response, WhoamiResponse),
        )
        self.problem = None
        assert isinstance(whoami, WhoamiResponse)
        return whoami

    async def _replace_device(self, reason: str) -> None:
        """Log in as a new device, upload its keys, delete the stale devices jupybot made."""
        client = self._client
        old = self._device_id
        if self._config.password is None:
            self.log.error(
                "matrix: device {device} cannot read encrypted rooms any more ({reason}), and "
                "without matrix.password the bot cannot log in as a new one",
                device=old,
                reason=reason,
            )
            return
        self.log.warn(
            "matrix: device {device} is lost ({reason}); logging in as a new device",
            device=old,
            reason=reason,
        )
        # The old device's Olm account is worthless now: the new device makes its own, in a
        # store of its own (nio names the store after the device).
        lost_olm = client.olm
        client.olm = None
        client.store = None
        grant = await self._password_login(None, for_good=True)
        self._adopt(grant, created=True)
        self.replaced_devices += 1
        await prepare_new_device(client, self._api, lost_olm)
        self.log.info(
            "matrix: now device {device} (replacing {old}), its keys uploaded",
            device=grant.device_id,
            old=old,
        )
        await self._delete_stale_devices()

    async def _delete_stale_devices(self) -> None:
        """Delete the devices this jupybot made, but the current one, still on the account."""
        session = self._session
        assert session is not None and self._config.password is not None
        stale = [d for d in session.created_devices if d != session.device_id]
        if not stale:
            return
        try:
            gone = await delete_devices(
                self._client, self._api, self._user_id, self._config.password.reveal(), stale
            )
        except MatrixError as e:
            self.log.warn("matrix: stale devices are left: {error}", error=str(e))
            return
        self._session = current = replace(
            session, created_devices=tuple(d for d in session.created_devices if d not in gone)
        )
        self._sessions.save(current)

    async def _call_hooks(self, login: Login) -> None:
        for hook in self._after_login:
            await hook(login)


def _replaced_token(saved: StoredSession, config: MatrixConfig) -> bool:
    """Whether the saved session is that of an access token config.yml no longer has."""
    configured = config.access_token
    return (
        configured is not None
        and saved.refresh_token is None
        and saved.access_token != configured.reveal()
    )


def _lifetime(seconds: float | None) -> str:
    return "until revoked" if seconds is None else f"{seconds:.0f} s"

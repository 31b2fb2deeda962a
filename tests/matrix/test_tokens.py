"""Tokens that come back and a lost device replaced, against a real Synapse.

One Synapse hands out refreshable access tokens good for 2 s (`short_token_synapse`): the bot
answers across ten expiries in a row, refreshing ahead of each, or only once refused; with the
renewal switched off (the control) it stops at the first expiry, as every jupybot did before.
On the shared Synapse an admin logs the bot out everywhere (its device kept) or deletes its
device: it logs in again with its password, as the same device or as a new one with its keys
uploaded, and answers in an encrypted room.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from jupybot.aio import await_deferred
from jupybot.config import Secret
from jupybot.config.matrix import MatrixConfig
from jupybot.matrix.login import MatrixLogin, RenewalPolicy
from jupybot.state import StateDirectory
from tests.peers.synapse import (
    SHORT_REFRESH_TOKEN_SECONDS,
    SHORT_TOKEN_SECONDS,
    MatrixUser,
    Synapse,
)

from .conftest import ObservedMatrixPart
from .kernels_double import CannedKernels
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


class WatchedMatrixPart(ObservedMatrixPart):
    """The real part, with a Deferred fired if it fails."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed: Deferred[str] = Deferred()

    def fail(self, reason: Failure | str) -> None:
        super().fail(reason)
        if not self.failed.called:
            self.failed.callback(self.status)

    @property
    def keeper(self) -> MatrixLogin:
        assert self.login is not None
        return self.login


@asynccontextmanager
async def bot_and_person(
    synapse: Synapse,
    tmp_path: Path,
    encryption: bool = False,
    renewal: RenewalPolicy | None = None,
    backoff: Callable[[int], float] = lambda attempt: 0.2,
) -> AsyncIterator[tuple[WatchedMatrixPart, UserClient, str, MatrixUser]]:
    """A bot (password login) and a person in a room together, both stopped after."""
    from twisted.internet import reactor

    person_account = synapse.register(synapse.unique_localpart("alice"))
    account = synapse.register(synapse.unique_localpart("bot"))
    store = None
    if encryption:
        store = tmp_path / "person-store"
        store.mkdir()
    person = UserClient(synapse, person_account, store=store)
    await person.start()
    config = MatrixConfig(
        homeserver=synapse.base_url,
        user_id=account.user_id,
        access_token=None,
        password=Secret(account.password),
        prefix="!bot",
        allowed_users=(person_account.user_id,),
        encryption=encryption,
    )
    part = WatchedMatrixPart(
        config,
        CannedKernels(),
        StateDirectory(tmp_path / "state"),
        reactor,
        backoff=backoff,
        renewal=renewal,
    )
    part.startService()
    try:
        await await_deferred(part.serving)
        room = await person.create_room(invite=[account.user_id], encrypted=encryption)
        await person.wait_until(lambda: person.joined(room, account.user_id))
        yield part, person, room, account
    finally:
        await await_deferred(part.stopService())
        await person.stop()


def reactor_clock() -> Any:
    from twisted.internet import reactor

    return reactor


async def past_expiry(part: WatchedMatrixPart, extra: float = 0.0) -> None:
    """Until the bot's current access token has expired, and C{extra} seconds more (time itself
    is what is waited for)."""
    from twisted.internet import reactor

    session = part.keeper.session
    assert session is not None and session.expires_at is not None
    delay = session.expires_at + extra - reactor.seconds() + 0.1
    if delay > 0:
        await await_deferred(deferLater(reactor, delay, lambda: None))


async def answered_across_expiries(
    part: WatchedMatrixPart, person: UserClient, room: str, expiries: int
) -> None:
    for n in range(expiries):
        await past_expiry(part)
        command = await person.send(room, f"!bot run after expiry {n}")
        await person.answer(room, command, f"echo: after expiry {n}", within=10)


@asyncio_test
async def test_the_bot_answers_across_ten_expiries_of_its_token(
    short_token_synapse: Synapse, tmp_path: Path
) -> None:
    async with bot_and_person(short_token_synapse, tmp_path) as (part, person, room, _):
        session = part.keeper.session
        assert session is not None and session.refresh_token is not None
        assert session.expires_at is not None
        device = session.device_id
        await answered_across_expiries(part, person, room, 10)
        # Each token was refreshed ahead of its expiry: the bot never logged in again.
        assert part.keeper.refreshes >= 10
        assert part.keeper.relogins == 0
        assert part.keeper.session is not None
        assert part.keeper.session.device_id == device
        assert part.status == "running"


@asyncio_test
async def test_a_refused_token_is_refreshed_and_the_sync_goes_on(
    short_token_synapse: Synapse, tmp_path: Path
) -> None:
    """Refreshing only once Synapse says the token expired (401 M_UNKNOWN_TOKEN, soft logout):
    never a failed part."""
    renewal = RenewalPolicy(ahead=False)
    async with bot_and_person(short_token_synapse, tmp_path, renewal=renewal) as (
        part,
        person,
        room,
        _,
    ):
        await answered_across_expiries(part, person, room, 3)
        assert part.keeper.refreshes >= 2
        assert part.keeper.relogins == 0
        assert part.status == "running"


@asyncio_test
async def test_control_without_renewal_the_first_expiry_ends_the_bot(
    short_token_synapse: Synapse, tmp_path: Path
) -> None:
    """The control: the same as above with renewal switched off fails, as jupybot did: the
    first sync after the expiry is refused, the part fails and the command is never answered."""
    renewal = RenewalPolicy(enabled=False)
    async with bot_and_person(short_token_synapse, tmp_path, renewal=renewal) as (
        part,
        person,
        room,
        _,
    ):
        await past_expiry(part)
        command = await person.send(room, "!bot run after expiry 0")
        failed = part.failed.addTimeout(40, reactor_clock())
        status = await await_deferred(failed)
        assert status.startswith("failed:") and "M_UNKNOWN_TOKEN" in status, status
        # The token had expired before the command was sent: nothing the bot sends gets in.
        assert person.replies_to(room, command) == []


@asyncio_test
async def test_refresh_refused_the_bot_logs_in_again_as_the_same_device(
    short_token_synapse: Synapse, tmp_path: Path
) -> None:
    """The refresh token expired too (the bot refreshes only once refused here, and waits past
    it): it logs in again with its password as the same device, whose keys and crypto store
    still serve the encrypted room."""
    renewal = RenewalPolicy(ahead=False)
    async with bot_and_person(short_token_synapse, tmp_path, encryption=True, renewal=renewal) as (
        part,
        person,
        room,
        _,
    ):
        first = await person.send(room, "!bot run one")
        await person.answer(room, first, "echo: one")
        session = part.keeper.session
        assert session is not None
        device = session.device_id
        relogins = part.keeper.relogins
        await past_expiry(part, extra=SHORT_REFRESH_TOKEN_SECONDS - SHORT_TOKEN_SECONDS)
        second = await person.send(room, "!bot run two")
        answer = await person.answer(room, second, "echo: two")
        assert answer["event_id"] in person.decrypted
        assert part.keeper.relogins > relogins
        assert part.keeper.replaced_devices == 0
        assert part.keeper.session is not None
        assert part.keeper.session.device_id == device
        assert part.status == "running"


@asyncio_test
async def test_a_deleted_device_is_replaced_with_keys_and_one_device_is_left(
    synapse: Synapse, tmp_path: Path
) -> None:
    """An admin deletes the bot's device (its tokens and keys go with it): the bot logs in as
    a new device, uploads its keys, deletes the empty device its login made of the old id, and
    answers in the encrypted room within a minute."""
    admin = synapse.register(synapse.unique_localpart("admin"), admin=True)
    async with bot_and_person(synapse, tmp_path, encryption=True) as (part, person, room, bot):
        first = await person.send(room, "!bot run one")
        await person.answer(room, first, "echo: one")
        session = part.keeper.session
        assert session is not None
        lost = session.device_id
        synapse.delete_device(admin, bot.user_id, lost)
        second = await person.send(room, "!bot run two")
        answer = await person.answer(room, second, "echo: two", within=60)
        assert answer["event_id"] in person.decrypted
        assert part.keeper.replaced_devices == 1
        assert part.keeper.session is not None
        new = part.keeper.session.device_id
        assert new != lost
        # One device of the bot's, beside the one registering the account made (for the bot,
        # a person's device: never deleted); the empty one its login made of the old id, gone.
        assert sorted(synapse.devices(admin, bot.user_id)) == sorted([new, bot.device_id])
        assert part.keeper.session.created_devices == (new,)
        # Cross-signed like the first one, so that Element shares room keys with it.
        assert new in cross_signed_devices(synapse, admin, bot.user_id)
        await person.wait_until(lambda: new in bot_devices(person, bot.user_id))
        third = await person.send(room, "!bot run three")
        answer = await person.answer(room, third, "echo: three")
        assert answer["event_id"] in person.decrypted
        assert part.status == "running"


@asyncio_test
async def test_a_device_deleted_while_the_bot_was_stopped_is_replaced_at_start(
    synapse: Synapse, tmp_path: Path
) -> None:
    """What jupybot did before: it logged in again as the deleted device's id, without keys,
    and encrypted rooms stayed dead across restarts."""
    from twisted.internet import reactor

    admin = synapse.register(synapse.unique_localpart("admin"), admin=True)
    async with bot_and_person(synapse, tmp_path, encryption=True) as (part, person, room, bot):
        first = await person.send(room, "!bot run one")
        await person.answer(room, first, "echo: one")
        session = part.keeper.session
        assert session is not None
        lost = session.device_id
        await await_deferred(part.stopService())
        synapse.delete_device(admin, bot.user_id, lost)
        again = WatchedMatrixPart(
            part.config, part.kernels, part.state_dir, reactor, backoff=lambda attempt: 0.2
        )
        again.startService()
        try:
            await await_deferred(again.serving)
            assert again.keeper.replaced_devices == 1
            assert again.keeper.session is not None
            new = again.keeper.session.device_id
            assert new != lost
            second = await person.send(room, "!bot run two")
            answer = await person.answer(room, second, "echo: two")
            assert answer["event_id"] in person.decrypted
            assert sorted(synapse.devices(admin, bot.user_id)) == sorted([new, bot.device_id])
        finally:
            await await_deferred(again.stopService())


def bot_devices(person: UserClient, user_id: str) -> set[str]:
    return {d.id for d in person.client.device_store.active_user_devices(user_id)}


def cross_signed_devices(synapse: Synapse, reader: MatrixUser, user_id: str) -> set[str]:
    """The devices of C{user_id} that carry a signature of its self-signing key."""
    answer = synapse.query_keys(reader, user_id)
    self_signing = set(answer["self_signing_keys"][user_id]["keys"])
    return {
        device_id
        for device_id, keys in answer["device_keys"][user_id].items()
        if self_signing & set(keys.get("signatures", {}).get(user_id, {}))
    }


@asyncio_test
async def test_a_revoked_access_token_alone_is_down_with_what_to_do_and_retried(
    synapse: Synapse, tmp_path: Path
) -> None:
    """No refresh token and no password: no way back but a person's. The part says so in
    /ping (down, not failed) and keeps trying the token on the backoff."""
    from twisted.internet import reactor

    account = synapse.register(synapse.unique_localpart("bot"))
    synapse.log_out(account)
    config = MatrixConfig(
        homeserver=synapse.base_url,
        user_id=account.user_id,
        access_token=Secret(account.access_token),
        password=None,
        allowed_users=("*",),
    )
    retries: list[int] = []
    retried_twice: Deferred[None] = Deferred()

    def backoff(attempt: int) -> float:
        retries.append(attempt)
        if len(retries) == 2:
            retried_twice.callback(None)
        return 0.2

    part = WatchedMatrixPart(
        config, CannedKernels(), StateDirectory(tmp_path / "state"), reactor, backoff=backoff
    )
    part.startService()
    try:
        await await_deferred(retried_twice.addTimeout(30, reactor))
        assert part.status.startswith("down: the homeserver refuses the access token")
        assert "put a new matrix.access_token" in part.status
        assert not part.failed.called and not part.serving.called
    finally:
        await await_deferred(part.stopService())


@asyncio_test
async def test_an_encrypted_room_is_answered_readably_across_expiries(
    short_token_synapse: Synapse, tmp_path: Path
) -> None:
    """An encrypted room, the token expired before each command (refreshing only once
    refused): the first refused call (the key upkeep after the sync) renews it, and the room
    key the bot shares inside its reply reaches the person, who reads every answer."""
    renewal = RenewalPolicy(ahead=False)
    async with bot_and_person(short_token_synapse, tmp_path, encryption=True, renewal=renewal) as (
        part,
        person,
        room,
        _,
    ):
        for n in range(2):
            await past_expiry(part)
            command = await person.send(room, f"!bot run hidden {n}")
            answer = await person.answer(room, command, f"echo: hidden {n}")
            assert answer["event_id"] in person.decrypted


@asyncio_test
async def test_a_refused_password_is_down_with_what_to_do_then_running_once_it_works(
    synapse: Synapse, tmp_path: Path
) -> None:
    """An admin changes the bot's password (every device logged out): no way back but a
    person's, so the part is down saying what to do, and keeps trying; once the password works
    again the bot is back on its own, running, and answers the command sent meanwhile."""
    admin = synapse.register(synapse.unique_localpart("admin"), admin=True)
    tries: list[Deferred[None]] = []

    def backoff(attempt: int) -> float:
        waiting, tries[:] = list(tries), []
        for d in waiting:
            d.callback(None)
        return 0.2

    def next_try() -> Deferred[None]:
        d: Deferred[None] = Deferred()
        tries.append(d)
        return d.addTimeout(60, reactor_clock())

    async with bot_and_person(synapse, tmp_path, backoff=backoff) as (part, person, room, bot):
        synapse.reset_password(admin, bot.user_id, "not-the-configured-one")
        command = await person.send(room, "!bot run meanwhile")
        await await_deferred(next_try())
        await await_deferred(next_try())  # refused again: still down, still trying
        assert part.status.startswith("down: the homeserver refuses matrix.password"), part.status
        assert "set the right password in config.yml" in part.status
        synapse.reset_password(admin, bot.user_id, bot.password)
        await person.answer(room, command, "echo: meanwhile", within=60)
        assert part.status == "running"

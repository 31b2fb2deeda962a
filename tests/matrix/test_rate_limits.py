"""The Matrix bot on homeservers with rate limits as they are in the wild (Synapse's default
`rc_message`, 0.2 events a second after a burst of 10, and a stricter one): streamed output,
images, long output and input() all arrive whole, in order, with their status line."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from jupybot.aio import deferred_from_coroutine
from jupybot.config import Secret
from jupybot.config.matrix import MatrixConfig
from jupybot.kernels import ExecutionListener, ExecutionResult, Stream
from jupybot.state import StateDirectory
from tests.peers.synapse import MatrixUser, Synapse

from .conftest import BotRunner
from .kernels_double import CannedKernels, tiny_png
from .user import Event, UserClient, asyncio_test

pytestmark = pytest.mark.peers

# Output streams for longer than the default limit's burst lasts at an edit a second.
TICKS = 30
TICK_SECONDS = 0.5


class PacedKernels(CannedKernels):
    """Adds ``tick N``: a line every half second of the reactor's time, as a real loop with
    print() and time.sleep() would; remembers when each owner's last run ended."""

    def __init__(self) -> None:
        super().__init__()
        self.ended_at: dict[str, float] = {}

    def execute(
        self,
        owner: str,
        code: str,
        listener: ExecutionListener,
        name: str | None = None,
        allow_stdin: bool = True,
        silent: bool = False,
    ) -> Deferred[ExecutionResult]:
        word, _, count = code.partition(" ")
        if word != "tick":
            return super().execute(owner, code, listener, name, allow_stdin)
        self.calls.append(("execute", owner, code))
        return Deferred.fromCoroutine(self._tick(owner, int(count), listener))

    async def _tick(self, owner: str, count: int, listener: ExecutionListener) -> ExecutionResult:
        from twisted.internet import reactor

        started = reactor.seconds()
        for i in range(count):
            listener.on_output(Stream("stdout", f"line {i}\n"))
            await deferLater(reactor, TICK_SECONDS, lambda: None)
        self.ended_at[owner] = reactor.seconds()
        return ExecutionResult("ok", 1, reactor.seconds() - started)


@pytest.fixture
def limited_alice(limited_synapse: Synapse) -> MatrixUser:
    return limited_synapse.register(limited_synapse.unique_localpart("alice"))


@pytest_twisted.async_yield_fixture
async def alice_client(
    limited_synapse: Synapse, limited_alice: MatrixUser
) -> AsyncIterator[UserClient]:
    client = UserClient(limited_synapse, limited_alice)
    await deferred_from_coroutine(client.start())
    yield client
    await deferred_from_coroutine(client.stop())


@pytest_twisted.async_yield_fixture
async def bot(
    limited_synapse: Synapse, tmp_path: Path, limited_alice: MatrixUser
) -> AsyncIterator[BotRunner]:
    account = limited_synapse.register(limited_synapse.unique_localpart("bot"))
    config = MatrixConfig(
        homeserver=limited_synapse.base_url,
        user_id=account.user_id,
        access_token=None,
        password=Secret(account.password),
        prefix="!bot",
        allowed_users=(limited_alice.user_id,),
        admins=(),
        edit_interval_seconds=1.0,
    )
    state = StateDirectory(tmp_path / "state")
    runner = BotRunner(limited_synapse, account, config, state, PacedKernels())
    yield runner
    await deferred_from_coroutine(runner.stop())


def line_numbers(body: str) -> list[int]:
    return [int(n) for n in re.findall(r"^line (\d+)$", body, re.MULTILINE)]


def versions(client: UserClient, room: str, reply: Event) -> list[str]:
    """Every body the reply had, as a reader saw them arrive: the first, then each edit."""
    first = next(e for r, e in client.events if r == room and e["event_id"] == reply["event_id"])
    edits = client.edits_of(room, reply["event_id"])
    return [first["content"]["body"], *(e["content"]["m.new_content"]["body"] for e in edits)]


@asyncio_test
async def test_streams_in_two_rooms_arrive_whole_and_in_order_with_their_status(
    bot: BotRunner, alice_client: UserClient
) -> None:
    """Two rooms stream at once: together they spend more than the account's burst."""
    part = await bot.start()
    rooms = [await alice_client.create_room(invite=[bot.user_id]) for _ in range(2)]
    for room in rooms:
        await alice_client.wait_until(joined(alice_client, room, bot.user_id))
    runs = [await alice_client.send(room, f"!bot run tick {TICKS}") for room in rooms]
    for room, run_id in zip(rooms, runs, strict=True):
        await check_stream(bot, alice_client, room, run_id)
    assert part.bot is not None and part.bot.api.rate_limited > 0, "the limit was never met"


def joined(client: UserClient, room: str, user_id: str) -> Callable[[], bool]:
    return lambda: client.joined(room, user_id)


async def check_stream(bot: BotRunner, client: UserClient, room: str, run_id: str) -> None:
    final = await client.answer(room, run_id, "✅ done", within=120)
    kernels = bot.kernels
    assert isinstance(kernels, PacedKernels)
    reply = client.replies_to(room, run_id)[0]
    final_edit = client.edits_of(room, reply["event_id"])[-1]
    # When the homeserver took it (its clock is this machine's, like the reactor's).
    accepted_at = final_edit["origin_server_ts"] / 1000
    final_edit_seconds = accepted_at - kernels.ended_at[f"matrix:{room}"]
    assert line_numbers(final["content"]["body"]) == list(range(TICKS))
    # Each version the room saw shows the lines so far, in order, none dropped, the status
    # line last: running until the final one.
    bodies = versions(client, room, reply)
    shown = [line_numbers(body) for body in bodies]
    assert all(numbers == list(range(len(numbers))) for numbers in shown)
    assert [len(n) for n in shown] == sorted(len(n) for n in shown)
    assert all(body.rstrip().endswith("⏳ running…") for body in bodies[:-1])
    assert len(bodies) < TICKS * TICK_SECONDS  # fewer edits than one a second
    # The final edit is not queued behind stale edits: at worst it waits for the slots of the
    # other room's final edit and reaction, and its own (a slot is 5 s by default, 10 s on the
    # strict one). Without the pacing and the edit lanes: 22 s and 44 s.
    limit = bot.synapse.message_limit or {"per_second": 0.2}
    slot = 1 / limit["per_second"]
    print(f"final edit {final_edit_seconds:.2f}s after the run ended ({slot:g} s slots)")
    assert final_edit_seconds < 3 * slot
    await client.wait_for(
        lambda r, e: (
            r == room
            and e.get("type") == "m.reaction"
            and e["content"]["m.relates_to"]["event_id"] == run_id
        ),
        within=60,
    )


@asyncio_test
async def test_images_long_output_and_input_under_the_limit(
    bot: BotRunner, alice_client: UserClient
) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))

    image_id = await alice_client.send(room, "!bot run image")
    _, image = await alice_client.wait_for(
        lambda r, e: r == room and e["content"].get("msgtype") == "m.image", within=120
    )
    assert image["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == image_id
    assert await alice_client.download(image["content"]["url"]) == tiny_png()

    long_id = await alice_client.send(room, "!bot run long")
    await alice_client.answer(room, long_id, "the whole output follows as a file", within=120)
    _, attachment = await alice_client.wait_for(
        lambda r, e: r == room and e["content"].get("msgtype") == "m.file", within=120
    )
    data = await alice_client.download(attachment["content"]["url"])
    assert data.decode().count("\n") == 2000

    ask_id = await alice_client.send(room, "!bot run ask Your name?")
    await alice_client.answer(room, ask_id, "for input", within=120)
    await alice_client.send(room, "Alice")
    final = await alice_client.answer(room, ask_id, "✅ done", within=120)
    assert "got Alice" in final["content"]["body"]

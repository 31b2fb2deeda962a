"""Matrix bot latency: `!bot run 1+1` until the person's client sees the final answer.

Run: ``.venv/bin/python -m bench.matrix [--rounds N]`` (needs ``.cache/synapse-venv``, built by
``make test``, or ``$JUPYBOT_SYNAPSE_PYTHON``). Everything is on loopback, on one local Synapse:

- ``floor``: two plain matrix-nio clients ping-pong (A sends, B answers what it sees, A sees the
  answer): the two sync round trips any bot reply needs; measured in the same run.
- ``kernel``: the kernel core's own time for ``1+1`` on the embedded gateway (no Matrix).
- ``jupybot``: the person sends ``!bot run 1+1``, the bot (in this process, on the asyncio
  reactor) runs it and replies; timed until the person's client has the reply with its status.

The three are measured in interleaved rounds, with the bot in the room throughout, so each sees
the homeserver in the same state: Synapse's own latency drifts during a run by more than the
overhead measured (runs measured one after the other gave overheads from 2 to 26 ms).

Target: jupybot p50 <= floor p50 + kernel p50 + 15 ms.

- ``element``: the same round trip from an Element-grade client (tests/peers/element:
  matrix-js-sdk with its Rust crypto, excluding insecure devices), in a plain room and in an
  encrypted one, in the same rounds. ``e2ee_overhead_p50_ms`` is the encrypted p50 minus the
  plain one: what end-to-end encryption costs a person, client and bot together (target
  <= +20 ms). The bot runs with ``matrix.encryption`` on (and so cross-signed) for every figure.
  Left out, with a line saying so, when the Element peer is not installed (``make test`` does).

Then a streaming run on a second Synapse with its default rate limit (``rc_message`` 0.2 events
a second after a burst of 10, per account, as on matrix.org): the kernel prints a line every half
second for ``--stream-seconds`` (30), then the time it ended. Reported: ``edits_rejected``, the
429s the bot met; ``final_edit_ms``, from the end of the run until the homeserver accepted the
final edit (target <= 2000; both clocks are this machine's); ``lost_output_bytes``, printed
lines missing from the final reply or out of order (target 0); ``stream_edits``, how many times
the reply was edited.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._report import percentile
from jupybot.reactor import install_asyncio_reactor


def _has_body(room_id: str, body: str, room: str, event: dict[str, Any]) -> bool:
    return room == room_id and event.get("content", {}).get("body") == body


class Timer:
    """Latencies in milliseconds."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def add(self, started: float) -> None:
        self.samples.append((time.perf_counter() - started) * 1000)

    def p50(self) -> float:
        return round(statistics.median(self.samples), 2)

    def p90(self) -> float:
        return round(percentile(self.samples, 0.9), 2)


async def measure(rounds: int, workdir: Path, stream_seconds: float) -> dict[str, Any]:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from jupybot.aio import await_deferred
    from jupybot.config import Secret
    from jupybot.config.matrix import MatrixConfig
    from jupybot.kernels import ExecutionResult, OutputEvent
    from jupybot.state import StateDirectory
    from tests.matrix.conftest import ObservedMatrixPart
    from tests.matrix.user import UserClient
    from tests.peers.element_client import PEER, ElementClient
    from tests.peers.synapse import Synapse, synapse_python

    python = synapse_python()
    if python is None:
        sys.exit("bench.matrix: Synapse is not installed (run `make test` once)")
    (workdir / "synapse").mkdir()
    synapse = Synapse(python, workdir / "synapse")
    await asyncio.to_thread(synapse.start)
    gateway = None
    try:
        kernels, gateway, sandbox = await _kernels(workdir)
        person = UserClient(synapse, synapse.register("person"))
        peer = UserClient(synapse, synapse.register("peer"))
        bot_account = synapse.register("bot")
        await person.start()
        await peer.start()
        element_account = synapse.register("element")
        with_element = (PEER / "node_modules" / "matrix-js-sdk").exists()
        if not with_element:
            print("bench.matrix: the Element peer is not installed: no e2ee figures")

        # -- floor: plain clients ping-pong ----------------------------------------------------
        room = await person.create_room(invite=[peer.user_id, bot_account.user_id])
        await peer.join(room)
        await person.wait_until(lambda: person.joined(room, peer.user_id))
        answered: set[str] = set()

        async def answer_pings() -> None:
            while True:
                await peer.wait_until(
                    lambda: any(
                        e["content"].get("body", "").startswith("ping ")
                        and e["event_id"] not in answered
                        for r, e in peer.events
                        if r == room and e.get("type") == "m.room.message"
                    )
                )
                for r, e in list(peer.events):
                    body = e.get("content", {}).get("body", "")
                    if r == room and body.startswith("ping ") and e["event_id"] not in answered:
                        answered.add(e["event_id"])
                        await peer.send(room, "pong " + body[5:])

        answering = asyncio.ensure_future(answer_pings())

        class Quiet:
            def on_output(self, event: OutputEvent) -> None:
                pass

            def on_input_request(self, prompt: str, password: bool) -> Any:
                raise AssertionError("no input expected")

        config = MatrixConfig(
            homeserver=synapse.base_url,
            user_id=bot_account.user_id,
            access_token=None,
            password=Secret(bot_account.password),
            prefix="!bot",
            allowed_users=(person.user_id, element_account.user_id),
            commands_per_minute=0,  # a person's command rate is not what is measured here
            encryption=True,
        )
        part = ObservedMatrixPart(config, kernels, StateDirectory(workdir / "state"), reactor)
        part.startService()
        await await_deferred(part.serving)
        await person.wait_until(lambda: person.joined(room, bot_account.user_id))
        element: ElementClient | None = None
        element_rooms: dict[str, str] = {}
        if with_element:
            element = await asyncio.to_thread(ElementClient, synapse, element_account)
            for kind in ("plain", "encrypted"):
                made = await asyncio.to_thread(
                    element.call,
                    "create_room",
                    invite=[bot_account.user_id],
                    encrypted=kind == "encrypted",
                )
                element_rooms[kind] = made["room_id"]
                await asyncio.to_thread(element.wait_joined, made["room_id"], bot_account.user_id)

        # Rounds interleave the three measurements, so that each sees the homeserver in the
        # same state (its latency drifts over a run by more than the overhead measured).
        floor, kernel, bot = Timer(), Timer(), Timer()
        element_timers = {kind: Timer() for kind in element_rooms}
        for i in range(rounds + 3):
            started = time.perf_counter()
            await person.send(room, f"ping {i}")
            await person.wait_for(functools.partial(_has_body, room, f"pong {i}"))
            if i >= 3:
                floor.add(started)

            started = time.perf_counter()
            result: ExecutionResult = await await_deferred(
                kernels.execute("bench:kernel", "1+1", Quiet())
            )
            assert result.status == "ok", result
            if i >= 3:
                kernel.add(started)

            started = time.perf_counter()
            command = await person.send(room, "!bot run 1+1")
            await person.answer(room, command, "✅ done")
            if i >= 3:
                bot.add(started)

            for kind, element_room in element_rooms.items():
                assert element is not None
                started = time.perf_counter()
                sent = await asyncio.to_thread(
                    element.call, "send", room_id=element_room, body="!bot run 1+1"
                )
                await asyncio.to_thread(
                    element.answer, element_room, bot_account.user_id, "✅ done", sent["event_id"]
                )
                if i >= 3:
                    element_timers[kind].add(started)
        answering.cancel()
        if element is not None:
            await asyncio.to_thread(element.stop)
        await await_deferred(part.stopService())
        await person.stop()
        await peer.stop()
        await asyncio.to_thread(synapse.stop)
        streaming = await measure_streaming(kernels, python, workdir, stream_seconds)
    finally:
        await asyncio.to_thread(synapse.stop)
        if gateway is not None:
            await await_deferred(Deferred.fromCoroutine(kernels.shutdown_all()))
            await await_deferred(Deferred.fromCoroutine(gateway.stop()))
            sandbox.close()
    overhead = round(bot.p50() - floor.p50() - kernel.p50(), 2)
    figures: dict[str, Any] = {
        "rounds": rounds,
        "kernel": "python3 on jupybot's embedded Kernel Gateway",
        "floor_p50_ms": floor.p50(),
        "floor_p90_ms": floor.p90(),
        "kernel_p50_ms": kernel.p50(),
        "jupybot_p50_ms": bot.p50(),
        "jupybot_p90_ms": bot.p90(),
    }
    figures["overhead_p50_ms"] = overhead
    figures["target_met"] = overhead <= 15
    if element_timers:
        plain, encrypted = element_timers["plain"], element_timers["encrypted"]
        e2ee = round(encrypted.p50() - plain.p50(), 2)
        figures.update(
            {
                "element_plain_p50_ms": plain.p50(),
                "element_e2ee_p50_ms": encrypted.p50(),
                "element_e2ee_p90_ms": encrypted.p90(),
                "e2ee_overhead_p50_ms": e2ee,
                "e2ee_target_met": e2ee <= 20,
            }
        )
    figures.update(streaming)
    figures["stream_target_met"] = (
        streaming["final_edit_ms"] <= 2000 and streaming["lost_output_bytes"] == 0
    )
    return figures


async def measure_streaming(
    kernels: Any, python: str, workdir: Path, seconds: float
) -> dict[str, Any]:
    """The streaming run on a Synapse with its default rc_message (see the module's doc)."""
    from twisted.internet import reactor

    from jupybot.aio import await_deferred
    from jupybot.config import Secret
    from jupybot.config.matrix import MatrixConfig
    from jupybot.state import StateDirectory
    from tests.matrix.conftest import ObservedMatrixPart
    from tests.matrix.user import UserClient
    from tests.peers.synapse import Synapse

    (workdir / "synapse-limited").mkdir()
    synapse = Synapse(python, workdir / "synapse-limited", message_limit=None)
    await asyncio.to_thread(synapse.start)
    try:
        person = UserClient(synapse, synapse.register("person"))
        bot_account = synapse.register("bot")
        await person.start()
        config = MatrixConfig(
            homeserver=synapse.base_url,
            user_id=bot_account.user_id,
            access_token=None,
            password=Secret(bot_account.password),
            prefix="!bot",
            allowed_users=(person.user_id,),
            max_output_chars=20000,
        )
        part = ObservedMatrixPart(config, kernels, StateDirectory(workdir / "state-2"), reactor)
        part.startService()
        await await_deferred(part.serving)
        room = await person.create_room(invite=[bot_account.user_id])
        await person.wait_until(lambda: person.joined(room, bot_account.user_id))
        lines = int(seconds / 0.5)
        code = (
            "import time\n"
            f"for i in range({lines}):\n"
            "    print(f'line {i}', flush=True)\n"
            "    time.sleep(0.5)\n"
            "print(f'ended {time.time()}')"
        )
        command = await person.send(room, f"!bot run\n```\n{code}\n```")
        await person.answer(room, command, "✅ done", within=seconds + 120)
        reply = person.replies_to(room, command)[0]
        final_edit = person.edits_of(room, reply["event_id"])[-1]
        body = final_edit["content"]["m.new_content"]["body"]
        ended = float(body.split("ended ", 1)[1].split()[0])
        shown = [line for line in body.splitlines() if line.startswith("line ")]
        expected = [f"line {i}" for i in range(lines)]
        in_order = [line for line in shown if line in expected]
        lost = sum(len(line) + 1 for line in expected if line not in shown)
        if in_order != [line for line in expected if line in shown]:
            lost += sum(len(line) + 1 for line in in_order)  # reordered: all of it is wrong
        await person.wait_for(
            lambda r, e: (
                r == room
                and e.get("type") == "m.reaction"
                and e["content"]["m.relates_to"]["event_id"] == command
            ),
            within=60,
        )
        assert part.bot is not None
        figures = {
            "stream_seconds": seconds,
            "stream_edits": len(person.edits_of(room, reply["event_id"])),
            "edits_rejected": part.bot.api.rate_limited,
            "final_edit_ms": round(final_edit["origin_server_ts"] - ended * 1000, 1),
            "lost_output_bytes": lost,
        }
        await await_deferred(part.stopService())
        await person.stop()
        return figures
    finally:
        await asyncio.to_thread(synapse.stop)


async def _kernels(workdir: Path) -> tuple[Any, Any, Any]:
    """The real kernel core on jupybot's embedded Kernel Gateway, and the sandbox its kernels
    run in (to close after the gateway stopped)."""
    from twisted.internet import reactor

    from jupybot.aio import await_deferred
    from jupybot.config.kernels import GatewayConfig
    from jupybot.config.sandbox import SandboxConfig
    from jupybot.kernels import GatewayKernelManager
    from jupybot.kernels.embedded import EmbeddedGateway
    from jupybot.kernels.part import embedded_kernel_plan
    from jupybot.sandbox import Sandbox

    config = GatewayConfig(url=None, token=None)
    manager = GatewayKernelManager(reactor, config)
    gateway = EmbeddedGateway(
        reactor, workdir / "kernel-runtime", on_ready=manager.connect, on_restart=lambda: None
    )
    # Kernels in their sandboxes, as jupybot runs them.
    sandbox = Sandbox(SandboxConfig())
    sandbox.prepare()
    await await_deferred(gateway.start(embedded_kernel_plan(sandbox, config)))
    return manager, gateway, sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--stream-seconds", type=float, default=30.0)
    args = parser.parse_args()
    install_asyncio_reactor()
    from twisted.internet import defer, task

    from bench._report import report
    from jupybot.aio import deferred_from_coroutine

    async def run(_reactor: object) -> None:
        with tempfile.TemporaryDirectory() as workdir:
            figures = await deferred_from_coroutine(
                measure(args.rounds, Path(workdir), args.stream_seconds)
            )
        for key, value in figures.items():
            print(f"{key}: {value}")
        report(figures)

    task.react(lambda r: defer.ensureDeferred(run(r)))


if __name__ == "__main__":
    main()

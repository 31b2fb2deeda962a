"""Kernels: the execute round trip against its baselines, a crowd of rooms starting at once, and
a new room's first run cold and warm, all in one run.

Run: ``.venv/bin/python -m bench.kernels [--rounds N] [--kernels K] [--sandbox none]``
(``--enterprise-gateway``: the same figures through Jupyter Enterprise Gateway, the test peer
started by the bench, e.g. ``eg_p50_ms``; ``--gateway-url URL --token T --prefix P``: through
any other gateway).

- ``zmq``: jupyter_client's blocking client straight to a local ipykernel over ZMQ (no gateway),
  in a thread of its own, its rounds interleaved with jupybot's (one of each in turn, the order
  alternating), so that both see the same load on a shared machine. With a gateway whose kernels
  run another Python (Enterprise Gateway's venv: ipykernel 6), ``zmq_same_kernel``: the same
  client to that Python's ipykernel, interleaved too, and ``<prefix>_vs_zmq_same_kernel_p50``:
  what the gateway path costs over ZMQ to the kernel it runs.
- ``naive_ws``: one plain aiohttp websocket to the gateway's channels endpoint, default socket
  options, waiting for ``execute_reply`` and ``idle`` like jupybot does.
- ``jupybot``: ``GatewayKernelManager.execute`` through jupybot's embedded Kernel Gateway.
- ``first_run_cold_ms``: a new room's first run with no kernel ready (start, then execute);
  ``first_run_warm_ms``: the same with the warm pool's kernel waiting (``gateway.prestart``),
  the room coming a second after the pool filled.
- ``start_all_s``, ``started_ok``: K rooms sending their first run at once (K kernels started
  in turn, ``gateway.start_concurrency``), until every run answered; how many answered ``ok``.
- ``concurrent_exec_per_s``: those K kernels executing ``1+1`` back to back, all at once.

Targets: jupybot p50 <= 1.2x the ZMQ p50 (through Enterprise Gateway: 1.3x); started_ok == K;
warm first run <= 2x an execute.
A run that fails says why and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench._report import percentile
from jupybot.reactor import install_asyncio_reactor

CODE = "1+1"
WARMUP = 20
ROOM_ARRIVES_AFTER_SECONDS = 1.0


def milliseconds(samples: list[float]) -> tuple[float, float]:
    return round(statistics.median(samples), 2), round(percentile(samples, 0.99), 2)


class ZmqBaseline:
    """jupyter_client's blocking client to an ipykernel of C{python} (this one's by default),
    in a thread of its own: the blocking client runs an event loop of its own, which cannot be
    the reactor's. Each round is timed in that thread, while the reactor waits."""

    def __init__(self, python: str | None = None) -> None:
        self._python = python
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="bench-zmq")
        self._manager: Any = None
        self._client: Any = None

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._start)

    async def round_ms(self) -> float:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._round_ms)

    async def stop(self) -> None:
        if self._manager is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._stop)
        self._thread.shutdown()

    def _start(self) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        if self._python is None:
            manager = KernelManager(kernel_name="python3")
        else:
            spec = Path(tempfile.mkdtemp(prefix="jupybot-bench-kernelspec-")) / "bench-python"
            spec.mkdir()
            argv = [self._python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
            (spec / "kernel.json").write_text(
                json.dumps({"argv": argv, "display_name": "bench", "language": "python"})
            )
            manager = KernelManager(
                kernel_name="bench-python",
                kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]),
            )
        manager.start_kernel()
        self._manager = manager
        self._client = manager.client()
        self._client.start_channels()
        self._client.wait_for_ready(timeout=60)

    def _round_ms(self) -> float:
        started = time.perf_counter()
        self._client.execute_interactive(CODE, output_hook=lambda message: None, timeout=30)
        return (time.perf_counter() - started) * 1000

    def _stop(self) -> None:
        self._client.stop_channels()
        self._manager.shutdown_kernel(now=True)


class Quiet:
    def on_output(self, event: object) -> None:
        pass

    def on_input_request(self, prompt: str, password: bool) -> Any:
        from twisted.internet.defer import succeed

        return succeed("")


async def measure_naive_ws(url: str, token: str, kernel_id: str, rounds: int) -> list[float]:
    import aiohttp

    session_id = uuid.uuid4().hex
    ws_url = url.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
    headers = {"Authorization": f"token {token}"}
    samples = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url, headers=headers, params={"session_id": session_id}) as ws,
    ):
        for _ in range(rounds):
            msg_id = uuid.uuid4().hex
            request = {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "session": session_id,
                    "username": "bench",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {"code": CODE, "silent": False},
                "buffers": [],
            }
            started = time.perf_counter()
            await ws.send_str(json.dumps(request))
            replied = idle = False
            while not (replied and idle):
                message = json.loads((await ws.receive()).data)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = message["header"]["msg_type"]
                replied = replied or kind == "execute_reply"
                idle = idle or (
                    kind == "status" and message["content"]["execution_state"] == "idle"
                )
            samples.append((time.perf_counter() - started) * 1000)
    return samples


@dataclass
class Options:
    rounds: int
    kernels: int
    seconds: float
    sandbox: str
    gateway_url: str | None
    token: str | None
    prefix: str
    first_runs: int
    # The Python the gateway's kernels run, when it is not this one (zmq_same_kernel).
    kernel_python: str | None = None


class BenchFailed(Exception):
    """The run cannot give its figures; the message says why."""


async def run_ms(manager: Any, owner: str) -> float:
    """One run of C{owner}, in milliseconds; it must end ok."""
    from jupybot.aio import await_deferred

    ended: list[float] = []

    def stamp(result: Any) -> Any:
        ended.append(time.perf_counter())
        return result

    # Timed when the Deferred fires, as jupybot's callers (Twisted code) get the result, not
    # when this asyncio task resumes a loop turn later.
    started = time.perf_counter()
    result = await await_deferred(manager.execute(owner, CODE, Quiet()).addCallback(stamp))
    elapsed = (ended[0] - started) * 1000
    if result.status != "ok":
        raise BenchFailed(f"{owner}: {CODE} ended {result.status}: {result.message}")
    return elapsed


async def interleaved_round_trips(manager: Any, options: Options) -> dict[str, list[float]]:
    """jupybot's round trip and the ZMQ baselines', one round of each in turn (the order
    alternating), so that a shared machine's load falls on all of them alike."""
    baselines = {"zmq": ZmqBaseline()}
    if options.kernel_python is not None:
        baselines["zmq_same_kernel"] = ZmqBaseline(options.kernel_python)
    for baseline in baselines.values():
        await baseline.start()
    try:
        await run_ms(manager, "solo")  # the kernel's start is not a round trip
        samples: dict[str, list[float]] = {options.prefix: [], **{name: [] for name in baselines}}
        for n in range(WARMUP + options.rounds):
            order = list(samples)
            if n % 2:
                order.reverse()
            for name in order:
                if name in baselines:
                    elapsed = await baselines[name].round_ms()
                else:
                    elapsed = await run_ms(manager, "solo")
                if n >= WARMUP:
                    samples[name].append(elapsed)
        return samples
    finally:
        for baseline in baselines.values():
            await baseline.stop()


async def measure_gateway(options: Options) -> dict[str, Any]:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from jupybot.aio import await_deferred
    from jupybot.config.kernels import GatewayConfig
    from jupybot.config.sandbox import SandboxConfig
    from jupybot.kernels import GatewayKernelManager
    from jupybot.kernels.embedded import EmbeddedGateway
    from jupybot.kernels.part import embedded_kernel_plan
    from jupybot.sandbox import Sandbox

    kernels = options.kernels
    # The defaults but for the limits, which must let the crowd in: timeouts count from each
    # start's attempt, so the crowd needs no longer ones.
    config = replace(
        GatewayConfig(url=None, token=None),
        max_kernels=kernels + options.first_runs * 2 + 4,
        max_kernels_per_owner=1,
    )
    # One manager for the round trip and the first runs (it keeps the warm pool), another
    # without a pool for the crowd, on the same gateway.
    manager = GatewayKernelManager(reactor, replace(config, prestart=1))
    crowd = GatewayKernelManager(reactor, replace(config, prestart=0))
    gateway: EmbeddedGateway | None = None
    sandbox: Sandbox | None = None
    workdir = Path(tempfile.mkdtemp(prefix="jupybot-bench-kernels-"))
    if options.gateway_url is not None:
        url, token = options.gateway_url.rstrip("/"), options.token or ""
    else:
        sandbox = Sandbox(SandboxConfig(mode=options.sandbox))
        sandbox.prepare()
        gateway = EmbeddedGateway(
            reactor,
            workdir / "runtime",
            on_ready=lambda url, token: None,
            on_restart=lambda: None,
            record=workdir / "embedded-gateway.json",
        )
        url = await await_deferred(gateway.start(embedded_kernel_plan(sandbox, config)))
        token = gateway.token
    manager.connect(url, token)
    crowd.connect(url, token)
    figures: dict[str, Any] = {}
    try:
        # The round trip, interleaved with ZMQ's, then a bare websocket client on its kernel.
        round_trips = await interleaved_round_trips(manager, options)
        for name, samples in round_trips.items():
            figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = milliseconds(samples)
        [solo] = manager.kernels("solo")
        naive = await measure_naive_ws(url, token, solo.kernel_id, options.rounds)
        figures["naive_ws_p50_ms"], figures["naive_ws_p99_ms"] = milliseconds(naive)

        # A new room's first run: a kernel started for it, then one waiting in the pool.
        cold = [await run_ms(manager, f"cold-{n}") for n in range(options.first_runs)]
        figures["first_run_cold_ms"] = round(statistics.median(cold), 1)
        warm = []
        for n in range(options.first_runs):
            if not manager.pool.ready:
                landed = manager.pool.kernel_landed()
                manager.start_warm_pool()
                await await_deferred(landed.addTimeout(120, reactor))
            # A new room comes some time after the pool filled, not as its kernel lands (the
            # kernel and the gateway are still settling then).
            await asyncio.sleep(ROOM_ARRIVES_AFTER_SECONDS)
            warm.append(await run_ms(manager, f"warm-{n}"))
            [handle] = manager.kernels(f"warm-{n}")
            if handle.kernel_id in manager.pool.kernel_ids:
                raise BenchFailed("a pooled kernel was handed out and kept in the pool")
        figures["first_run_warm_ms"] = round(statistics.median(warm), 1)
        await await_deferred(Deferred.fromCoroutine(manager.shutdown_all()))

        # The crowd: every room's first run at once.
        owners = [f"room-{n}" for n in range(kernels)]
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(await_deferred(crowd.execute(owner, CODE, Quiet())) for owner in owners),
            return_exceptions=True,
        )
        figures["start_all_s"] = round(time.perf_counter() - started, 1)
        failures = [o for o in outcomes if isinstance(o, BaseException) or o.status != "ok"]
        figures["started_ok"] = kernels - len(failures)
        figures["kernels"] = kernels
        figures["start_concurrency"] = crowd.starts.concurrency
        for failure in failures[:5]:
            print(f"a room's first run failed: {failure!r}", file=sys.stderr)

        done = 0
        deadline = time.perf_counter() + options.seconds
        answering = [owner for owner in owners if crowd.kernels(owner)]

        async def loop(owner: str) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await run_ms(crowd, owner)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop(owner) for owner in answering))
        figures["concurrent_exec_per_s"] = round(done / (time.perf_counter() - started), 1)
    finally:
        await await_deferred(Deferred.fromCoroutine(manager.shutdown_all()))
        await await_deferred(Deferred.fromCoroutine(crowd.shutdown_all()))
        if gateway is not None:
            await await_deferred(Deferred.fromCoroutine(gateway.stop()))
        if sandbox is not None:
            sandbox.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--kernels", type=int, default=50, help="rooms starting at once")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--first-runs", type=int, default=5, help="new rooms timed cold, warm")
    parser.add_argument(
        "--sandbox",
        choices=("bubblewrap", "none"),
        default="bubblewrap",
        help="how the embedded gateway's kernels are contained (sandbox.mode)",
    )
    parser.add_argument("--gateway-url", help="measure through this gateway, not the embedded one")
    parser.add_argument("--token", help="that gateway's token")
    parser.add_argument("--prefix", default=None, help="name of the round trip figures")
    parser.add_argument(
        "--kernel-python",
        help="the Python that gateway's kernels run, if not this one: also time ZMQ to its "
        "ipykernel (zmq_same_kernel)",
    )
    parser.add_argument(
        "--enterprise-gateway",
        action="store_true",
        help="start Enterprise Gateway (the test peer, from .cache/enterprise-gateway-venv) and "
        "measure through it: eg_p50_ms",
    )
    arguments = parser.parse_args()
    if arguments.enterprise_gateway:
        from tests.peers.enterprise_gateway import EnterpriseGateway, enterprise_gateway_python

        python = enterprise_gateway_python()
        if python is None:
            print("bench.kernels failed: run `make test` once to build its venv", file=sys.stderr)
            raise SystemExit(1)
        peer = EnterpriseGateway(python, Path(tempfile.mkdtemp(prefix="jupybot-bench-eg-")))
        peer.start()
        atexit.register(peer.stop)
        arguments.gateway_url, arguments.token = peer.url, peer.token
        arguments.prefix = arguments.prefix or "eg"
        arguments.kernel_python = arguments.kernel_python or python
    options = Options(
        rounds=arguments.rounds,
        kernels=arguments.kernels,
        seconds=arguments.seconds,
        sandbox=arguments.sandbox,
        gateway_url=arguments.gateway_url,
        token=arguments.token,
        prefix=arguments.prefix or ("gateway" if arguments.gateway_url else "jupybot"),
        first_runs=arguments.first_runs,
        kernel_python=arguments.kernel_python,
    )
    figures: dict[str, Any] = {}

    install_asyncio_reactor()
    from twisted.internet import defer, task

    from bench._report import report
    from jupybot.aio import deferred_from_coroutine

    failed: list[str] = []

    async def run(_reactor: object) -> None:
        try:
            figures.update(await deferred_from_coroutine(measure_gateway(options)))
        except Exception as error:
            traceback.print_exc()
            print(f"bench.kernels failed: {type(error).__name__}: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        round_trip = figures[f"{options.prefix}_p50_ms"]
        figures[f"{options.prefix}_vs_zmq_p50"] = round(round_trip / figures["zmq_p50_ms"], 2)
        if options.kernel_python is not None:
            figures[f"{options.prefix}_vs_zmq_same_kernel_p50"] = round(
                round_trip / figures["zmq_same_kernel_p50_ms"], 2
            )
        figures["warm_vs_execute"] = round(figures["first_run_warm_ms"] / round_trip, 2)
        if figures["started_ok"] < options.kernels:
            failed.append(f"only {figures['started_ok']} of {options.kernels} rooms answered")
        for key, value in sorted(figures.items()):
            print(f"{key}: {value}")
        report(figures)
        if failed:
            print(f"bench.kernels failed: {'; '.join(failed)}", file=sys.stderr)
            raise SystemExit(1)

    task.react(lambda r: defer.ensureDeferred(run(r)))


if __name__ == "__main__":
    main()

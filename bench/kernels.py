"""Kernel round trip: execute ``1+1`` until its reply and idle status, three ways, same run.

Run: ``.venv/bin/python -m bench.kernels [--rounds N] [--kernels K]``

- ``zmq``: jupyter_client's blocking client straight to a local ipykernel over ZMQ (no gateway).
- ``naive_ws``: one plain aiohttp websocket to the gateway's channels endpoint, default socket
  options, waiting for ``execute_reply`` and ``idle`` like jupybot does.
- ``jupybot``: ``GatewayKernelManager.execute`` through jupybot's embedded Kernel Gateway.
- ``concurrent_exec_per_s``: K kernels (one owner each) executing ``1+1`` back to back for a few
  seconds, all at once.

Target: jupybot p50 <= 1.3x the ZMQ p50 measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._report import percentile
from jupybot.reactor import install_asyncio_reactor


def milliseconds(samples: list[float]) -> tuple[float, float]:
    return round(statistics.median(samples), 2), round(percentile(samples, 0.99), 2)


def measure_zmq(rounds: int) -> list[float]:
    """Before the reactor runs: jupyter_client's blocking client is synchronous."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            client.execute_interactive("1+1", output_hook=lambda message: None, timeout=30)
            samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


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
                "content": {"code": "1+1", "silent": False},
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


async def measure_gateway(rounds: int, kernels: int, seconds: float) -> dict[str, Any]:
    from dataclasses import replace

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from jupybot.aio import await_deferred
    from jupybot.config.kernels import GatewayConfig
    from jupybot.config.sandbox import SandboxConfig
    from jupybot.kernels import GatewayKernelManager
    from jupybot.kernels.embedded import EmbeddedGateway
    from jupybot.kernels.part import embedded_kernel_plan
    from jupybot.sandbox import Sandbox

    config = replace(
        GatewayConfig(url=None, token=None),
        max_kernels=kernels + 1,
        max_kernels_per_owner=1,
        request_timeout_seconds=180,  # 50 kernels starting at once on 2 cores take a while
    )
    manager = GatewayKernelManager(reactor, config)
    runtime = Path(tempfile.mkdtemp(prefix="jupybot-bench-kernels-"))
    gateway = EmbeddedGateway(reactor, runtime, on_ready=manager.connect, on_restart=lambda: None)
    # Kernels in their sandboxes, as jupybot runs them.
    sandbox = Sandbox(SandboxConfig())
    sandbox.prepare()
    url = await await_deferred(gateway.start(embedded_kernel_plan(sandbox, config)))
    figures: dict[str, Any] = {}
    try:
        listener = Quiet()
        handle = await await_deferred(manager.start("solo"))
        for _ in range(20):  # warm up both paths
            await await_deferred(manager.execute("solo", "1+1", listener))
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            await await_deferred(manager.execute("solo", "1+1", listener))
            samples.append((time.perf_counter() - started) * 1000)
        figures["jupybot_p50_ms"], figures["jupybot_p99_ms"] = milliseconds(samples)

        naive = await measure_naive_ws(url, gateway.token, handle.kernel_id, rounds)
        figures["naive_ws_p50_ms"], figures["naive_ws_p99_ms"] = milliseconds(naive)

        owners = [f"owner-{n}" for n in range(kernels)]
        started = time.perf_counter()
        await asyncio.gather(*(await_deferred(manager.start(owner)) for owner in owners))
        figures["kernels_started"] = kernels
        figures["start_all_s"] = round(time.perf_counter() - started, 1)
        done = 0
        deadline = time.perf_counter() + seconds

        async def loop(owner: str) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await await_deferred(manager.execute(owner, "1+1", listener))
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop(owner) for owner in owners))
        figures["concurrent_exec_per_s"] = round(done / (time.perf_counter() - started), 1)
    finally:
        await await_deferred(Deferred.fromCoroutine(manager.shutdown_all()))
        await await_deferred(Deferred.fromCoroutine(gateway.stop()))
        sandbox.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--kernels", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    options = parser.parse_args()

    zmq = measure_zmq(options.rounds)
    figures: dict[str, Any] = {}
    figures["zmq_p50_ms"], figures["zmq_p99_ms"] = milliseconds(zmq[20:] or zmq)

    install_asyncio_reactor()
    from twisted.internet import defer, task

    from bench._report import report
    from jupybot.aio import deferred_from_coroutine

    async def run(_reactor: object) -> None:
        figures.update(
            await deferred_from_coroutine(
                measure_gateway(options.rounds, options.kernels, options.seconds)
            )
        )
        figures["jupybot_vs_zmq_p50"] = round(figures["jupybot_p50_ms"] / figures["zmq_p50_ms"], 2)
        for key, value in sorted(figures.items()):
            print(f"{key}: {value}")
        report(figures)

    task.react(lambda r: defer.ensureDeferred(run(r)))


if __name__ == "__main__":
    main()

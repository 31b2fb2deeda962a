"""What the sandbox costs a kernel's start through the embedded gateway, same run.

Run: ``.venv/bin/python -m bench.kernel_sandbox [--rounds N]``

Three embedded gateways, started side by side; each round starts one kernel on each, in turn,
and times ``GatewayKernelManager.start`` (``POST /api/kernels``, the websocket, the
``kernel_info`` handshake: the kernel answers), then shuts it down:

- ``stock``: the gateway as jupybot ran it before containment (its own kernel manager, TCP on
  loopback, the kernel a plain child of the gateway);
- ``none``: ``sandbox.mode: none`` (jupybot's kernel manager: ipc sockets, a directory per
  kernel, prlimit; no namespaces);
- ``sandbox``: ``sandbox.mode: bubblewrap`` (setpriv, prlimit, bubblewrap, a cgroup per kernel
  where the host allows it).

Beside them, the launch chain alone: ``/bin/true`` through each sandbox's launch, as a kernel's
(``chain_none_p50_ms``, ``chain_sandbox_p50_ms``), which is what the sandbox adds to a start.

Target: ``sandbox_p50_ms - stock_p50_ms <= 150``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._report import percentile, report
from jupybot.reactor import install_asyncio_reactor

TARGET_MS = 150


def milliseconds(samples: list[float]) -> tuple[float, float]:
    return round(statistics.median(samples), 1), round(percentile(samples, 0.99), 1)


def measure_chain(sandbox: Any, rounds: int) -> list[float]:
    """``/bin/true`` launched the way a kernel is: its cgroup, setpriv, prlimit, bubblewrap."""
    from jupybot.config.kernels import GatewayConfig
    from jupybot.kernels.part import kernel_limits
    from jupybot.sandbox import SandboxProfile
    from jupybot.sandbox.kernels import interpreter_paths

    profile = SandboxProfile(
        argv=("/bin/true",),
        read_only=interpreter_paths((sys.prefix, sys.base_prefix)),
        limits=kernel_limits(GatewayConfig(url=None, token=None)),
    )
    samples = []
    for n in range(rounds + 2):
        started = time.perf_counter()
        launch = sandbox.launch(profile, name=f"kernel-bench-{n}")
        subprocess.run(launch.argv, env=launch.env, check=True)
        if n >= 2:
            samples.append((time.perf_counter() - started) * 1000)
        if launch.cgroup is not None:
            launch.cgroup.remove()
    return samples


async def measure(rounds: int) -> dict[str, Any]:
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
    from tests.peers.kernel_gateway import KernelGateway

    config = replace(GatewayConfig(url=None, token=None), max_kernels_per_owner=1)
    work = Path(tempfile.mkdtemp(prefix="jupybot-bench-kernel-sandbox-"))
    managers: dict[str, GatewayKernelManager] = {}
    gateways: list[EmbeddedGateway] = []
    sandboxes: dict[str, Sandbox] = {}

    stock = KernelGateway(work / "stock")
    stock.workdir.mkdir()
    stock.start()
    managers["stock"] = GatewayKernelManager(reactor, config)
    managers["stock"].connect(stock.url, stock.token)
    try:
        for name, mode in (("none", "none"), ("sandbox", "bubblewrap")):
            sandbox = Sandbox(SandboxConfig(mode=mode))
            sandbox.prepare()
            sandboxes[name] = sandbox
            managers[name] = GatewayKernelManager(reactor, config)
            gateway = EmbeddedGateway(
                reactor,
                work / name,
                on_ready=managers[name].connect,
                on_restart=lambda: None,
            )
            gateways.append(gateway)
            await await_deferred(gateway.start(embedded_kernel_plan(sandbox, config)))

        chains = {name: measure_chain(sandbox, rounds) for name, sandbox in sandboxes.items()}
        samples: dict[str, list[float]] = {name: [] for name in managers}
        for round_number in range(rounds + 2):
            for name, manager in managers.items():
                started = time.perf_counter()
                await await_deferred(manager.start("owner"))
                elapsed = (time.perf_counter() - started) * 1000
                if round_number >= 2:  # the first two warm the page cache and the gateways
                    samples[name].append(elapsed)
                await await_deferred(manager.stop("owner"))
    finally:
        for manager in managers.values():
            await await_deferred(Deferred.fromCoroutine(manager.shutdown_all()))
        for gateway in gateways:
            await await_deferred(Deferred.fromCoroutine(gateway.stop()))
        for sandbox in sandboxes.values():
            sandbox.close()
        stock.stop()

    figures: dict[str, Any] = {"rounds": rounds, "sandbox": sandboxes["sandbox"].describe()}
    for name, values in samples.items():
        figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = milliseconds(values)
    for name, values in chains.items():
        figures[f"chain_{name}_p50_ms"], figures[f"chain_{name}_p99_ms"] = milliseconds(values)
    figures["sandbox_minus_stock_p50_ms"] = round(
        figures["sandbox_p50_ms"] - figures["stock_p50_ms"], 1
    )
    figures["sandbox_minus_none_p50_ms"] = round(
        figures["sandbox_p50_ms"] - figures["none_p50_ms"], 1
    )
    figures["target_met"] = figures["sandbox_minus_stock_p50_ms"] <= TARGET_MS
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    options = parser.parse_args()
    install_asyncio_reactor()
    from twisted.internet import defer, task

    from jupybot.aio import deferred_from_coroutine

    async def run(_reactor: object) -> None:
        figures = await deferred_from_coroutine(measure(options.rounds))
        for key, value in sorted(figures.items()):
            print(f"{key}: {value}")
        report(figures)

    task.react(lambda r: defer.ensureDeferred(run(r)))


if __name__ == "__main__":
    main()

"""What a clone anywhere costs (issue 29): a path below a folder the sandbox user may not enter
is shown through jupybot's mount namespace (jupybot/sandbox/view.py), which a launch enters
with one ``nsenter``. Measured against the same thing in an open folder, interleaved, same run:

- ``open_ms_p50`` / ``private_open_ms_p50``: opening a terminal session of ``bc -q`` (to its
  answer to ``1+1``) whose ``files:`` is a folder anyone may enter / one below a 0700 folder;
  ``view_open_extra_ms_p50``: the difference;
- ``kernel_open_ms_p50`` / ``kernel_private_ms_p50``: a kernel's start (the POST until it
  answers ``kernel_info``) on an embedded gateway run from a virtualenv in an open folder /
  below a 0700 folder (the gateway then runs in the view; its kernels' launches do not enter
  it again); ``view_kernel_extra_ms_p50``: the difference.

Run as root (as a normal user, sandboxes run as that user and there is no view):
``.venv/bin/python -m bench.view [--sessions 100] [--kernels 20]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._report import percentile, report
from jupybot.reactor import install_asyncio_reactor


def figures_of(name: str, samples: list[float]) -> dict[str, float]:
    return {
        f"{name}_ms_p50": round(statistics.median(samples), 2),
        f"{name}_ms_p99": round(percentile(samples, 0.99), 2),
    }


def make_folders() -> tuple[Path, Path]:
    """A folder anyone may enter, and one only root may (as `mktemp -d` makes them), each
    with an open folder C{shown} in it."""
    open_folder = Path(tempfile.mkdtemp(prefix="jupybot-bench-open-"))
    open_folder.chmod(0o755)
    private = Path(tempfile.mkdtemp(prefix="jupybot-bench-private-"))  # 0700
    for folder in (open_folder, private):
        (folder / "shown").mkdir(mode=0o755)
    return open_folder, private


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import replace

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from bench.sandbox import Viewer
    from jupybot.aio import await_deferred
    from jupybot.config.kernels import GatewayConfig
    from jupybot.config.sandbox import SandboxConfig
    from jupybot.config.terminal import ProgramConfig, TerminalConfig
    from jupybot.kernels import GatewayKernelManager
    from jupybot.kernels.embedded import EmbeddedGateway
    from jupybot.kernels.part import kernel_limits
    from jupybot.sandbox import Sandbox
    from jupybot.sandbox.kernels import kernel_sandbox_plan
    from jupybot.terminal import TerminalSessions
    from tests.kernels.kernel_python import jupybot_umask, make_venv

    open_folder, private = make_folders()
    folders = {"open": open_folder / "shown", "private": private / "shown"}
    sandbox = Sandbox(SandboxConfig())
    sandbox.prepare()
    managers: dict[str, GatewayKernelManager] = {}
    gateways: list[EmbeddedGateway] = []
    figures: dict[str, Any] = {"sandbox": sandbox.describe()}
    try:
        programs = {
            name: ProgramConfig(
                name=name, title=name, description="", argv=("bc", "-q"), files=(str(folder),)
            )
            for name, folder in folders.items()
        }
        sessions = TerminalSessions(
            reactor, TerminalConfig(max_sessions_per_ip=10), programs, sandbox
        )
        opened: dict[str, list[float]] = {name: [] for name in programs}
        for n in range(args.sessions + 4):
            # Each goes first every other round: neither always follows the other's stop.
            for name in sorted(programs, reverse=n % 2 == 1):
                viewer = Viewer(b"2")
                started = time.perf_counter()
                session = sessions.open(name, 80, 24, "10.0.0.1", viewer)
                session.pty.write(b"1+1\n")
                elapsed = (await await_deferred(viewer.seen) - started) * 1000
                if n >= 4:  # the first warm the page cache (and make the view)
                    opened[name].append(elapsed)
                await await_deferred(session.stop("bench", "done"))
                await await_deferred(viewer.end)
        figures.update(figures_of("open", opened["open"]))
        figures.update(figures_of("private_open", opened["private"]))
        figures["view_open_extra_ms_p50"] = round(
            figures["private_open_ms_p50"] - figures["open_ms_p50"], 2
        )

        config = replace(GatewayConfig(url=None, token=None), max_kernels_per_owner=1, prestart=0)
        for name, folder in folders.items():
            venv = make_venv(folder / "venv")
            plan = kernel_sandbox_plan(
                sandbox,
                kernel_limits(config),
                False,
                prefixes=(str(venv), sys.prefix, sys.base_prefix),
            )
            figures[f"gateway_in_view_{name}"] = bool(plan.view)
            managers[name] = GatewayKernelManager(reactor, config)
            gateway = EmbeddedGateway(
                reactor,
                folder / "runtime",
                on_ready=managers[name].connect,
                on_restart=lambda: None,
                python=str(venv / "bin" / "python"),
            )
            gateways.append(gateway)
            with jupybot_umask():
                started_gateway = gateway.start(plan)
            await await_deferred(started_gateway)
        started_kernels: dict[str, list[float]] = {name: [] for name in managers}
        for n in range(args.kernels + 2):
            for name, manager in sorted(managers.items(), reverse=n % 2 == 1):
                started = time.perf_counter()
                await await_deferred(manager.start("owner"))
                elapsed = (time.perf_counter() - started) * 1000
                if n >= 2:
                    started_kernels[name].append(elapsed)
                await await_deferred(manager.stop("owner"))
        figures.update(figures_of("kernel_open", started_kernels["open"]))
        figures.update(figures_of("kernel_private", started_kernels["private"]))
        figures["view_kernel_extra_ms_p50"] = round(
            figures["kernel_private_ms_p50"] - figures["kernel_open_ms_p50"], 2
        )
    finally:
        for manager in managers.values():
            await await_deferred(Deferred.fromCoroutine(manager.shutdown_all()))
        for gateway in gateways:
            await await_deferred(Deferred.fromCoroutine(gateway.stop()))
        sandbox.close()
        shutil.rmtree(open_folder, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--kernels", type=int, default=20)
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: as a normal user, sandboxes run as that user (no view)")
    install_asyncio_reactor()
    from twisted.internet import defer, task

    from jupybot.aio import deferred_from_coroutine

    async def run(_reactor: object) -> None:
        figures = await deferred_from_coroutine(measure(options))
        for key, value in sorted(figures.items()):
            print(f"{key}: {value}")
        report(figures)

    task.react(lambda r: defer.ensureDeferred(run(r)))


if __name__ == "__main__":
    main()

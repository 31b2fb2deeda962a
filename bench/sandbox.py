"""What the sandbox costs a terminal session, against the same sessions without it, same run.

- ``sandbox_open_ms``: from opening a session of ``bc -q`` to its first output (bc prints its
  banner-less prompt state at once; we send ``1+1`` and wait for ``2``), p50 and p99; beside
  it ``layer1_open_ms``, the same sandbox without its second layer (no syscall filter, no uid
  of its own, bubblewrap's unbounded devpts: what the sandbox was before issue 24), and
  ``second_layer_extra_ms_p50``, what the filter, the uid and the PTY bound add;
- ``throughput``: ``head -c N /dev/zero`` through jupybot's PTY layer, sandboxed / unsandboxed;
- ``idle_kb_per_session``: the whole machine's memory (MemAvailable) per idle sandboxed ``cat``
  session, the sandbox's processes included.

python -m bench.sandbox [--sessions 200] [--idle 1000] [--megabytes 256]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from twisted.internet import asyncioreactor

from bench._report import percentile, report


def mem_available_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


class Viewer:
    def __init__(self, waiting_for: bytes = b"") -> None:
        from twisted.internet.defer import Deferred

        self.data = bytearray()
        self.total = 0
        self.waiting_for = waiting_for
        self.seen: Deferred[float] = Deferred()
        self.end: Deferred[object] = Deferred()

    def output(self, data: bytes) -> None:
        self.total += len(data)
        if self.waiting_for and not self.seen.called:
            self.data += data
            if self.waiting_for in self.data:
                self.seen.callback(time.perf_counter())

    def ended(self, status: object) -> None:
        if not self.end.called:
            self.end.callback(status)

    def stopped(self, reason: str, message: str) -> None:
        pass


async def open_times(sessions: Any, count: int) -> list[float]:
    samples = []
    for n in range(count):
        viewer = Viewer(b"2")
        started = time.perf_counter()
        session = sessions.open("bc", 80, 24, f"10.0.{n % 250}.{n // 250}", viewer)
        session.pty.write(b"1+1\n")
        samples.append((await viewer.seen - started) * 1000)
        await session.stop("bench", "done")
        await viewer.end
    return samples


async def throughput(sessions: Any, megabytes: int) -> float:
    viewer = Viewer()
    started = time.perf_counter()
    sessions.open("bulk", 80, 24, "10.1.0.1", viewer)
    await viewer.end
    return viewer.total / (time.perf_counter() - started) / 1e6


async def idle_memory(sessions: Any, count: int) -> float:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    before = mem_available_kb()
    viewers = []
    for n in range(count):
        viewer = Viewer()
        sessions.open("cat", 80, 24, f"10.2.{n % 250}.{n // 250}", viewer)
        viewers.append(viewer)
    await deferLater(reactor, 2.0, lambda: None)  # let every sandbox finish starting
    used = before - mem_available_kb()
    await sessions.close_all()
    return used / count


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet import reactor

    from jupybot.config.sandbox import SandboxConfig
    from jupybot.config.terminal import ProgramConfig, ProgramLimits, TerminalConfig
    from jupybot.sandbox import Sandbox
    from jupybot.terminal import TerminalSessions

    programs = {
        "bc": ProgramConfig(name="bc", title="bc", description="", argv=("bc", "-q")),
        "cat": ProgramConfig(name="cat", title="cat", description="", argv=("cat",)),
        "bulk": ProgramConfig(
            name="bulk",
            title="bulk",
            description="",
            argv=("head", "-c", f"{args.megabytes}M", "/dev/zero"),
            limits=ProgramLimits(cpu_seconds=600),
        ),
    }
    config = TerminalConfig(max_sessions=args.idle + 10, max_sessions_per_ip=args.idle + 10)
    figures: dict[str, Any] = {}
    sessions: dict[str, Any] = {}
    modes = {
        "none": SandboxConfig(mode="none"),
        "layer1": SandboxConfig(seccomp="none", uids="none"),
        "bubblewrap": SandboxConfig(),
    }
    for mode, sandbox_config in modes.items():
        sandbox = Sandbox(sandbox_config)
        sandbox.prepare()
        if mode == "layer1":
            sandbox._pty_tools = None  # bubblewrap's own devpts, as before the bound
        sessions[mode] = TerminalSessions(reactor, config, programs, sandbox)
        figures[f"limits_{mode}"] = sandbox.describe()
    # Interleaved rounds, so all see the same machine.
    opened: dict[str, list[float]] = {mode: [] for mode in modes}
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    rounds = 5
    for _ in range(rounds):
        for mode in modes:
            opened[mode] += await open_times(sessions[mode], args.sessions // rounds)
            rates[mode].append(await throughput(sessions[mode], args.megabytes))
    for mode, name in (("none", "unsandboxed"), ("layer1", "layer1"), ("bubblewrap", "sandbox")):
        figures[f"{name}_open_ms_p50"] = round(statistics.median(opened[mode]), 2)
        figures[f"{name}_open_ms_p99"] = round(percentile(opened[mode], 0.99), 2)
        figures[f"{name}_mb_s"] = round(statistics.median(rates[mode]), 1)
    figures["sandbox_open_extra_ms_p50"] = round(
        figures["sandbox_open_ms_p50"] - figures["unsandboxed_open_ms_p50"], 2
    )
    figures["second_layer_extra_ms_p50"] = round(
        figures["sandbox_open_ms_p50"] - figures["layer1_open_ms_p50"], 2
    )
    figures["sandbox_throughput_ratio"] = round(
        figures["sandbox_mb_s"] / figures["unsandboxed_mb_s"], 3
    )
    for mode, name in (("none", "unsandboxed"), ("bubblewrap", "sandbox")):
        figures[f"{name}_idle_kb_per_session"] = round(
            await idle_memory(sessions[mode], args.idle), 1
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--megabytes", type=int, default=256)
    args = parser.parse_args()
    asyncioreactor.install()
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    results: dict[str, Any] = {}

    def done(figures: dict[str, Any]) -> None:
        results.update(figures)
        reactor.stop()

    def failed(failure: Any) -> None:
        failure.printTraceback()
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run(args)).addCallbacks(done, failed))
    reactor.run()
    for name, value in results.items():
        print(f"{name}: {value}")
    report(results)


if __name__ == "__main__":
    main()

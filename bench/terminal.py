"""Browser terminal: throughput, keystroke echo, idle sessions, a flood and Ctrl-C, with baselines.

Run: ``.venv/bin/python -m bench.terminal [--megabytes 200] [--rounds 5] [--sessions 100]
[--idle 1000] [--only throughput|ending]``

Everything on loopback, in one run:

- ``raw_pty_mb_s``: this process reads ``head -c N /dev/zero`` from a PTY itself (the floor).
- ``pty_layer_mb_s``: jupybot's PTY layer alone on the asyncio reactor, output dropped
  (bench/_pty_layer.py): the cost of the reactor and the PTY reading, before any websocket.
- ``throughput_mb_s``: the same command through `twistd jupybot` to a websocket client that
  acknowledges as it reads (the page's protocol).
- ``terminado_mb_s``: terminado serving the same command to the same kind of client.
- ``wetty_mb_s``: wetty (Node.js, node-pty, socket.io) serving the same command to a socket.io
  client that commits what it read as wetty's page does (bench/_terminal_peers.py).
- ``forward_floor_mb_s``: socat copying the command's PTY to a TCP socket read by a plain
  client: what any server that forwards a PTY pays at least on this machine.
- All six run one after the other, ``--rounds`` times, jupybot and the forwarding floor back to
  back (in turn, one then the other first); each figure is the median, and
  ``vs_raw_pty``/``vs_pty_layer``/``vs_terminado``/``vs_wetty``/``vs_forward_floor`` are
  medians of the ratios within a round. (terminado and wetty send JSON text, so the NULs of
  ``/dev/zero`` cost them six bytes each on the wire; jupybot sends binary frames.)
- ``server_cpu_ms_per_mb``/``forward_floor_cpu_ms_per_mb``: the CPU time (user and system) the
  jupybot server and the floor's socat spend per MB forwarded, and ``cpu_vs_forward_floor``
  the median ratio within a round (lower is cheaper). Steadier than the speeds on a shared
  machine: the speeds also depend on who else runs, the CPU per MB much less.
- ``echo_p50_ms``/``echo_p99_ms``: keystroke -> echo, with ``--sessions`` interactive sessions
  each typing ten keys a second, out of step with each other (1000 keys/s for 100 sessions);
  ``echo_burst_p99_ms``: the same sessions all typing back to back at once (a stress figure).
- ``rss_kb_per_idle_session``: jupybot's RSS growth per idle session, ``--idle`` of them;
  ``end_<idle>_sessions_s``: from closing them all until the server has ended every one and
  nothing of their sandboxes runs any more;
  ``end_<idle>_sandboxes_floor_s``: the same sandboxes started without jupybot, all SIGKILLed
  at once, until reaped with their PTYs closed and cgroups removed (the kernel's share).
- ``flood_rss_growth_mb``: jupybot's RSS growth while `yes` floods a client reading 1 MB/s
  for 10 s; ``ctrl_c_ms``: Ctrl-C during that flood until the shell prompt is back, the worst
  of ``--ctrl-c-rounds`` (10) floods run right after the mass ending (``ctrl_c_ms_p50`` beside).
- ``--only ending``: the idle sessions, their ending and its floor alone (``--endings`` times,
  each figure then the median, ``end_<idle>_sessions_s_runs`` the spread), to iterate on ending.
- ``--only throughput``: the throughput rounds alone, to iterate on the data path.

Targets (issues 3 and 15): throughput >= 0.85x raw PTY and the forwarding floor, >= 1.5x the
best of terminado and wetty; echo p99 <= 5 ms; 1000 idle sessions at <= 64 KB each; flood
growth <= 16 MB; Ctrl-C <= 250 ms; ending 1000 sessions <= 1 s.

The peers (wetty from npm, socat from Debian) are installed by scripts/install-bench-peers,
which the bench runs when they are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pty
import re
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench._report import percentile, report
from bench._terminal_peers import (
    ensure_installed,
    sandbox_teardown_floor,
    through_forward_floor,
    through_wetty,
)
from tests.harness import JupybotProcess, jupybot_config, rss_kb

PROMPT = b"READY> "
KEY_INTERVAL = 0.1  # seconds between one session's keystrokes
ACK_EVERY = 64 * 1024  # bytes of output between acknowledgements, as the page sends them


def programs(megabytes: int) -> str:
    return f"""
programs:
  - {{name: bulk, argv: [sh, -c, "head -c {megabytes}M /dev/zero"]}}
  - {{name: cat, argv: [cat], limits: {{idle_seconds: 3600}}}}
  - {{name: sh, argv: [sh], env: {{PS1: "{PROMPT.decode()}"}}}}
terminal:
  max_sessions: 5000
  max_sessions_per_ip: 5000
  # A closed connection ends its session at once: the bench measures ending, not waiting.
  resume_seconds: 0
"""


# Every session of the bench comes from one address.
ONE_CLIENT_MANY_SESSIONS = "  limits: {max_connections_per_address: 10000}\n"

_CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
           aiohttp.WSMsgType.ERROR)  # fmt: skip
ENDED = re.compile(r"terminal: \w+ \(pid \d+\) (killed by|exited with)")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time process C{pid} (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _child_named(name: str) -> int | None:
    """The pid of a child of this process whose command is C{name}, if one runs."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            command, rest = stat[stat.index("(") + 1 :].rsplit(")", 1)
            if command == name and int(rest.split()[1]) == os.getpid():
                return int(entry)
    return None


async def with_child_cpu(name: str, work: Awaitable[T]) -> tuple[T, float]:
    """C{work}'s result, and the CPU seconds used meanwhile by the child C{name} it starts,
    read every 10 ms while it runs: asyncio reaps it as soon as it ends, so up to 10 ms of its
    CPU may be missed (about 1% of a 200 MB run)."""
    task = asyncio.ensure_future(work)
    pid: int | None = None
    used = 0.0
    while not task.done():
        if pid is None:
            pid = _child_named(name)
        if pid is not None:
            with suppress(OSError, ValueError):
                used = cpu_seconds(pid)
        await asyncio.wait([task], timeout=0.01)
    return task.result(), used


def bulk_on_pty(megabytes: int) -> tuple[int, int]:
    """``head -c N /dev/zero`` on a new PTY: its pid and the PTY's master side."""
    pid, master = pty.fork()
    if pid == 0:
        os.execvp("sh", ["sh", "-c", f"head -c {megabytes}M /dev/zero"])
    return pid, master


def raw_pty_mb_s(megabytes: int) -> float:
    pid, master = bulk_on_pty(megabytes)
    total = 0
    started = time.perf_counter()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        total += len(chunk)
    elapsed = time.perf_counter() - started
    os.waitpid(pid, 0)
    os.close(master)
    return round(total / elapsed / 1e6, 1)


class Terminal:
    """One raw-protocol session, as the page runs it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, program: str) -> Terminal:
        ws = await http.ws_connect(url, max_msg_size=0)
        await ws.send_str(json.dumps({"program": program, "cols": 80, "rows": 24}))
        ready = await ws.receive()
        assert ready.data[0] == 0x11, ready
        return cls(ws)

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(b"\x00" + data)

    async def ack(self, count: int) -> None:
        await self.ws.send_bytes(b"\x02" + struct.pack("!I", count))

    async def answer_pings(self) -> None:
        """Read (and drop) what comes until the socket closes: aiohttp answers a ping only
        while something reads."""
        while (await self.ws.receive()).type not in _CLOSED:
            pass

    async def output(self) -> bytes | None:
        message = await self.ws.receive()
        if message.type != aiohttp.WSMsgType.BINARY:
            return None
        if message.data[0] == 0x10:
            return bytes(message.data[1:])
        return b"" if message.data[0] == 0x11 else None


async def through_jupybot(http: aiohttp.ClientSession, url: str) -> float:
    """MB/s of the bulk program's output, counted as it arrives and acknowledged as the page
    does. Like the forwarding floor's reader, it only counts: no copy of what it read."""
    terminal = await Terminal.open(http, url, "bulk")
    total = unacked = 0
    started = time.perf_counter()
    while (message := await terminal.ws.receive()).type == aiohttp.WSMsgType.BINARY:
        if message.data[0] != 0x10:  # not OUTPUT: the program's exit
            break
        size = len(message.data) - 1
        total += size
        unacked += size
        if unacked >= ACK_EVERY:
            await terminal.ack(unacked)
            unacked = 0
    return round(total / (time.perf_counter() - started) / 1e6, 1)


async def through_pty_layer(megabytes: int) -> float:
    reader = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench._pty_layer", str(megabytes), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await reader.communicate()
    return float(out)


async def through_terminado(http: aiohttp.ClientSession, megabytes: int) -> float:
    port = 18000 + os.getpid() % 1000
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench._terminado_server",
        str(port),
        str(megabytes),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        await server.stdout.readline()  # "ready"
        async with http.ws_connect(f"ws://127.0.0.1:{port}/websocket", max_msg_size=0) as ws:
            total = 0
            started = time.perf_counter()
            async for message in ws:
                kind, *rest = json.loads(message.data)
                if kind == "stdout":
                    total += len(rest[0])
                elif kind == "disconnect":
                    break
            return round(total / (time.perf_counter() - started) / 1e6, 1)
    finally:
        server.terminate()
        await server.wait()


async def echo_latency(
    http: aiohttp.ClientSession, url: str, sessions: int, paced: bool = True
) -> list[float]:
    terminals = await asyncio.gather(*(Terminal.open(http, url, "cat") for _ in range(sessions)))
    samples: list[float] = []

    async def typist(terminal: Terminal, phase: float) -> None:
        # A person types about ten keys a second; sessions are not in step with each other.
        await asyncio.sleep(phase if paced else 0)
        for _ in range(20):
            started = time.perf_counter()
            await terminal.send(b"x")
            while not (await terminal.output() or b""):
                pass
            samples.append((time.perf_counter() - started) * 1000)
            if paced:
                await asyncio.sleep(max(0.0, KEY_INTERVAL - (time.perf_counter() - started)))

    phases = [KEY_INTERVAL * n / len(terminals) for n in range(len(terminals))]
    await asyncio.gather(*(typist(t, phase) for t, phase in zip(terminals, phases, strict=True)))
    await asyncio.gather(*(t.ws.close() for t in terminals))
    return samples


async def idle_sessions(
    http: aiohttp.ClientSession, url: str, count: int, server: JupybotProcess
) -> tuple[float, float]:
    """RSS per idle session, and the seconds from closing them all until the server has ended
    every one (program reaped, slot given back: its log line) and nothing of their sandboxes
    runs any more (as the floor counts: a sandbox's last processes may still be leaving when
    its program is reaped)."""
    before = rss_kb(server.pid)
    terminals: list[Terminal] = []
    # An idle session still answers the server's pings (as the page does): on a loaded machine
    # opening a thousand takes longer than the ping timeout, and the first ones were dropped.
    answering: list[asyncio.Task[None]] = []
    for start in range(0, count, 50):
        opened = await asyncio.gather(
            *(Terminal.open(http, url, "cat") for _ in range(min(50, count - start)))
        )
        terminals += opened
        answering += [asyncio.create_task(t.answer_pings()) for t in opened]
    grown = rss_kb(server.pid) - before
    logged = server.line_count()
    for task in answering:
        task.cancel()
    await asyncio.gather(*answering, return_exceptions=True)
    started = time.perf_counter()
    await asyncio.gather(*(t.ws.close() for t in terminals))
    await asyncio.to_thread(wait_for_lines, server, ENDED, count, logged, 120)
    await asyncio.to_thread(wait_for_sandboxes_gone, server.pid, "cat-", 120)
    return round(grown / count, 1), round(time.perf_counter() - started, 2)


def wait_for_lines(
    server: JupybotProcess, pattern: re.Pattern[str], count: int, start: int, timeout: float
) -> None:
    """Until C{count} of the server's log lines from index C{start} on match C{pattern}, each
    line read once. (The harness's wait_for_count reads every line again at each new one,
    holding the lock its reader appends under: with thousands of lines the bench took a core
    and the server blocked writing its log while its sessions ended.)"""
    deadline = time.monotonic() + timeout
    found = 0
    while True:
        logged = server.line_count()
        found += sum(1 for line in server.lines[start:logged] if pattern.search(line))
        if found >= count:
            return
        start = logged
        server.wait_for("", timeout=deadline - time.monotonic(), start=start)  # any new line


def wait_for_sandboxes_gone(server_pid: int, prefix: str, timeout: float) -> None:
    """Until the server's cgroups named C{prefix}... are all gone: a cgroup can be removed only
    once nothing runs in it, and every process of a sandbox joined its cgroup before the
    program started. Polled every 5 ms, as the floor polls its own removals. (Scanning /proc
    for the sandbox uids, as this did before, took a core of the two while the server ended
    its sessions, and waited for the sandboxes of any other jupybot running meanwhile.)"""
    parents = list(_session_cgroup_parents(server_pid))
    deadline = time.monotonic() + timeout
    while left := [group for parent in parents for group in parent.glob(f"{prefix}*")]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"sandboxes still running {timeout}s after their end: {left}")
        time.sleep(0.005)


def _session_cgroup_parents(server_pid: int) -> list[Path]:
    """Where the server at C{server_pid} makes its sessions' cgroups (jupybot.sandbox.cgroups):
    C{jupybot-PID} in each cgroup v1 hierarchy, or C{sandboxes} beside its own v2 group."""
    root = Path("/sys/fs/cgroup")
    parents = []
    for line in Path(f"/proc/{server_pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller in ("memory", "pids", "cpu"):
                parents.append(root / controller / path.lstrip("/") / f"jupybot-{server_pid}")
        if not controllers:  # v2: jupybot moved itself to <own>/supervisor
            own = Path(path.lstrip("/"))
            parents.append(root / (own.parent if own.name == "supervisor" else own) / "sandboxes")
    return [parent for parent in parents if parent.is_dir()]


async def flood_and_interrupt(
    http: aiohttp.ClientSession, url: str, pid: int
) -> tuple[float, float]:
    terminal = await Terminal.open(http, url, "sh")
    await terminal.send(b"yes\n")
    before = rss_kb(pid)
    peak = before
    deadline = time.perf_counter() + 10
    budget_start = time.perf_counter()
    read = 0
    while time.perf_counter() < deadline:
        chunk = await terminal.output() or b""
        read += len(chunk)
        # A reader that draws 1 MB/s: acknowledge no faster than that.
        ahead = read / 1e6 - (time.perf_counter() - budget_start)
        if ahead > 0:
            await asyncio.sleep(ahead)
        await terminal.ack(len(chunk))
        peak = max(peak, rss_kb(pid))
    started = time.perf_counter()
    await terminal.send(b"\x03")
    seen = b""
    while not seen.endswith(PROMPT):
        chunk = await terminal.output() or b""
        await terminal.ack(len(chunk))
        seen = (seen + chunk)[-64:]
    ctrl_c = (time.perf_counter() - started) * 1000
    await terminal.ws.close()
    return round((peak - before) / 1024, 1), round(ctrl_c, 1)


async def measure_ending(args: argparse.Namespace, server: JupybotProcess) -> dict[str, Any]:
    """The idle sessions and their ending alone, C{args.endings} times with the floor after each
    (interleaved, so both see the same machine): medians, and each run."""
    url = server.base_url.replace("http://", "ws://") + "/terminal/ws"
    runs: dict[str, list[float]] = {"rss": [], "end": [], "floor": []}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for _ in range(args.endings):
            per_session, ending = await idle_sessions(http, url, args.idle, server)
            floor = await asyncio.to_thread(sandbox_teardown_floor, args.idle)
            for name, value in (("rss", per_session), ("end", ending), ("floor", floor)):
                runs[name].append(value)
            print({name: values[-1] for name, values in runs.items()}, flush=True)
    ratios = [end / floor for end, floor in zip(runs["end"], runs["floor"], strict=True)]
    return {
        "idle_sessions": args.idle,
        "rss_kb_per_idle_session": statistics.median(runs["rss"]),
        f"end_{args.idle}_sessions_s": statistics.median(runs["end"]),
        f"end_{args.idle}_sessions_s_runs": runs["end"],
        f"end_{args.idle}_sandboxes_floor_s": statistics.median(runs["floor"]),
        f"end_{args.idle}_sandboxes_floor_s_runs": runs["floor"],
        "end_vs_floor": round(statistics.median(ratios), 2),
    }


async def measure(args: argparse.Namespace, server: JupybotProcess) -> dict[str, Any]:
    if args.only == "ending":
        return await measure_ending(args, server)
    url = server.base_url.replace("http://", "ws://") + "/terminal/ws"
    figures: dict[str, Any] = {"megabytes": args.megabytes, "rounds": args.rounds}
    # One connection per session: no pool limit.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        figures.update(await throughput(http, url, args.megabytes, args.rounds, server.pid))
        if args.only == "throughput":
            return figures
        samples = await echo_latency(http, url, args.sessions)
        figures["echo_sessions"] = args.sessions
        figures["echo_p50_ms"] = round(statistics.median(samples), 2)
        figures["echo_p99_ms"] = round(percentile(samples, 0.99), 2)
        # The same sessions all typing back to back at once: a stress figure, not a typist's.
        burst = await echo_latency(http, url, args.sessions, paced=False)
        figures["echo_burst_p99_ms"] = round(percentile(burst, 0.99), 2)
        figures["idle_sessions"] = args.idle
        per_session, ending = await idle_sessions(http, url, args.idle, server)
        figures["rss_kb_per_idle_session"] = per_session
        figures[f"end_{args.idle}_sessions_s"] = ending
        floor = await asyncio.to_thread(sandbox_teardown_floor, args.idle)
        figures[f"end_{args.idle}_sandboxes_floor_s"] = floor
        # Right after the mass ending (where one run once took 120 s), then again.
        growths, interrupts = [], []
        for _ in range(args.ctrl_c_rounds):
            growth, ctrl_c = await flood_and_interrupt(http, url, server.pid)
            growths.append(growth)
            interrupts.append(ctrl_c)
        figures["flood_rss_growth_mb"] = max(growths)
        figures["ctrl_c_ms"] = max(interrupts)
        figures["ctrl_c_ms_p50"] = round(statistics.median(interrupts), 1)
    return figures


async def throughput(
    http: aiohttp.ClientSession, url: str, megabytes: int, rounds: int, server_pid: int
) -> dict[str, float]:
    """Medians over rounds of raw PTY, the PTY layer, jupybot and its peers, one after the other
    in each round: on a shared machine their speed drifts by a third within a minute, so each
    ratio compares figures taken seconds apart."""
    runs: dict[str, list[float]] = {
        "raw_pty_mb_s": [],
        "pty_layer_mb_s": [],
        "throughput_mb_s": [],
        "terminado_mb_s": [],
        "forward_floor_mb_s": [],
        "server_cpu_ms_per_mb": [],
        "forward_floor_cpu_ms_per_mb": [],
    }
    # wetty runs a command itself only as root (otherwise it logs in over ssh, and would wait
    # for a password here): as anyone else the bench goes on without it.
    if os.geteuid() == 0:
        runs["wetty_mb_s"] = []
    else:
        print("wetty is left out: it runs a local command only as root", file=sys.stderr)

    async def run_jupybot() -> None:
        before = cpu_seconds(server_pid)
        runs["throughput_mb_s"].append(await through_jupybot(http, url))
        runs["server_cpu_ms_per_mb"].append(ms_per_mb(cpu_seconds(server_pid) - before, megabytes))

    async def run_floor() -> None:
        speed, socat_cpu = await with_child_cpu("socat", through_forward_floor(megabytes))
        runs["forward_floor_mb_s"].append(speed)
        runs["forward_floor_cpu_ms_per_mb"].append(ms_per_mb(socat_cpu, megabytes))

    for round_number in range(rounds):
        runs["raw_pty_mb_s"].append(await asyncio.to_thread(raw_pty_mb_s, megabytes))
        runs["pty_layer_mb_s"].append(await through_pty_layer(megabytes))
        # jupybot and its floor back to back, first one then the other: the machine's speed
        # drifts by a fifth between runs a minute apart (the floor alone: 72-131 MB/s).
        pair = (run_jupybot, run_floor)
        for run in pair if round_number % 2 == 0 else reversed(pair):
            await run()
        runs["terminado_mb_s"].append(await through_terminado(http, megabytes))
        if "wetty_mb_s" in runs:
            runs["wetty_mb_s"].append(await through_wetty(http, megabytes))
        print({name: values[-1] for name, values in runs.items()}, flush=True)
    ours = runs["throughput_mb_s"]
    figures = {name: round(statistics.median(values), 1) for name, values in runs.items()}
    for name, baseline in (
        ("vs_raw_pty", "raw_pty_mb_s"),
        ("vs_pty_layer", "pty_layer_mb_s"),
        ("vs_terminado", "terminado_mb_s"),
        ("vs_wetty", "wetty_mb_s"),
        ("vs_forward_floor", "forward_floor_mb_s"),
    ):
        if baseline not in runs:
            continue
        ratios = [a / b for a, b in zip(ours, runs[baseline], strict=True)]
        figures[name] = round(statistics.median(ratios), 2)
    cpu_ratios = [
        a / b
        for a, b in zip(
            runs["server_cpu_ms_per_mb"], runs["forward_floor_cpu_ms_per_mb"], strict=True
        )
        if b > 0
    ]
    if cpu_ratios:
        figures["cpu_vs_forward_floor"] = round(statistics.median(cpu_ratios), 2)
    return figures


def ms_per_mb(seconds: float, megabytes: int) -> float:
    return round(seconds * 1000 / megabytes, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds (medians)")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--ctrl-c-rounds", type=int, default=10, help="floods, Ctrl-C each")
    parser.add_argument(
        "--only",
        choices=["throughput", "ending"],
        help="measure only this part (the throughput rounds; idle sessions and ending)",
    )
    parser.add_argument("--endings", type=int, default=3, help="with --only ending: runs")
    args = parser.parse_args()
    if args.only != "ending":
        ensure_installed()
    with tempfile.TemporaryDirectory() as workdir:
        server = JupybotProcess(
            jupybot_config(Path(workdir), programs(args.megabytes), web=ONE_CLIENT_MANY_SESSIONS),
            Path(workdir),
        )
        try:
            server.wait_listening()
            server.wait_for("terminal: running")
            figures = asyncio.run(measure(args, server))
        finally:
            server.stop()
    for key, value in sorted(figures.items()):
        print(f"{key}: {value}")
    report(figures)


if __name__ == "__main__":
    main()

"""How fast a PTY can be read here, and how much a reader's own work per wake-up costs.

Run: ``.venv/bin/python -m bench.pty_floor [--megabytes 200] [--rounds 5]``

Each round reads ``head -c N /dev/zero`` from a PTY three ways, one after the other:

- ``blocking_mb_s``: blocking ``read()`` in a loop (bench/terminal.py's ``raw_pty_mb_s``);
- ``drain_mb_s``: non-blocking, epoll, then read until EAGAIN (an event loop doing nothing else);
- ``drain_work_mb_s``: the same, spending ``--work-us`` (default 20) microseconds of CPU after
  each drain, as any server must to send what it read somewhere.

On a VM whose vCPUs halt when idle, the writer, the tty flip-buffer worker and the reader hand
the data on with cross-CPU wake-ups; a reader that does any work between reads changes how
those wake-ups fall, and the speed drops by a step rather than in proportion to the work. This
is the ceiling that bench/terminal.py's ``vs_raw_pty`` meets.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import statistics
import time
from collections.abc import Callable

from bench._report import report
from bench.terminal import bulk_on_pty, raw_pty_mb_s


def drained_mb_s(megabytes: int, work_seconds: float) -> float:
    pid, master = bulk_on_pty(megabytes)
    fcntl.fcntl(master, fcntl.F_SETFL, fcntl.fcntl(master, fcntl.F_GETFL) | os.O_NONBLOCK)
    poller = select.epoll()
    poller.register(master, select.EPOLLIN)
    total = 0
    started = time.perf_counter()
    finished = False
    while not finished:
        poller.poll()
        while True:
            try:
                chunk = os.read(master, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                finished = True
                break
            total += len(chunk)
        busy_until = time.perf_counter() + work_seconds
        while time.perf_counter() < busy_until:
            pass
    elapsed = time.perf_counter() - started
    os.waitpid(pid, 0)
    poller.close()
    os.close(master)
    return round(total / elapsed / 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work-us", type=float, default=20.0)
    args = parser.parse_args()
    ways: dict[str, Callable[[], float]] = {
        "blocking_mb_s": lambda: raw_pty_mb_s(args.megabytes),
        "drain_mb_s": lambda: drained_mb_s(args.megabytes, 0.0),
        "drain_work_mb_s": lambda: drained_mb_s(args.megabytes, args.work_us / 1e6),
    }
    runs: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            runs[name].append(way())
        print({name: values[-1] for name, values in runs.items()}, flush=True)
    figures: dict[str, float] = {name: statistics.median(values) for name, values in runs.items()}
    figures["work_us"] = args.work_us
    figures["drain_work_vs_blocking"] = round(
        statistics.median(
            a / b for a, b in zip(runs["drain_work_mb_s"], runs["blocking_mb_s"], strict=True)
        ),
        2,
    )
    report(figures)


if __name__ == "__main__":
    main()

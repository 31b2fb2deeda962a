"""Subprocess peers for end-to-end tests: start, wait for a line they print, stop.

Waiting is on the event itself: a reader thread hands each output line to a condition
variable, and L{ChildProcess.wait_for} wakes on the line it wants or on its deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


class ChildProcess:
    """A child process in its own process group, its stdout and stderr read as lines."""

    def __init__(
        self,
        argv: Sequence[str],
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        """The first output line from index C{start} on that matches C{pattern}.

        Raises with the whole output when the process ends or the deadline passes first.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._changed:
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    index += 1
                    if match:
                        return match
                if self._closed:
                    raise AssertionError(
                        f"{self.name} exited ({self.process.poll()}) before printing "
                        f"{pattern!r}:\n{self.output_unlocked()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.name} did not print {pattern!r} within {timeout}s:\n"
                        f"{self.output_unlocked()}"
                    )
                self._changed.wait(remaining)

    def wait_for_count(self, pattern: str, count: int, timeout: float = 30.0) -> None:
        """Until C{count} output lines in all match C{pattern} (one per event awaited).

        Each line is matched once, outside the lock the reader appends under: a server
        logging thousands of lines is not held up by its own waiter."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        found = read = 0
        while True:
            with self._changed:
                while len(self.lines) == read and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
                new, closed = self.lines[read:], self._closed
            read += len(new)
            found += sum(1 for line in new if regex.search(line))
            if found >= count:
                return
            if closed or time.monotonic() >= deadline:
                with self._changed:
                    raise AssertionError(
                        f"{self.name} did not print {count} lines like {pattern!r} within "
                        f"{timeout}s:\n{self.output_unlocked()}"
                    )

    def output_unlocked(self) -> str:
        return "\n".join(self.lines[-200:])

    def line_count(self) -> int:
        with self._changed:
            return len(self.lines)

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL to the whole group if it does not exit in time."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        self._reader.join(timeout)
        return self.process.returncode

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(15)


class JupybotProcess(ChildProcess):
    """`twistd -n jupybot` from this checkout's venv, with a config written to a temp folder."""

    def __init__(
        self,
        config_text: str,
        workdir: Path,
        extra_env: Mapping[str, str] | None = None,
        twistd_args: Sequence[str] = (),
    ) -> None:
        config_path = workdir / "config.yml"
        config_path.write_text(config_text)
        env = dict(os.environ)
        env.update(extra_env or {})
        argv = [
            str(VENV_BIN / "twistd"),
            "-n",
            "--pidfile=",
            *twistd_args,
            "jupybot",
            "--config",
            str(config_path),
        ]
        super().__init__(argv, name="jupybot", env=env, cwd=workdir)
        self.base_url = ""

    def wait_listening(self, timeout: float = 30.0) -> str:
        match = self.wait_for(r"web: listening on (http://[^/\s]+)/", timeout)
        self.base_url = match.group(1)
        return self.base_url


def jupybot_config(workdir: Path, extra: str = "", web: str = "") -> str:
    """A minimal config for tests: an ephemeral loopback port and a private state directory.
    C{web} holds more keys of the web section, each line indented by two spaces."""
    return (
        "web:\n"
        "  listen: 'tcp:0:interface=127.0.0.1'\n" + web + "storage:\n"
        f"  path: '{workdir / 'var'}'\n"
        "shutdown:\n"
        "  timeout_seconds: 5\n" + extra
    )


def rss_kb(pid: int) -> int:
    """The resident memory of process C{pid}, in KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"process {pid} has no VmRSS")


def descendants(pid: int) -> list[int]:
    """Every process whose ancestry leads to C{pid} (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return found


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (a peer is told to take it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

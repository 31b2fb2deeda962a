"""Per-session cgroups: memory, process count and CPU limits that hold for one session however
many processes it starts, under whichever user id.

jupybot creates its groups below its own cgroup (read from ``/proc/self/cgroup``), so they nest
under whatever limits its service manager gives it:
- cgroup v1 (this project's VM: ``memory``, ``pids`` and ``cpu`` hierarchies writable by root):
  ``<own>/jupybot-<pid>/<session>`` in each of the three hierarchies;
- cgroup v2 delegated to the service (a systemd unit with ``Delegate=yes``): jupybot moves its
  own process to ``<own>/supervisor`` (v2 allows processes only in leaves), enables the three
  controllers on ``<own>`` and puts each session in ``<own>/session-<id>``.
A process joins its group before it starts the program (see L{SessionCgroup.procs_files}), so
nothing it forks can be outside.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from twisted.logger import Logger

log = Logger()

MEGABYTE = 1024 * 1024
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "pids", "cpu")


@dataclass(frozen=True)
class CgroupLimits:
    memory_mb: int
    processes: int
    cpu_percent: int


class SessionCgroup:
    """One session's groups: join by writing a pid to each of L{procs_files}; L{remove} after."""

    def __init__(self, directories: list[Path]) -> None:
        self.directories = directories

    @property
    def procs_files(self) -> list[str]:
        return [str(directory / "cgroup.procs") for directory in self.directories]

    def kill_all(self) -> None:
        """SIGKILL whatever still runs in the group (a sandbox outliving its session). Every
        process joined all of the session's groups, so one of them lists them all (reading a
        cgroup file costs about 0.1 ms: this runs once per session that ends)."""
        for directory in self.directories[:1]:
            for pid in _read_pids(directory / "cgroup.procs"):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        """Remove the groups; False while a process is still leaving (try again shortly)."""
        removed = True
        for directory in self.directories:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.EBUSY:
                    log.warn(
                        "sandbox: cannot remove cgroup {path}: {error}", path=directory, error=e
                    )
                removed = False
        return removed


class Cgroups:
    """Where session groups are made, and how their limits are written."""

    version: int

    def __init__(self, version: int, parents: Mapping[str, Path]) -> None:
        self.version = version
        # v1: controller -> the directory sessions are created in; v2: {"unified": ...}.
        self._parents = dict(parents)

    @property
    def parents(self) -> dict[str, Path]:
        """Where groups are made: controller (v1) or ``unified`` (v2) -> directory. The embedded
        gateway makes its kernels' groups there too (L{jupybot.sandbox.kernels})."""
        return dict(self._parents)

    def describe(self) -> str:
        where = ", ".join(str(p) for p in self._parents.values())
        return f"cgroup v{self.version} ({where})"

    def create(self, name: str, limits: CgroupLimits) -> SessionCgroup:
        directories = []
        try:
            for controller, parent in self._parents.items():
                directory = parent / (name if self.version == 1 else f"session-{name}")
                directory.mkdir(mode=0o755)
                directories.append(directory)
                self._write_limits(controller, directory, limits)
        except OSError:
            SessionCgroup(directories).remove()
            raise
        return SessionCgroup(directories)

    def _write_limits(self, controller: str, directory: Path, limits: CgroupLimits) -> None:
        memory = str(limits.memory_mb * MEGABYTE)
        quota = limits.cpu_percent * CPU_PERIOD_US // 100
        if controller == "memory":
            _write(directory / "memory.limit_in_bytes", memory)
            _write_if_present(directory / "memory.memsw.limit_in_bytes", memory)
        elif controller == "pids":
            _write(directory / "pids.max", str(limits.processes))
        elif controller == "cpu":
            _write(directory / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(directory / "cpu.cfs_quota_us", str(quota))
        else:
            _write(directory / "memory.max", memory)
            _write_if_present(directory / "memory.swap.max", "0")
            _write(directory / "pids.max", str(limits.processes))
            _write(directory / "cpu.max", f"{quota} {CPU_PERIOD_US}")

    def close(self) -> None:
        """Remove the session parents jupybot made (v1), once every session is gone."""
        if self.version == 1:
            for parent in self._parents.values():
                with suppress(OSError):
                    parent.rmdir()


def find_cgroups(
    pid: int | None = None, root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc")
) -> Cgroups | str:
    """The cgroups jupybot may use, or why none (a sentence for the start-up log)."""
    pid = os.getpid() if pid is None else pid
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError as e:
        return f"cannot read /proc/self/cgroup ({e.strerror})"
    own: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else ["unified"]:
            own[controller] = path
    if all((root / c / "tasks").exists() for c in V1_CONTROLLERS) and all(
        c in own for c in V1_CONTROLLERS
    ):
        return _v1(pid, root, own)
    if (root / "cgroup.controllers").exists() and "unified" in own:
        return _v2(root / own["unified"].lstrip("/"))
    return "no cgroup v1 memory, pids and cpu hierarchies and no cgroup v2 here"


def _v1(pid: int, root: Path, own: Mapping[str, str]) -> Cgroups | str:
    _sweep_v1(root, own)
    parents = {}
    for controller in V1_CONTROLLERS:
        parent = root / controller / own[controller].lstrip("/") / f"jupybot-{pid}"
        try:
            parent.mkdir(mode=0o755, exist_ok=True)
        except OSError as e:
            return f"cannot create {parent} ({e.strerror})"
        parents[controller] = parent
    return Cgroups(1, parents)


def _sweep_v1(root: Path, own: Mapping[str, str]) -> None:
    """Remove what a jupybot killed with SIGKILL left: its groups, and any process still in them."""
    for controller in V1_CONTROLLERS:
        base = root / controller / own[controller].lstrip("/")
        for parent in base.glob("jupybot-*"):
            owner = parent.name.removeprefix("jupybot-")
            if owner.isdigit() and Path(f"/proc/{owner}").exists():
                continue
            try:
                sessions = [d for d in parent.iterdir() if d.is_dir()]
            except OSError:
                continue  # another user's jupybot left it: not ours to sweep
            group = SessionCgroup(sessions)
            group.kill_all()
            group.remove()
            with suppress(OSError):
                parent.rmdir()


def _v2(own: Path) -> Cgroups | str:
    wanted = {"memory", "pids", "cpu"}
    try:
        available = set((own / "cgroup.controllers").read_text().split())
    except OSError as e:
        return f"cannot read {own}/cgroup.controllers ({e.strerror})"
    if not wanted <= available:
        missing = ", ".join(sorted(wanted - available))
        return f"cgroup v2 at {own} does not offer {missing} (delegate them: Delegate=yes)"
    try:
        pids = _read_pids(own / "cgroup.procs")
        if pids:
            supervisor = own / "supervisor"
            supervisor.mkdir(mode=0o755, exist_ok=True)
            for pid in pids:
                with suppress(ProcessLookupError):
                    _write(supervisor / "cgroup.procs", str(pid))
        enabled = set((own / "cgroup.subtree_control").read_text().split())
        if not wanted <= enabled:
            _write(own / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(wanted)))
    except OSError as e:
        return f"cgroup v2 at {own} is not delegated to jupybot ({e.strerror})"
    for stale in own.glob("session-*"):
        group = SessionCgroup([stale])
        group.kill_all()
        group.remove()
    return Cgroups(2, {"unified": own})


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


def _write_if_present(path: Path, value: str) -> None:
    with suppress(FileNotFoundError, PermissionError):
        if path.exists():
            _write(path, value)

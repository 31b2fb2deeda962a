"""Per-session cgroups: memory, process count and CPU limits that hold for one session however
many processes it starts, under whichever user id.

jupybot creates its groups below its own cgroup (read from ``/proc/self/cgroup``), so they nest
under whatever limits its service manager gives it:
- cgroup v1 (this project's VM: ``memory``, ``pids`` and ``cpu`` hierarchies writable by root):
  ``<own>/jupybot-<pid>/<session>`` in each of the three hierarchies;
- cgroup v2 delegated to the service (a systemd unit with ``Delegate=yes``): jupybot moves its
  own process to ``<own>/supervisor`` (v2 allows processes only in leaves), enables the three
  controllers on ``<own>`` and ``<own>/sandboxes`` and puts each session in
  ``<own>/sandboxes/session-<id>``.
A process joins its group before it starts the program (see L{SessionCgroup.procs_files}), so
nothing it forks can be outside.

The parent of all sessions (``jupybot-<pid>``, ``sandboxes``) holds the total budget
(L{Cgroups.limit_total}): whatever the sessions and kernels ask for each, together they cannot
take more memory or processes than that. The embedded gateway, which runs as a user of its
own, gets a group below it of its own (L{Cgroups.delegate}: ``kernels``) where it makes its
kernels' groups; it cannot change the limits of the groups above.
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
# v2: the group below jupybot's own that holds every session (and the budget of them all).
V2_SANDBOXES = "sandboxes"
# What a delegated group's owner must own to make groups in it and move its processes there.
V1_DELEGATED = ("cgroup.procs", "tasks")
V2_DELEGATED = ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads")


# The default total budget: this share of the host's memory, and this many processes.
TOTAL_MEMORY_SHARE = 0.75
TOTAL_PROCESSES = 4096
# What a host without cgroups (rlimits only) does not stop, for the start-up log and /ping.
RLIMITS_ONLY_GAPS = (
    "NOT stopped without cgroups: all sandboxes together taking the host's memory (no total "
    "budget), one sandbox holding more than its memory limit in several processes (the "
    "limit is per process), a fork bomb in one sandbox keeping the others from starting (the "
    "process count is shared by every sandbox of the user); see docs/deploy.md, Delegate=yes"
)


@dataclass(frozen=True)
class TotalLimits:
    """The budget of all sandboxes together."""

    memory_mb: int
    processes: int

    @classmethod
    def configured(cls, memory_mb: int, processes: int) -> TotalLimits:
        """The configured budget; 0 for the default (L{TOTAL_MEMORY_SHARE} of the host's
        memory, L{TOTAL_PROCESSES})."""
        return cls(memory_mb or _host_memory_mb(TOTAL_MEMORY_SHARE), processes or TOTAL_PROCESSES)


def _host_memory_mb(share: float) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(int(line.split()[1]) * share) // 1024
    except (OSError, ValueError):
        pass
    return 4096


@dataclass(frozen=True)
class CgroupLimits:
    memory_mb: int
    processes: int
    cpu_percent: int


class SessionCgroup:
    """One session's groups: a process joins them by writing 0 (itself) to each of
    L{join_files}; L{procs_files} list who is in them; L{remove} after."""

    def __init__(self, directories: list[Path], version: int = 1) -> None:
        self.directories = directories
        self.version = version
        # Those gone already (L{kill_all} removes an empty group).
        self._removed: set[Path] = set()

    @property
    def procs_files(self) -> list[str]:
        return [str(directory / "cgroup.procs") for directory in self.directories]

    @property
    def join_files(self) -> list[str]:
        """Where a single-threaded process (the launch's first sh) writes 0 to move itself in.
        On v1 that is C{tasks}: moving one thread, the writer itself, takes no global lock,
        where a write to C{cgroup.procs} (a whole thread group) takes the cgroup threadgroup
        semaphore for writing and waits for an RCU grace period: three of them cost 9 ms of a
        launch here (p50 of 40, a loaded 2-core VM), three writes to C{tasks} nothing
        measurable. v2 has no such file for a domain group (C{cgroup.threads} is for threaded
        groups only)."""
        name = "tasks" if self.version == 1 else "cgroup.procs"
        return [str(directory / name) for directory in self.directories]

    def kill_all(self) -> bool:
        """SIGKILL whatever still runs in the group (a sandbox outliving its session); True if
        nothing did and the groups are gone. Tried first by removing the groups: an empty one
        (as nearly always when a session ends) is gone at once, and only a group still holding
        processes is read (opening a cgroup file cost as much as the three rmdirs, and this runs
        for every session that ends). Every process joined all of the session's groups, so one
        of them lists them all."""
        if self._remove(quiet=True):
            return True
        for directory in self._left()[:1]:
            for pid in _read_pids(directory / "cgroup.procs"):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return False

    def remove(self, quiet: bool = False) -> bool:
        """Remove the groups; False while a process is still leaving (try again shortly).
        Unless C{quiet}, a group that cannot be removed for another reason is logged."""
        return self._remove(quiet)

    def _left(self) -> list[Path]:
        return [directory for directory in self.directories if directory not in self._removed]

    def _remove(self, quiet: bool) -> bool:
        removed = True
        for directory in self._left():
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.EBUSY and not quiet:
                    log.warn(
                        "sandbox: cannot remove cgroup {path}: {error}", path=directory, error=e
                    )
                removed = False
                continue
            self._removed.add(directory)
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
        total = self.total()
        budget = (
            f"; all sandboxes within {total.memory_mb} MB and {total.processes} processes"
            if total is not None
            else "; NO total budget for all sandboxes"
        )
        return f"cgroup v{self.version} ({where}){budget}"

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
        return SessionCgroup(directories, self.version)

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

    def limit_total(self, limits: TotalLimits) -> None:
        """Cap the parents: every session and kernel below shares this memory and this count
        of processes (v1 counts children in their parent's usage: memory.use_hierarchy)."""
        for path, value in self._total_files(limits).items():
            _write(path, value)

    def total(self) -> TotalLimits | None:
        """The total budget as the parents' files say (None: unreadable or not limited)."""
        try:
            memory, processes = (int(p.read_text()) for p in self._total_files(None))
        except (OSError, ValueError):
            return None
        return TotalLimits(memory // MEGABYTE, processes)

    def _total_files(self, limits: TotalLimits | None) -> dict[Path, str]:
        memory = str(limits.memory_mb * MEGABYTE) if limits else ""
        processes = str(limits.processes) if limits else ""
        if self.version == 2:
            parent = self._parents["unified"]
            return {parent / "memory.max": memory, parent / "pids.max": processes}
        return {
            self._parents["memory"] / "memory.limit_in_bytes": memory,
            self._parents["pids"] / "pids.max": processes,
        }

    def delegate(self, name: str, uid: int, gid: int) -> Cgroups:
        """A group C{name} below each parent that C{uid} owns, to make groups of its own in and
        move its processes to (a unit with Delegate=yes is what systemd gives a service the
        same way); its limits files stay ours. The groups it makes are below the total budget."""
        files = V1_DELEGATED if self.version == 1 else V2_DELEGATED
        parents = {}
        for controller, parent in self._parents.items():
            # Whatever the umask (jupybot's is 077): its owner must pass through the parent.
            parent.chmod(0o711)
            directory = parent / name
            directory.mkdir(mode=0o755, exist_ok=True)
            if self.version == 2:
                _enable_controllers(directory)
            for path in (directory, *(directory / f for f in files)):
                with suppress(FileNotFoundError):
                    os.chown(path, uid, gid)
            parents[controller] = directory
        return Cgroups(self.version, parents)

    def remove_all(self) -> None:
        """Kill what runs in the parents and every group below them, and remove them all (a
        delegated group, once its owner is gone)."""
        groups = [g for parent in self._parents.values() for g in _below(parent)]
        for directory in groups:
            SessionCgroup([directory]).kill_all()
        SessionCgroup(groups).remove()

    def close(self) -> None:
        """Remove the session parents jupybot made (v1), once every session is gone."""
        if self.version == 1:
            for parent in self._parents.values():
                with suppress(OSError):
                    parent.rmdir()


def find_cgroups(
    pid: int | None = None,
    root: Path = Path("/sys/fs/cgroup"),
    proc: Path = Path("/proc"),
    total: TotalLimits | None = None,
) -> Cgroups | str:
    """The cgroups jupybot may use, with C{total} the budget of all sessions together, or why
    none (a sentence for the start-up log)."""
    found = _find_cgroups(pid, root, proc)
    if isinstance(found, Cgroups) and total is not None:
        try:
            found.limit_total(total)
        except OSError as e:
            log.warn("sandbox: cannot set the total budget of all sandboxes ({error})", error=e)
    return found


def _find_cgroups(pid: int | None, root: Path, proc: Path) -> Cgroups | str:
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
                groups = _below(parent)
            except OSError:
                continue  # another user's jupybot left it: not ours to sweep
            for directory in groups:
                SessionCgroup([directory]).kill_all()
            SessionCgroup(groups).remove()


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
        _enable_controllers(own)
        sandboxes = own / V2_SANDBOXES
        sandboxes.mkdir(mode=0o755, exist_ok=True)
        _enable_controllers(sandboxes)
    except OSError as e:
        return f"cgroup v2 at {own} is not delegated to jupybot ({e.strerror})"
    # What a jupybot killed with SIGKILL left (and the sessions of one before 'sandboxes').
    stale = [g for g in own.glob("session-*")] + [
        g for child in sandboxes.iterdir() if child.is_dir() for g in _below(child)
    ]
    for directory in stale:
        SessionCgroup([directory]).kill_all()
    SessionCgroup(stale).remove()
    return Cgroups(2, {"unified": sandboxes})


def _enable_controllers(group: Path) -> None:
    wanted = {"memory", "pids", "cpu"}
    enabled = set((group / "cgroup.subtree_control").read_text().split())
    if not wanted <= enabled:
        _write(group / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(wanted)))


def _below(group: Path) -> list[Path]:
    """C{group} and every group below it, deepest first (the order they can be removed in)."""
    if not group.is_dir():
        return []
    found = [group]
    for directory in found:  # grows while walking: breadth first
        found.extend(d for d in directory.iterdir() if d.is_dir())
    return found[::-1]


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

"""Host uids of their own for sandboxes (``sandbox.uids``), when jupybot runs as root.

Every process of one host uid shares what the kernel counts per user: inotify instances and
watches, pending signals, pipe buffers, message-queue bytes, processes (where there are no
cgroups), keys. With one uid for every sandbox (``sandbox.user``), one session can use them up
for all. Given a range no one else uses, each terminal session runs as a uid (and a gid of the
same number) of its own for its lifetime: L{UidPool} leases one per sandbox and takes it back
only once nothing of that sandbox runs (its cgroup removed, or its process reaped where there
are none), and hands out the longest-free first, so that a uid comes back as late as it can.

A leased uid is also locked host-wide (an flock on a file named after it in L{LOCKS}, held
while the sandbox lives): two jupybots given the same range, or two sandboxes of one process,
never run sessions as the same uid, and a uid of the range that a running process has is
someone else's only if no jupybot holds its lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

__all__ = ["LOCKS", "UidPool", "uid_range_problem", "uids_in_use"]

LOCKS = Path("/run/jupybot-sandbox-uids")


def uid_range_problem(
    ids: range, etc: Path = Path("/etc"), maps: Path = Path("/proc/self")
) -> str | None:
    """Why C{ids} are not free for sandboxes, or None: a user or group of C{etc} with one of
    them, a subordinate range (rootless containers) overlapping them, or ids this user
    namespace does not map (jupybot in a container with a range of its own) and so cannot
    switch to."""
    for name in ("uid_map", "gid_map"):
        mapped = [line.split() for line in _lines(maps / name)]
        inside = [range(int(r[0]), int(r[0]) + int(r[2])) for r in mapped if len(r) == 3]
        for end in (ids.start, ids.stop - 1):
            if inside and not any(end in r for r in inside):
                return f"id {end} is not mapped in this user namespace ({name}: {mapped})"
    for name in ("passwd", "group"):
        for line in _lines(etc / name):
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit() and int(fields[2]) in ids:
                return f"{name[:-1] if name == 'group' else 'user'} {fields[0]} has id {fields[2]}"
    for name in ("subuid", "subgid"):
        for line in _lines(etc / name):
            owner, _, rest = line.partition(":")
            start, _, count = rest.partition(":")
            if start.isdigit() and count.isdigit():
                theirs = range(int(start), int(start) + int(count))
                if theirs.start < ids.stop and ids.start < theirs.stop:
                    return f"/etc/{name} gives {owner} ids {theirs.start}-{theirs.stop - 1}"
    return None


def uids_in_use(
    ids: range, leased_elsewhere: Callable[[int], bool], proc: Path = Path("/proc")
) -> dict[int, str]:
    """The ids of C{ids} that a running process has, but no sandbox of a jupybot holds
    (L{UidPool.leased_elsewhere}), each with the process that has it. They are left out of the
    pool: someone else's, or the last of a sandbox that is still going away. A zombie runs
    nothing and holds nothing of its uid's: bubblewrap exits before its PID namespace's init
    is reaped, and the host's init reaps it when it gets to it (on this project's VM, 886 of a
    thousand sandboxes' inits were zombies just after their end: the next start left them out)."""
    found: dict[int, str] = {}
    for status in proc.glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue  # gone meanwhile
        if "\nState:\tZ" in text:
            continue
        for line in text.splitlines():
            if not line.startswith(("Uid:", "Gid:")):
                continue
            for value in {int(value) for value in line.split()[1:]}:
                if value in ids and value not in found and not leased_elsewhere(value):
                    found[value] = f"process {status.parent.name}"
    return found


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    except OSError:
        return []


class UidPool:
    """The uids of C{ids}, each leased to one sandbox at a time."""

    def __init__(self, ids: range, locks: Path = LOCKS) -> None:
        self.ids = ids
        self._locks = locks
        locks.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._free: deque[int] = deque(ids)
        self.left_out: dict[int, str] = {}
        # Leased uid -> its lock file, open and locked.
        self._leased: dict[int, int] = {}

    def lease(self) -> int:
        """A uid no running sandbox has; OSError(EAGAIN) if every one is leased."""
        for _ in range(len(self._free)):
            uid = self._free.popleft()
            lock = self._lock(uid)
            if lock is None:
                self._free.append(uid)  # another jupybot's, for now
                continue
            self._leased[uid] = lock
            return uid
        raise OSError(errno.EAGAIN, f"every sandbox uid of {self.describe()} is in use")

    def leave_out(self, taken: dict[int, str]) -> None:
        """Never lease the uids of C{taken} (L{uids_in_use})."""
        self.left_out.update(taken)
        self._free = deque(uid for uid in self._free if uid not in self.left_out)

    def release(self, uid: int) -> None:
        """Take C{uid} back: nothing of its sandbox runs any more. Idempotent."""
        lock = self._leased.pop(uid, None)
        if lock is not None:
            os.close(lock)
            self._free.append(uid)

    def leased_elsewhere(self, uid: int) -> bool:
        """Whether another pool (of this jupybot or another) holds C{uid}'s lock."""
        if uid in self._leased:
            return False
        lock = self._lock(uid)
        if lock is None:
            return True
        os.close(lock)
        return False

    def close(self) -> None:
        for uid in list(self._leased):
            self.release(uid)

    def _lock(self, uid: int) -> int | None:
        fd = os.open(self._locks / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @property
    def leased(self) -> int:
        return len(self._leased)

    def describe(self) -> str:
        text = f"{self.ids.start}-{self.ids.stop - 1}"
        if self.left_out:
            text += f" ({len(self.left_out)} left out: running processes have them)"
        return text

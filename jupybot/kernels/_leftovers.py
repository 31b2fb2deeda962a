"""The embedded gateway's record under `storage.path`, and killing what a SIGKILLed jupybot left.

A pid alone could name another process by the next start (pids are recycled), so the record
also holds the process's start time (in clock ticks after boot, /proc/<pid>/stat field 22):
only a process with both is killed, with everything below it (kernels outside a sandbox are
the gateway's children and would survive it).
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GatewayRecord", "any_alive", "kill_tree", "read_record", "write_record"]


@dataclass(frozen=True)
class GatewayRecord:
    pid: int
    start_time: int
    work: str


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (field 3 on), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def write_record(path: Path, pid: int, work: Path) -> None:
    started = start_time(pid)
    if started is None:  # already gone
        return
    record = {"pid": pid, "start_time": started, "work": str(work)}
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(json.dumps(record))
    temporary.replace(path)


def read_record(path: Path) -> GatewayRecord | None:
    """The recorded gateway, or None without a (readable) record."""
    try:
        data = json.loads(path.read_text())
        return GatewayRecord(int(data["pid"]), int(data["start_time"]), str(data["work"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def kill_tree(record: GatewayRecord) -> list[int]:
    """SIGKILL the recorded process, if it is still that process, and every process below it;
    the pids killed (the gateway first), or [] if it was gone."""
    if record.pid <= 1 or start_time(record.pid) != record.start_time:
        return []
    children = _children()
    tree = [record.pid]
    for pid in tree:  # grows while walking: breadth first
        tree.extend(children.get(pid, []))
    for pid in tree:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return tree


def any_alive(pids: list[int]) -> bool:
    """Is any of C{pids} still running (a zombie waiting for its parent to reap it is not)?"""
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None and fields[0] != "Z":
            return True
    return False

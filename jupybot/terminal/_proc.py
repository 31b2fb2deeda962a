"""What /proc says about a session's processes: who belongs to it, and is it waiting for input."""

from __future__ import annotations

import os
from collections.abc import Iterator

# x86-64 and arm64 system call numbers of the calls a program blocks in while it waits for the
# terminal: read (of the terminal itself), and the readiness calls readline and curses use.
_READ = {"x86_64": 0, "aarch64": 63}
_WAITING_SYSCALLS = {
    "x86_64": {7, 23, 232, 270, 271, 281},  # poll select epoll_wait pselect6 ppoll epoll_pwait
    "aarch64": {72, 73, 22},  # pselect6 ppoll epoll_pwait
}
_MACHINE = os.uname().machine
# /dev/tty: a program that opens it (getpass, ssh, less) reads its controlling terminal through it.
_CONTROLLING_TTY = os.makedev(5, 0)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _all_pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def session_members(session_id: int) -> list[int]:
    """Every live process of the session C{session_id} (what a program spawned, even daemons)."""
    members = []
    for pid in _all_pids():
        fields = _stat_fields(pid)
        # fields: state ppid pgrp session ...
        # Zombies are left to their parent to reap; there is nothing to kill.
        if (
            fields is not None
            and len(fields) > 3
            and int(fields[3]) == session_id
            and fields[0] != "Z"
        ):
            members.append(pid)
    return members


def descendants(pid: int) -> list[int]:
    """Every live process below C{pid} in the process tree."""
    children: dict[int, list[int]] = {}
    for candidate in _all_pids():
        fields = _stat_fields(candidate)
        if fields is not None and len(fields) > 1 and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(candidate)
    found: list[int] = []
    frontier = [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found.extend(below)
        frontier.extend(below)
    return found


def _children(pid: int) -> list[int] | None:
    """The children of C{pid}, from /proc/PID/task/*/children (None where the kernel lacks it)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found.extend(int(child) for child in f.read().split())
    except FileNotFoundError:
        # The process is gone (no children), or this kernel has no children files (None).
        return None if os.path.exists(f"/proc/{pid}") else found
    except OSError:
        return found
    return found


def _tree(leader: int) -> list[int] | None:
    """C{leader} and every process below it, or None where /proc cannot tell children."""
    tree, frontier = [leader], [leader]
    while frontier:
        below = _children(frontier.pop())
        if below is None:
            return None
        tree.extend(below)
        frontier.extend(below)
    return tree


def group_members(pgrp: int, leader: int | None = None) -> list[int]:
    """The processes of process group C{pgrp}; with the session C{leader}, only its process
    tree is read (cheap with a thousand sessions), else every process."""
    candidates = _tree(leader) if leader is not None else None
    members = []
    for pid in candidates if candidates is not None else _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and len(fields) > 2 and int(fields[2]) == pgrp:
            members.append(pid)
    return members


def is_waiting_for_input(pgrp: int, tty: str, leader: int | None = None) -> bool:
    """True when every process of the terminal's foreground group sleeps, one of them in a call
    that waits for the terminal (read, select, poll...): the program wants input."""
    pids = group_members(pgrp, leader)
    if not pids:
        return False
    try:
        terminal = os.stat(tty).st_rdev
    except OSError:
        return False
    waiting = False
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        state = fields[0]
        if state in ("R", "D"):
            return False
        if state == "S" and _blocked_on_input(pid, terminal):
            waiting = True
    return waiting


def _blocked_on_input(pid: int, terminal: int) -> bool:
    """Is C{pid} asleep waiting for the terminal whose device number is C{terminal}?"""
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as f:
            call = f.read().split()
    except OSError:
        call = []  # not allowed to look (ptrace rules): the kernel function waiting tells
    if call and call[0].isdigit():
        number = int(call[0])
        if number == _READ.get(_MACHINE):
            # A read of a file or pipe (a program still starting) is not a wait for input. The
            # terminal is told by its device number: a sandboxed program's paths are its own.
            try:
                device = os.stat(f"/proc/{pid}/fd/{int(call[1], 16)}").st_rdev
            except (OSError, IndexError, ValueError):
                return False
            return device in (terminal, _CONTROLLING_TTY)
        return number in _WAITING_SYSCALLS.get(_MACHINE, set())
    try:
        with open(f"/proc/{pid}/wchan", encoding="ascii") as f:
            return f.read().strip() == "n_tty_read"
    except OSError:
        return False

"""What /proc says about a session's processes: who belongs to it, and is it waiting for input."""

from __future__ import annotations

import os
from collections.abc import Iterator

# x86-64 and arm64 system call numbers of the calls a program blocks in while it waits for the
# terminal: read (of the terminal itself), and the readiness calls readline, curses and event
# loops use, each with where its timeout is: (argument index, kind). A call whose timeout is
# set will return by itself (a Node timer, Python's select with a timeout): the program is not
# waiting for input, but for time to pass.
_READ = {"x86_64": 0, "aarch64": 63}
_MILLISECONDS = "ms"  # an int: negative waits for ever
_POINTER = "ptr"  # a pointer to a timeval or timespec: NULL waits for ever
_WAITING_SYSCALLS: dict[str, dict[int, tuple[int, str]]] = {
    "x86_64": {
        7: (2, _MILLISECONDS),  # poll(fds, nfds, timeout)
        23: (4, _POINTER),  # select(nfds, r, w, e, timeout)
        232: (3, _MILLISECONDS),  # epoll_wait(epfd, events, max, timeout)
        270: (4, _POINTER),  # pselect6(nfds, r, w, e, timeout, sigmask)
        271: (2, _POINTER),  # ppoll(fds, nfds, timeout, sigmask)
        281: (3, _MILLISECONDS),  # epoll_pwait(epfd, events, max, timeout, sigmask)
        441: (3, _POINTER),  # epoll_pwait2(epfd, events, max, timeout, sigmask)
    },
    "aarch64": {
        72: (4, _POINTER),  # pselect6
        73: (2, _POINTER),  # ppoll
        22: (3, _MILLISECONDS),  # epoll_pwait
        441: (3, _POINTER),  # epoll_pwait2
    },
}
_MACHINE = os.uname().machine
# /dev/tty: a program that opens it (getpass, ssh, less) reads its controlling terminal through it.
_CONTROLLING_TTY = os.makedev(5, 0)


def _stat_fields(pid: int, task: str = "") -> list[str] | None:
    """The fields of /proc/PID/stat (or of one of its threads, C{task} "task/TID") after the
    command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/{task}stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _threads(pid: int) -> list[str]:
    """Each thread of C{pid} as a path below /proc/PID/ ("task/TID/"), the main one first."""
    try:
        tids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return [""]
    return [f"task/{tid}/" for tid in sorted(tids, key=lambda tid: tid != pid)]


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
    """True when every thread of every process of the terminal's foreground group sleeps, one
    of them in a call that waits for the terminal (read, select, poll...): the program wants
    input. Every thread, not only each process's first: the JVM runs `main` in a thread of its
    own (its first thread waits for it to end), and Go reads the terminal in whichever thread
    its scheduler gives the goroutine; the other threads of a runtime (GC, JIT, timers) may
    sleep with a timeout meanwhile, which says nothing of the thread reading. In a thread but
    the first only a read() of the terminal counts: a readiness call does not say what it waits
    for, and runtimes keep event loops of their own in threads (Node's task scheduler waits in
    epoll_wait for ever while its main loop's timer is pending)."""
    pids = group_members(pgrp, leader)
    if not pids:
        return False
    try:
        terminal = os.stat(tty).st_rdev
    except OSError:
        return False
    waiting = False
    for pid in pids:
        for task in _threads(pid):
            fields = _stat_fields(pid, task)
            if fields is None:
                continue
            state = fields[0]
            if state in ("R", "D"):
                return False
            first = task in ("", f"task/{pid}/")
            if state == "S" and not waiting and _blocked_on_input(pid, terminal, task, first):
                waiting = True
    return waiting


def _blocked_on_input(pid: int, terminal: int, task: str = "", readiness: bool = True) -> bool:
    """Is C{pid} (its thread C{task}, "task/TID/") asleep waiting for the terminal whose device
    number is C{terminal}: in a read() of it, or (with C{readiness}) in a readiness call without
    a timeout?"""
    try:
        with open(f"/proc/{pid}/{task}syscall", encoding="ascii") as f:
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
        timeout = _WAITING_SYSCALLS.get(_MACHINE, {}).get(number)
        return readiness and timeout is not None and _waits_for_ever(call[1:], *timeout)
    try:
        with open(f"/proc/{pid}/{task}wchan", encoding="ascii") as f:
            return f.read().strip() == "n_tty_read"
    except OSError:
        return False


def _waits_for_ever(arguments: list[str], index: int, kind: str) -> bool:
    """Does a readiness call with these arguments (hex, as /proc/PID/syscall shows them) wait
    without a timeout?"""
    try:
        value = int(arguments[index], 16)
    except (IndexError, ValueError):
        return False
    if kind == _POINTER:
        return value == 0
    return value & 0x8000_0000 != 0  # a negative int, whatever the register's upper half

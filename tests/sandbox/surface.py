"""The kernel surface a visitor reaches for from inside a sandbox (issue 24): run as
`python3 -c <this file> NAME ARGS...` in a terminal session, or pasted into a kernel and called.

Each probe makes the call as a program would and says how it went: "ok", or the errno's name.
Without a filter every one reaches the kernel ("ok" on the hosts the tests run on, but bpf and
TIOCLINUX, which the kernel itself refuses with another errno); the filter answers EPERM
(ENOSYS for io_uring) before the kernel sees them. Standard library only.
"""

import ctypes
import errno
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# x86_64 syscall numbers.
_SYS = {
    "io_uring_setup": 425,
    "userfaultfd": 323,
    "perf_event_open": 298,
    "keyctl": 250,
    "add_key": 248,
    "bpf": 321,
}
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
KEY_SPEC_USER_KEYRING = -4
KEY_SPEC_SESSION_KEYRING = -3


def _errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def _syscall(name: str, *args: Any) -> str:
    result = _libc.syscall(_SYS[name], *args)
    if result < 0:
        return _errno_name(ctypes.get_errno())
    if name in ("io_uring_setup", "userfaultfd", "perf_event_open"):
        os.close(result)
    return "ok"


def _io_uring() -> str:
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, all zero
    return _syscall("io_uring_setup", ctypes.c_uint(1), params)


def _userfaultfd() -> str:
    return _syscall("userfaultfd", ctypes.c_int(1 | os.O_CLOEXEC))  # UFFD_USER_MODE_ONLY


def _perf_event_open() -> str:
    attr = ctypes.create_string_buffer(128)  # struct perf_event_attr
    ctypes.c_uint32.from_buffer(attr, 0).value = 1  # PERF_TYPE_SOFTWARE
    ctypes.c_uint32.from_buffer(attr, 4).value = 128  # its size
    ctypes.c_uint64.from_buffer(attr, 8).value = 1  # PERF_COUNT_SW_TASK_CLOCK
    ctypes.c_uint64.from_buffer(attr, 40).value = (1 << 5) | (1 << 6)  # no kernel, no hv
    return _syscall("perf_event_open", attr, ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(-1), 0)


def _keyctl() -> str:
    # KEYCTL_GET_KEYRING_ID of the user's keyring: every process has one.
    return _syscall("keyctl", ctypes.c_int(0), ctypes.c_int(KEY_SPEC_USER_KEYRING), 1)


def _bpf() -> str:
    # A command no kernel has: EINVAL from the kernel, EPERM from the filter.
    return _syscall("bpf", ctypes.c_int(9999), None, ctypes.c_uint(0))


def _on_own_terminal(request: int, argument: bytes) -> str:
    """ioctl C{request} on a terminal that is the caller's controlling terminal (TIOCSTI asks
    for that): a new PTY, opened by a child that made a session of its own."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        outcome = "ok"
        try:
            os.setsid()
            terminal = os.open(name, os.O_RDWR)  # a session leader's first terminal: its own
            if _libc.ioctl(terminal, ctypes.c_ulong(request), ctypes.c_char_p(argument)) != 0:
                outcome = _errno_name(ctypes.get_errno())
        except OSError as e:
            outcome = f"setup: {_errno_name(e.errno or 0)}"
        os.write(writer, outcome.encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    outcome = os.read(reader, 100).decode()
    os.close(reader)
    os.close(master)
    return outcome


def _socket(family: int, kind: int, protocol: int = 0) -> str:
    try:
        socket.socket(family, kind, protocol).close()
    except OSError as e:
        return _errno_name(e.errno or 0)
    return "ok"


PROBES: dict[str, Callable[[], str]] = {
    "io_uring_setup": _io_uring,
    "userfaultfd": _userfaultfd,
    "perf_event_open": _perf_event_open,
    "keyctl": _keyctl,
    "bpf": _bpf,
    "TIOCSTI": lambda: _on_own_terminal(TIOCSTI, b"x"),
    "TIOCLINUX": lambda: _on_own_terminal(TIOCLINUX, bytes([12, 0])),  # TIOCL_GETSHIFTSTATE
    "AF_VSOCK": lambda: _socket(40, socket.SOCK_STREAM),
    "NETLINK_SOCK_DIAG": lambda: _socket(16, socket.SOCK_RAW, 4),
    # What the filter lets through: glibc's getaddrinfo and if_nameindex, ZMQ's ipc.
    "NETLINK_ROUTE": lambda: _socket(16, socket.SOCK_RAW, 0),
    "AF_UNIX": lambda: _socket(socket.AF_UNIX, socket.SOCK_STREAM),
}


def kernel_surface() -> dict[str, Any]:
    """Every probe's outcome, and the seccomp mode of this process (2: filtered)."""
    with open("/proc/self/status") as f:
        status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
    return {
        "seccomp": status.get("Seccomp", "?").strip(),
        "calls": {name: probe() for name, probe in PROBES.items()},
    }


def plant_key(description: str, payload: str) -> dict[str, Any]:
    """Add a key to the session keyring this process inherited (jupybot's)."""
    result = _libc.syscall(
        _SYS["add_key"],
        b"user",
        description.encode(),
        payload.encode(),
        len(payload),
        ctypes.c_int(KEY_SPEC_SESSION_KEYRING),
    )
    if result < 0:
        return {"succeeded": False, "error": _errno_name(ctypes.get_errno())}
    return {"succeeded": True, "id": result}


def find_key(description: str, payload: str) -> dict[str, Any]:
    """Look for a key by its description in the session keyring (KEYCTL_SEARCH) and read its
    payload (KEYCTL_READ); and look for its name in /proc/keys."""
    found: dict[str, Any] = {}
    try:
        with open("/proc/keys") as f:
            found["proc_keys"] = description in f.read()
    except OSError as e:
        found["proc_keys"] = False
        found["proc_keys_error"] = _errno_name(e.errno or 0)
    key = _libc.syscall(
        _SYS["keyctl"],
        ctypes.c_int(10),  # KEYCTL_SEARCH
        ctypes.c_int(KEY_SPEC_SESSION_KEYRING),
        b"user",
        description.encode(),
        ctypes.c_int(0),
    )
    if key < 0:
        found["search_error"] = _errno_name(ctypes.get_errno())
        found["read"] = False
    else:
        buffer = ctypes.create_string_buffer(4096)
        size = _libc.syscall(_SYS["keyctl"], ctypes.c_int(11), ctypes.c_int(key), buffer, 4096)
        found["read"] = size > 0 and payload.encode() in buffer.raw[:size]
    found["succeeded"] = bool(found["proc_keys"] or found["read"])
    return found


def hoard_ptys(count: str) -> None:
    """Open up to C{count} PTYs (a master each, one file descriptor), say how many, and hold
    them until killed."""
    held = []
    error = ""
    try:
        for _ in range(int(count)):
            held.append(os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY))
    except OSError as e:
        error = _errno_name(e.errno or 0)
    print(json.dumps({"held": len(held), "error": error}), flush=True)
    while True:
        signal.pause()


def open_pty() -> dict[str, Any]:
    """Open one PTY, as script, tmux or pexpect would."""
    try:
        master, slave = os.openpty()
    except OSError as e:
        return {"succeeded": False, "error": _errno_name(e.errno or 0)}
    os.close(master)
    os.close(slave)
    return {"succeeded": True}


def hoard_inotify() -> None:
    """Make inotify instances until the kernel says no (fs.inotify.max_user_instances, 128 by
    default, per host user), say how many, and hold them until killed."""
    held: list[int] = []
    error = ""
    while len(held) < 10000:
        fd = _libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0:
            error = _errno_name(ctypes.get_errno())
            break
        held.append(fd)
    print(json.dumps({"held": len(held), "error": error}), flush=True)
    while True:
        signal.pause()


def watch_files() -> dict[str, Any]:
    """Make one inotify instance, as an editor, a file manager or a test runner would."""
    fd = _libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return {"succeeded": False, "error": _errno_name(ctypes.get_errno())}
    os.close(fd)
    return {"succeeded": True}


def ip_sockets() -> dict[str, Any]:
    """An IPv4 and an IPv6 socket (refused unless the profile has the network)."""
    return {
        "AF_INET": _socket(socket.AF_INET, socket.SOCK_STREAM),
        "AF_INET6": _socket(socket.AF_INET6, socket.SOCK_DGRAM),
    }


def mounts() -> dict[str, Any]:
    """What the sandbox's mountinfo says of the host: each mount's source path and target."""
    with open("/proc/self/mountinfo") as f:
        fields = [line.split() for line in f]
    return {"mounts": [[field[3], field[4]] for field in fields]}


# Run as `python3 -c <this file> NAME ARGS...`; in a kernel nothing runs here.
if __name__ == "__main__" and sys.argv[0] == "-c":
    name, *args = sys.argv[1:]
    print(json.dumps(globals()[name](*args)), flush=True)

"""What one sandboxed process may see and use: a typed profile, turned into bubblewrap's
command line by L{bubblewrap_args}. Sandboxes are configuration, not code."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field

# Who a program is inside its sandbox, whoever runs it outside.
INSIDE_UID = 1000
INSIDE_USER = "visitor"
INSIDE_HOME = f"/home/{INSIDE_USER}"
INSIDE_PATH = "/usr/local/bin:/usr/bin:/bin"

# /etc as a program sees it: what libc, Python, terminfo and fonts read; never shadow, sudoers,
# ssh keys, machine-id or jupybot's configuration. passwd and group are written by jupybot.
ETC_ALWAYS = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/inputrc",
    "/etc/mime.types",
    "/etc/fonts",
    "/etc/terminfo",
    "/etc/protocols",
    "/etc/services",
    "/etc/python3",
    "/etc/python3.11",
)
ETC_NETWORK = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
)
SYSTEM_DIRECTORIES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
# Files of the sandbox's /proc that show the host's, covered by an empty file.
PROC_MASKED = ("/proc/keys", "/proc/key-users")
# What the sandbox gets as data, not as a host path (bwrap --ro-bind-data FD DEST: a copy in
# bubblewrap's own memory, so no host path shows in the sandbox's mountinfo): the launch opens
# identity_files()' passwd and group, and /dev/null for each of PROC_MASKED, as these fds.
DATA_FDS = {"/etc/passwd": 8, "/etc/group": 7, "/proc/keys": 6, "/proc/key-users": 5}


@dataclass(frozen=True)
class Limits:
    # The session's memory: its cgroup's limit where it has one, else an address-space rlimit.
    memory_mb: int = 512
    # An address-space rlimit where cgroups hold the memory (0: none there; runtimes such as
    # V8, the JVM and Go reserve far more address space than they use: Node needs 768 MB of it
    # to start). Where rlimits are all there is, memory_mb is the address space unless this is
    # larger.
    address_space_mb: int = 0
    # The size of each in-memory folder (/tmp, /dev/shm, home); 0: a third of memory_mb.
    tmpfs_mb: int = 0
    processes: int = 64
    cpu_percent: int = 100
    cpu_seconds: int = 0  # 0: no CPU-time limit (a kernel lives for hours)
    file_size_mb: int = 16
    open_files: int = 1024


@dataclass(frozen=True)
class SandboxProfile:
    """One sandboxed program: its argv (resolved on the host), what it sees, what it may use."""

    argv: tuple[str, ...]
    read_only: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    network: bool = False
    cwd: str = INSIDE_HOME
    env: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)


def bubblewrap_args(
    profile: SandboxProfile,
    devpts: str | None = None,
    source: Callable[[str], str] | None = None,
) -> list[str]:
    """bwrap's options for C{profile} (its argv follows them): new user, PID, IPC, UTS, cgroup
    and network namespaces; the system read-only; a private /tmp, /dev/shm and home in memory
    that vanish with the sandbox; the profile's own paths; no capabilities, no new privileges,
    no nested user namespaces, and nothing left alive when jupybot dies. C{devpts}: a devpts
    instance of the session's own, mounted there by the launch with a bound, for /dev/pts
    (bubblewrap's own has none: every sandbox could take every PTY of the host). C{source}:
    where bubblewrap finds each of the profile's paths (L{jupybot.sandbox.view}: its real path
    when it is shown through jupybot's mount namespace); each is shown at its own path."""
    where = source or (lambda path: path)
    limits = profile.limits
    folder_mb = limits.tmpfs_mb or limits.memory_mb // 3
    args = [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *([] if profile.network else ["--unshare-net"]),
        "--disable-userns",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
        "--uid",
        str(INSIDE_UID),
        "--gid",
        str(INSIDE_UID),
    ]
    args += _system_directories()
    etc = ETC_ALWAYS + (ETC_NETWORK if profile.network else ())
    for path in etc:
        args += ["--ro-bind-try", path, path]
    for data in ("/etc/passwd", "/etc/group"):
        args += ["--ro-bind-data", str(DATA_FDS[data]), data]
    args += ["--proc", "/proc", "--dev", "/dev"]
    if devpts is not None:
        args += ["--dev-bind", devpts, "/dev/pts"]
    # The kernel's keys are not namespaced: /proc/keys lists every key the reader may view
    # (those of the session keyring it inherits included: names and descriptions), and
    # /proc/key-users every host user's key counts. Neither is anything a program needs.
    for masked in PROC_MASKED:
        args += ["--ro-bind-data", str(DATA_FDS[masked]), masked]
    # Files in memory count against the cgroup, but where there is none the three tmpfs must not
    # hold more than the session's memory between them.
    for tmpfs in ("/tmp", "/dev/shm", "/home"):
        args += ["--size", str(folder_mb * 1024 * 1024), "--tmpfs", tmpfs]
    args += ["--perms", "0700", "--dir", INSIDE_HOME]
    for path in profile.read_only:
        args += ["--ro-bind", where(path), path]
    for path in profile.writable:
        args += ["--bind", where(path), path]
    # The sandbox's root (and the /etc made in it) is a tmpfs of its own: read-only too.
    args += ["--remount-ro", "/", "--chdir", profile.cwd]
    return args


@functools.cache
def _system_directories() -> tuple[str, ...]:
    """bwrap's options for L{SYSTEM_DIRECTORIES} as this host has them (a merged /usr: links
    into it), looked at once rather than with a dozen stat and readlink calls per launch."""
    args: list[str] = []
    for directory in SYSTEM_DIRECTORIES:
        if os.path.islink(directory):
            args += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            args += ["--ro-bind", directory, directory]
    return tuple(args)


def identity_files() -> dict[str, str]:
    """/etc/passwd and /etc/group inside: the visitor, and nobody else."""
    return {
        "passwd": f"{INSIDE_USER}:x:{INSIDE_UID}:{INSIDE_UID}::{INSIDE_HOME}:/bin/sh\n"
        "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
        "group": f"{INSIDE_USER}:x:{INSIDE_UID}:\nnogroup:x:65534:\n",
    }


def sandbox_env(profile_env: dict[str, str]) -> dict[str, str]:
    """The environment a sandboxed program starts with: nothing of jupybot's."""
    env = {
        "PATH": INSIDE_PATH,
        "HOME": INSIDE_HOME,
        "USER": INSIDE_USER,
        "LOGNAME": INSIDE_USER,
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
    }
    env.update(profile_env)
    return env

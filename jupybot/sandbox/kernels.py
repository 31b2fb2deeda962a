"""The embedded gateway's kernels, each in a sandbox of its own (docs/kernels.md, "Containment").

jupybot decides once, at start, how kernels are contained: L{kernel_sandbox_plan} takes the
prepared L{Sandbox} (mode, user, cgroups), the per-kernel limits and the interpreter the kernels
run, and refuses an interpreter the sandbox user cannot read. The plan goes to the gateway
process as a JSON file; there L{KernelLaunches} turns every kernel launch (first start and every
restart) into a L{Launch}: the kernel's command inside bubblewrap, as the sandbox user, in a
cgroup of its own, with a directory of its own (L{KernelDirectory}) that holds its connection
file (read-only) and its ZMQ sockets.

The sockets: a kernel has no network, not even loopback, so ZMQ uses its ``ipc`` transport,
Unix sockets named by path, which reach across network namespaces. Only the kernel whose
sandbox shows its directory can bind or reach them: no kernel sees another's key or sockets.
The gateway never connects by those paths, which the kernel can replace (by a symlink to any
socket of the host): once the kernel bound its sockets, L{KernelDirectory.pin} opens each one
as a file without following a symlink, checks that it is a socket owned by the kernel's user,
and the gateway connects through that open file (``/proc/self/fd/<n>``), which names the very
socket it checked whatever the kernel does to the path afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import sys
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import jupybot

from ..config.sandbox import SandboxConfig
from .cgroups import Cgroups, SessionCgroup
from .profile import INSIDE_HOME, SYSTEM_DIRECTORIES, Limits, SandboxProfile
from .sandbox import Launch, Sandbox, SandboxUnavailable, sandbox_user_ids
from .view import MountView

__all__ = [
    "KernelDirectory",
    "KernelLaunches",
    "KernelSandboxPlan",
    "UnsafeKernelSocket",
    "discard_group",
    "interpreter_paths",
    "kernel_sandbox_plan",
    "remove_kernel_cgroups",
    "unreachable",
]

# Kernel groups sit beside the terminal sessions' groups; v2 names them session-kernel-*.
GROUP_PREFIX = "kernel-"
# The group below jupybot's session parent that the gateway makes its kernels' groups in
# (kernels-<random>).
KERNELS_GROUP = "kernels"
# A Unix socket path holds at most 107 bytes; ZMQ adds "-<port>" to the kernel's ip.
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class KernelSandboxPlan:
    """How the gateway contains its kernels; written by jupybot, read by the gateway."""

    mode: str
    user: str
    limits: Limits
    network: bool
    # Host paths every kernel sees read-only: the interpreter's prefixes outside /usr.
    read_only: tuple[str, ...]
    # jupybot's cgroup parents (L{Cgroups.parents}); none: rlimits only.
    cgroup_version: int | None = None
    cgroup_parents: tuple[tuple[str, str], ...] = ()
    # Where the gateway makes each kernel's directory: set by whoever starts the gateway.
    root: str = ""
    # Who the gateway, and so every kernel, runs as when jupybot is root (never root itself):
    # the name, uid and gid; empty: jupybot's own user.
    gateway_user: str = ""
    gateway_ids: tuple[int, int] | None = None
    # sandbox.seccomp: the syscall filter of every kernel's sandbox (jupybot/sandbox/seccomp.py).
    seccomp: str = "default"
    # As root, where jupybot's Python and package are below a folder the gateway's user may
    # not enter: the sandbox's view (L{jupybot.sandbox.view}) that the gateway starts in, as
    # nsenter names it; empty: the host's own.
    view: str = ""

    @property
    def sandboxed(self) -> bool:
        return SandboxConfig(mode=self.mode).enabled

    def describe(self) -> str:
        """One line for the start-up log and /ping."""
        if not self.sandboxed:
            return "kernels are NOT sandboxed (sandbox.mode: none)"
        network = "the host's network" if self.network else "no network"
        who = self.gateway_user or f"uid {os.geteuid()}"
        return (
            f"each kernel in a sandbox as {who}: {network}, {self.limits.memory_mb} MB, "
            f"{self.limits.processes} processes, {self.limits.cpu_percent}% of a core"
            + ("" if self.cgroup_version is not None else " (rlimits only)")
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> KernelSandboxPlan:
        data = json.loads(text)
        return cls(
            mode=data["mode"],
            user=data["user"],
            limits=Limits(**data["limits"]),
            network=data["network"],
            read_only=tuple(data["read_only"]),
            cgroup_version=data["cgroup_version"],
            cgroup_parents=tuple((c, p) for c, p in data["cgroup_parents"]),
            root=data["root"],
            gateway_user=data["gateway_user"],
            gateway_ids=tuple(data["gateway_ids"]) if data["gateway_ids"] else None,
            seccomp=data.get("seccomp", "default"),
            view=data.get("view", ""),
        )

    def cgroups(self) -> Cgroups | None:
        if self.cgroup_version is None:
            return None
        return Cgroups(self.cgroup_version, {c: Path(p) for c, p in self.cgroup_parents})


def kernel_sandbox_plan(
    sandbox: Sandbox,
    limits: Limits,
    network: bool,
    prefixes: tuple[str, ...] | None = None,
    gateway_user: str = "",
) -> KernelSandboxPlan:
    """The plan for the embedded gateway's kernels, run by the Python at C{prefixes} (default:
    jupybot's own, which runs the gateway). When jupybot is root the gateway runs as
    C{gateway_user} (default: C{sandbox.user}), and so do its kernels; it gets a cgroup of its
    own to make theirs in. L{SandboxUnavailable} if the sandbox is not ready or that user
    cannot read that Python or jupybot."""
    sandbox.require()
    read_only = interpreter_paths(prefixes or (sys.prefix, sys.base_prefix))
    switch = sandbox.enabled and os.geteuid() == 0
    user = (gateway_user or sandbox.config.user) if switch else ""
    try:
        ids = sandbox_user_ids(user) if switch else None
    except SandboxUnavailable as e:
        if not gateway_user:
            raise
        raise SandboxUnavailable(str(e).replace("sandbox.user:", "gateway.user:", 1)) from None
    view = None
    if ids is not None:
        package = os.path.dirname(os.path.realpath(jupybot.__file__))
        needed = [(p, "the kernels' Python") for p in read_only] + [(package, "jupybot")]
        # Whatever folder they are in (a checkout under root's 0700 home): the gateway starts
        # in the sandbox's view, where they are reachable, and nothing else of that folder is.
        sandbox.expose(path for path, _ in needed)
        view = sandbox.view_for(path for path, _ in needed)
        # What the gateway imports jupybot from (a checkout's root) must be listable too.
        entry = (os.path.dirname(package), "jupybot's folder")
        for path, what in [*needed, entry]:
            blocked = unreachable(path, *ids, view=sandbox.view, inside=path != entry[0])
            if blocked is not None:
                raise SandboxUnavailable(
                    f"{what} at {path} cannot be read by the sandbox user {user}, who runs "
                    f"the embedded gateway and its kernels ({blocked}); let others read it "
                    f"(chmod -R o+rX {path}: made with umask 077?), or install jupybot in a "
                    "virtualenv made from a Python that user can read, such as Debian's "
                    "/usr/bin/python3 (make setup does), or set gateway.url to a gateway of "
                    "your own"
                )
    cgroups = sandbox.cgroups
    if cgroups is not None:
        owner = ids or (os.geteuid(), os.getegid())
        # Named for this gateway: stopping one never touches another's kernels.
        cgroups = cgroups.delegate(f"{KERNELS_GROUP}-{secrets.token_hex(4)}", *owner)
    return KernelSandboxPlan(
        mode=sandbox.config.mode,
        user=sandbox.config.user,
        limits=limits,
        network=network,
        read_only=read_only,
        cgroup_version=cgroups.version if cgroups is not None else None,
        cgroup_parents=tuple((c, str(p)) for c, p in cgroups.parents.items()) if cgroups else (),
        seccomp=sandbox.config.seccomp,
        gateway_user=user,
        gateway_ids=ids,
        view=view or "",
    )


def interpreter_paths(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    """The directories a kernel needs to see to run this Python: its prefixes (a virtualenv and
    the Python it was made from), except what the sandbox shows anyway (/usr)."""
    paths: list[str] = []
    for prefix in prefixes:
        real = os.path.realpath(prefix)
        visible = any(real == d or real.startswith(d + "/") for d in SYSTEM_DIRECTORIES)
        if not visible and real not in paths:
            paths.append(real)
    return tuple(paths)


def unreachable(
    path: str, uid: int, gid: int, view: MountView | None = None, inside: bool = False
) -> str | None:
    """Why C{uid} (with only the group C{gid}, as the sandbox runs) cannot list and read
    C{path}, or None. In C{view} (where the folders above a shown path are passable), only
    the path's own permissions count. With C{inside}, what is right inside it must be readable
    too (a tree made with umask 077 is not). Mode bits only: an ACL that grants more is not
    seen."""
    real = os.path.realpath(path) if view is not None else path
    first = view.first_checked(real) if view is not None else "/"
    if first is None:
        return None  # a folder the view made
    current = Path(first)
    parts = Path(real).parts[len(current.parts) :]
    checked = [(current, not parts)] if first != "/" else []
    for index, part in enumerate(parts):
        current = current / part
        checked.append((current, index == len(parts) - 1))
    for place, last in checked:
        try:
            info = place.stat()
        except OSError as e:
            return f"{place}: {e.strerror}"
        if not _allowed(info, uid, gid, 0o5 if last else 0o1):
            return f"{place} is mode {stat.filemode(info.st_mode)} and owned by uid {info.st_uid}"
    if inside and os.path.isdir(real):
        for entry in sorted(os.scandir(real), key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue  # Python's caches (0700 when made by jupybot itself) are optional
            try:
                info = entry.stat()
            except OSError:
                continue  # a dangling symlink: nothing to read
            needed = 0o5 if stat.S_ISDIR(info.st_mode) else 0o4
            if not _allowed(info, uid, gid, needed):
                return (
                    f"{entry.path} is mode {stat.filemode(info.st_mode)} and owned by uid "
                    f"{info.st_uid}"
                )
    return None


def _allowed(info: os.stat_result, uid: int, gid: int, needed: int) -> bool:
    if uid == 0:
        return True
    if info.st_uid == uid:
        bits = info.st_mode >> 6
    elif info.st_gid == gid:
        bits = info.st_mode >> 3
    else:
        bits = info.st_mode
    return bits & needed == needed


def remove_kernel_cgroups(plan: KernelSandboxPlan) -> None:
    """Kill whatever still runs in the kernels' groups and remove them (after the gateway ended:
    its kernels die with it, but a group is only ever removed by someone)."""
    cgroups = plan.cgroups()
    if cgroups is None:
        return
    directories = [
        directory
        for parent in cgroups.parents.values()
        for pattern in (f"{GROUP_PREFIX}*", f"session-{GROUP_PREFIX}*")
        for directory in parent.glob(pattern)
    ]
    group = SessionCgroup(directories)
    group.kill_all()
    group.remove()


class UnsafeKernelSocket(Exception):
    """A kernel's socket path is not a socket of the kernel's own (a symlink, say)."""


class KernelDirectory:
    """One kernel's own directory, kept across its restarts:
      - ``connection.json``: its ports and key, readable by the sandbox user alone, shown to
        the kernel read-only;
      - ``sockets/``: where its ZMQ ipc sockets are made, the only writable path it shares.
    Its parents are searchable but not listable by others, so the sandbox user can reach it
    (bubblewrap opens the paths as that user) without finding the other kernels'."""

    def __init__(self, root: Path, ids: tuple[int, int] | None) -> None:
        self.path = root / secrets.token_hex(8)
        self._ids = ids
        self.path.mkdir()
        self.path.chmod(0o711)  # whatever the umask (jupybot's is 077)
        self.sockets.mkdir(mode=0o700)
        if ids is not None:
            os.chown(self.sockets, *ids)
        # The sockets directory as the gateway made it: the kernel cannot replace it (it is a
        # mount point in its sandbox, in a directory it cannot write), only what is inside.
        self._sockets_fd: int | None = os.open(
            self.sockets, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
        )
        # port -> an O_PATH descriptor of the socket checked for it; the same number for the
        # kernel's whole life (a restart's socket is put in its place), so that a ZMQ socket
        # reconnecting after a restart reaches the new kernel.
        self._pinned: dict[int, int] = {}

    def socket_name(self, port: int) -> str:
        return f"{Path(self.ip).name}-{port}"

    def bound(self, ports: list[int]) -> bool:
        """Has the kernel made all of its sockets (whatever they are)?"""
        assert self._sockets_fd is not None
        for port in ports:
            try:
                os.stat(self.socket_name(port), dir_fd=self._sockets_fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
        return True

    def pin(self, ports: list[int], uid: int) -> None:
        """Open each of the kernel's sockets without following a symlink and check that it is
        a socket owned by C{uid}, the kernel's user; L{UnsafeKernelSocket} if one is not."""
        assert self._sockets_fd is not None
        opened: dict[int, int] = {}
        try:
            for port in ports:
                name = self.socket_name(port)
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=self._sockets_fd)
                opened[port] = fd
                info = os.fstat(fd)
                if not stat.S_ISSOCK(info.st_mode) or info.st_uid != uid:
                    raise UnsafeKernelSocket(
                        f"{self.sockets / name} is {stat.filemode(info.st_mode)} owned by uid "
                        f"{info.st_uid}, not a socket of the kernel's (uid {uid})"
                    )
        except (OSError, UnsafeKernelSocket):
            for fd in opened.values():
                os.close(fd)
            raise
        for port, fd in opened.items():
            if port in self._pinned:
                os.dup2(fd, self._pinned[port], inheritable=False)
                os.close(fd)
            else:
                self._pinned[port] = fd

    def socket_url(self, port: int) -> str:
        """Where the gateway connects to the kernel's socket for C{port}: the pinned socket."""
        if port not in self._pinned:
            raise UnsafeKernelSocket(f"the kernel's socket {self.socket_name(port)} is not checked")
        return f"ipc:///proc/self/fd/{self._pinned[port]}"

    @property
    def connection_file(self) -> Path:
        return self.path / "connection.json"

    @property
    def sockets(self) -> Path:
        return self.path / "sockets"

    @property
    def ip(self) -> str:
        """ZMQ's ``ip`` for the ipc transport: sockets are ``<ip>-<port>``."""
        return str(self.sockets / "kernel")

    def hand_over(self) -> None:
        """Let the sandbox user read the connection file that jupyter_client wrote as ours."""
        if self._ids is not None:
            os.chown(self.connection_file, *self._ids, follow_symlinks=False)
        self.connection_file.chmod(0o400)

    def clear_sockets(self) -> None:
        """Empty C{sockets/} once its kernel is gone: whatever the kernel wrote there (in memory
        charged to its cgroup, see L{jupybot.kernels.embedded}) must not outlive it."""
        for entry in self.sockets.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with suppress(OSError):
                    entry.unlink()

    def remove(self) -> list[int]:
        """Remove the directory; the descriptor numbers its sockets were pinned on, which the
        caller closes a while later. Until then each names the root directory, where a ZMQ
        socket of the gateway still reconnecting finds no socket: were the number free at
        once, the next kernel's socket pinned on it would get that connection."""
        if self._sockets_fd is not None:
            os.close(self._sockets_fd)
            self._sockets_fd = None
        reserved = list(self._pinned.values())
        if reserved:
            nothing = os.open("/", os.O_PATH | os.O_DIRECTORY)
            for fd in reserved:
                os.dup2(nothing, fd, inheritable=False)
            os.close(nothing)
        self._pinned = {}
        shutil.rmtree(self.path, ignore_errors=True)
        return reserved


class KernelLaunches:
    """In the gateway process: the sandbox of every kernel launch, from jupybot's plan. It lives
    as long as the gateway and is never closed: its sandbox's files are in the gateway's TMPDIR,
    the cgroup parents are jupybot's, and jupybot removes both."""

    def __init__(self, plan: KernelSandboxPlan) -> None:
        self.plan = plan
        # jupybot made the cgroup parents: the gateway only makes and removes kernels' groups.
        self.sandbox = Sandbox(
            # Kernels run as plan.user: the gateway leases no uids of sandbox.uids (jupybot's
            # terminal does), and it is to run unprivileged, where it could not use them.
            SandboxConfig(
                mode=plan.mode, user=plan.user, cgroups="off", seccomp=plan.seccomp, uids="none"
            )
        )
        self.sandbox.prepare()
        self.sandbox.cgroups = plan.cgroups()
        self._ids = sandbox_user_ids(plan.user) if plan.sandboxed and os.geteuid() == 0 else None
        self._launched = 0

    @property
    def kernel_uid(self) -> int:
        """Who a kernel is on the host, and so who owns the sockets it makes."""
        return self._ids[0] if self._ids is not None else os.geteuid()

    @property
    def sandboxed(self) -> bool:
        return self.plan.sandboxed

    def new_directory(self) -> KernelDirectory:
        directory = KernelDirectory(Path(self.plan.root), self._ids)
        if len(directory.ip) + 6 > MAX_SOCKET_PATH:
            directory.remove()
            raise SandboxUnavailable(
                f"kernel socket paths under {self.plan.root} are too long for Unix sockets"
            )
        return directory

    def launch(self, argv: list[str], env: dict[str, str], directory: KernelDirectory) -> Launch:
        """The sandboxed launch of a kernel's C{argv}; its connection file must be written."""
        directory.hand_over()
        self._launched += 1
        threads = str(max(1, self.plan.limits.cpu_percent // 100))
        profile = SandboxProfile(
            argv=tuple(argv),
            read_only=(*self.plan.read_only, str(directory.connection_file)),
            writable=(str(directory.sockets),),
            network=self.plan.network,
            # Unsandboxed, the kernel works in its own directory rather than the gateway's.
            cwd=INSIDE_HOME if self.sandboxed else str(directory.path),
            env={
                # Thread pools sized to the kernel's CPU share: more threads only cost memory.
                "OPENBLAS_NUM_THREADS": threads,
                "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads,
                # The memory limit is also an address-space rlimit, and glibc reserves 64 MB of
                # it per thread's malloc arena: an idle ipykernel (13 threads) takes 878 MB of
                # address space with the default arenas, 223 MB with two (after importing
                # pandas and plotting: 1010 MB against 420 MB; 131 MB resident either way).
                "MALLOC_ARENA_MAX": "2",
                **env,
            },
            limits=self.plan.limits,
        )
        return self.sandbox.launch(
            profile, name=f"{GROUP_PREFIX}{directory.path.name}-{self._launched}"
        )

    def host_cwd(self, directory: KernelDirectory) -> str:
        """Where the launch chain starts on the host (the sandbox user can be there)."""
        return "/" if self.sandboxed else str(directory.path)


def discard_group(group: SessionCgroup) -> bool:
    """Kill what is left in a kernel's group and remove it; False: still leaving, try again."""
    group.kill_all()
    with suppress(OSError):
        return group.remove()
    return False

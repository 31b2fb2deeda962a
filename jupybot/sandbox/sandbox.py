"""The sandbox every visitor program and embedded kernel runs in (docs/terminal.md, "Containment").

A launch is a chain of small programs, each of which execs the next, so the process jupybot
spawns is, in turn:
  1. ``sh -c`` joining the session's cgroups (where jupybot made them) and opening the syscall
     filter for bubblewrap (L{jupybot.sandbox.seccomp}, unless ``sandbox.seccomp: none``),
  1b. ``nsenter`` into jupybot's mount namespace for sandboxes (L{MountView}), only as root and
     only where a path the sandbox shows is below a folder its user may not enter (a checkout
     under root's 0700 home): there such folders are covered, and hold only those paths,
  2. ``setpriv`` dropping to a uid of ``sandbox.uids`` leased to the session (L{UidPool}), or
     ``sandbox.user``, with no groups and no new privileges (only when jupybot runs as root:
     nothing sandboxed ever runs as root, outside or inside),
  3. ``prlimit`` with the session's rlimits,
  3b. ``unshare`` into a user and mount namespace of the sandbox's own, where ``sh`` mounts a
     devpts instance with at most ``sandbox.max_ptys`` PTYs for bubblewrap's /dev/pts,
  4. ``bwrap``, which builds the namespaces of L{bubblewrap_args}, loads the filter and runs the
     program.
With ``--die-with-parent`` and a PID namespace, killing that one process kills everything the
program started, wherever it went. A terminal's PTY child, which jupybot forks itself, does 1,
2, 3 and 3b itself (as root, 3b needs a mount namespace only) before it execs the rest
(L{ForkedLaunch}): the child execs bubblewrap at once, but where nsenter must run first.
"""

from __future__ import annotations

import ctypes
import functools
import os
import pwd
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from twisted.logger import Logger

from ..config.sandbox import NONE, SandboxConfig, parse_uid_range
from ..parts import TransientProblem
from ._rlimits import Rlimits, shell_sets
from .cgroups import (
    RLIMITS_ONLY_GAPS,
    CgroupLimits,
    Cgroups,
    SessionCgroup,
    TotalLimits,
    find_cgroups,
)
from .profile import (
    DATA_FDS,
    INSIDE_PATH,
    PROC_MASKED,
    Limits,
    SandboxProfile,
    bubblewrap_args,
    identity_files,
    sandbox_env,
)
from .seccomp import export_filters, filter_file
from .uids import LOCKS, UidPool, uid_range_problem, uids_in_use
from .view import MountView, ViewUnavailable, blocked_folder

log = Logger()

# Given the filter's path (or ""), passwd's and group's, writes 0 (itself: it runs no thread
# but its own) to every cgroup join file up to "--", sets each ulimit (option, value) up to the
# next "--", then execs the rest with the filter open as FILTER_FD and the files of DATA_FDS open
# as theirs: dash starts in about a millisecond, the program can fork nothing before it is
# inside, and the files are opened as jupybot's user, before the chain drops to the sandbox's.
# The rlimits set here, as jupybot's user, hold for the whole chain and the program (setpriv
# keeps them), so no prlimit is exec'd (L{jupybot.sandbox._rlimits}).
_JOIN_SCRIPT = (
    'b=$1; p=$2; g=$3; shift 3; while [ "$1" != -- ]; do echo 0 > "$1" || exit 126; shift; '
    'done; shift; while [ "$1" != -- ]; do ulimit "$1" "$2" || exit 126; shift 2; done; shift; '
    'exec 8< "$p" 7< "$g" 6< /dev/null 5< /dev/null; [ -z "$b" ] && exec "$@"; exec "$@" 9< "$b"'
)
FILTER_FD = 9
# Mounts a devpts instance (mount's path, options, where) in the namespace unshare made, then
# execs bubblewrap, which shows it as /dev/pts. -n -i: no mtab, no mount.<type> helper to look
# for. unshare, sh and mount cost about 4.5 ms of a launch (/bin/true: 14.6 ms without them,
# 19.2 with, medians of 40 here).
_DEVPTS_SCRIPT = 'm=$1; o=$2; d=$3; shift 3; "$m" -n -i -t devpts -o "$o" devpts "$d" && exec "$@"'
MEGABYTE = 1024 * 1024
# What the start checks that the launch's sh sets as prlimit would (each of a launch's kinds).
_PROBE_LIMITS = Rlimits(
    (("fsize", 16 * MEGABYTE), ("nofile", 256), ("core", 0), ("cpu", 600), ("nproc", 4096),
     ("as", 4096 * MEGABYTE))
)  # fmt: skip
# Without a cgroup of its own, a sandbox may have this many processes (and threads) of its host
# user at least: a backstop, since RLIMIT_NPROC counts every process of that user on the host.
NPROC_BACKSTOP = 1024
# What a launch needs besides the processes its user already runs (sh forking mount, bubblewrap
# and its PID 1, the program), with some room: a user with fewer to spare is at its limit.
LAUNCH_TASKS = 8
# What a forked child calls itself (L{ForkedLaunch}): prctl(2), unshare(2), mount(2).
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (
    ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p
)  # fmt: skip
# How the launch chain says that a new process was refused (EAGAIN: a process limit).
_NO_PROCESS = re.compile(r"Resource temporarily unavailable|Cannot fork|fork: retry")


class SandboxUnavailable(Exception):
    """The sandbox cannot run here; the message says why and what the owner can do."""


class SandboxBusy(SandboxUnavailable, TransientProblem):
    """The sandbox cannot run right now, for a reason that passes by itself: its user is at its
    process limit. The parts that need it try again on a backoff."""


@dataclass(frozen=True)
class ForkedLaunch:
    """The same launch for a child jupybot forks itself (a terminal's PTY child): it does what
    the chain's first C{sh}, C{setpriv}, C{unshare}, second C{sh} and C{mount} do
    (L{prepare_child}), then execs L{argv}, the rest of the chain: bubblewrap. Each of those
    programs cost an exec, dynamic linking and page faults: 1.2 to 2.2 ms of CPU a launch on
    this project's VM (perf, 100 launches: 7.7 ms for the five)."""

    argv: list[str]
    join_files: tuple[str, ...]
    rlimits: Rlimits
    # Descriptor -> the file it holds, opened as jupybot's user (L{DATA_FDS}, the filter).
    files: tuple[tuple[int, str], ...]
    # Who the child becomes (uid, gid), with no groups and no new privileges; None: it stays.
    ids: tuple[int, int] | None
    # Where the child mounts the session's devpts instance, and its options, in a mount
    # namespace of its own, as the chain's unshare, sh and mount do.
    devpts: tuple[str, str] | None = None
    # Without root, that namespace is a user namespace's where jupybot's user is root, as
    # unshare --map-root-user makes it (root needs none).
    user_namespace: bool = False

    def prepare_child(self) -> None:
        """In the forked child, its descriptors closed but its terminal's: join the cgroups
        (before anything can fork), set the rlimits, open the files, mount the devpts
        instance, drop to the sandbox's user. Raises OSError; the child must then exit without
        exec'ing."""
        for path in self.join_files:
            joined = os.open(path, os.O_WRONLY)
            try:
                os.write(joined, b"0")
            finally:
                os.close(joined)
        self.rlimits.apply()
        for number, path in self.files:
            opened = os.open(path, os.O_RDONLY)
            os.dup2(opened, number)  # inheritable, unlike what os.open returns
            os.close(opened)
        if self.devpts is not None:
            where, options = self.devpts
            if self.user_namespace:
                uid, gid = os.geteuid(), os.getegid()
                _call(_libc.unshare, _CLONE_NEWUSER | _CLONE_NEWNS)
                # As unshare(1) writes them: no setgroups, or no gid map for an unprivileged user.
                for name, line in (("uid_map", f"0 {uid} 1"), ("setgroups", "deny"),
                                   ("gid_map", f"0 {gid} 1")):  # fmt: skip
                    _write_proc(name, line)
            else:
                _call(_libc.unshare, _CLONE_NEWNS)
            # Nothing mounted here reaches the host's namespace, as unshare(1) does by default.
            _call(_libc.mount, b"none", b"/", None, _MS_REC | _MS_PRIVATE, None)
            _call(_libc.mount, b"devpts", where.encode(), b"devpts", 0, options.encode())
        if self.ids is not None:
            uid, gid = self.ids
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            _call(_libc.prctl, _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _write_proc(name: str, line: str) -> None:
    written = os.open(f"/proc/self/{name}", os.O_WRONLY)
    try:
        os.write(written, line.encode())
    finally:
        os.close(written)


def _call(function: Callable[..., int], *args: object) -> None:
    """A libc call, its failure raised as OSError."""
    if function(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{function.__name__}: {os.strerror(error)}")


@dataclass
class Launch:
    """How to spawn one sandboxed program, and what to clean up after it."""

    argv: list[str]
    env: dict[str, str]
    cgroup: SessionCgroup | None
    # True: everything the program starts dies with the spawned process (PID namespace).
    contained: bool
    # The host uid leased to this sandbox (sandbox.uids), given back by L{release}.
    uid: int | None = None
    releaser: Callable[[], None] | None = field(default=None, repr=False)
    # The same launch for a process jupybot forks itself; None: only argv runs it.
    forked: ForkedLaunch | None = None

    def release(self) -> None:
        """Nothing of this sandbox runs any more (its cgroup is removed, or, without one, its
        process was reaped): give back what it was lent. Idempotent."""
        releaser, self.releaser = self.releaser, None
        if releaser is not None:
            releaser()


class Sandbox:
    """Builds launches from profiles; L{prepare} checks that this host can run them."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        # Why the sandbox cannot run here, once prepare() failed; parts that need it refuse (and
        # try again later when it is busy: L{SandboxBusy}).
        self.problem: str | None = None
        self.busy = False
        self.prepared = False
        self.cgroups: Cgroups | None = None
        self.limits_note = "rlimits"
        self._bwrap: str | None = None
        self._setpriv: str | None = None
        self._prlimit: str | None = None
        # Whether the launch's first sh sets the rlimits (L{_rlimits}), rather than prlimit.
        self._shell_limits = False
        # unshare and mount, where PTYs are bounded (L{_bound_ptys}).
        self._pty_tools: tuple[str, str] | None = None
        self.ptys_note = "none"
        self._ids: tuple[int, int] | None = None
        self._identity_dir: Path | None = None
        # A uid per session (sandbox.uids), when jupybot runs as root.
        self.uids: UidPool | None = None
        # As root: where the paths its sandboxes show are reachable by their users, whatever
        # folder they are in (L{expose}).
        self.view: MountView | None = None

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def prepare(self) -> None:
        """Find the tools, check that namespaces can be made, set up cgroups; or raise
        L{SandboxUnavailable} with what to do about it (also kept in L{problem})."""
        try:
            self._prepare()
        except SandboxUnavailable as e:
            self.problem = str(e)
            self.busy = isinstance(e, SandboxBusy)
            # Undone, so that prepare() can be tried again (SandboxBusy passes by itself).
            self.close()
            self._reset()
            raise
        self.problem = None
        self.busy = False
        self.prepared = True

    def _reset(self) -> None:
        self.cgroups = None
        self._shell_limits = False
        self.limits_note = "rlimits"
        self._pty_tools = None
        self.ptys_note = "none"
        self._ids = None
        self.uids = None
        self.view = None

    def require(self) -> None:
        """Raise L{SandboxUnavailable} unless L{prepare} succeeded (L{SandboxBusy} if it failed
        for a reason that passes by itself)."""
        if not self.prepared:
            if self.busy:
                raise SandboxBusy(self.problem or "the sandbox is busy")
            raise SandboxUnavailable(self.problem or "the sandbox was not prepared")

    def _prepare(self) -> None:
        self._prlimit = shutil.which("prlimit")
        self._setpriv = shutil.which("setpriv")
        if self._prlimit is None or self._setpriv is None:
            raise SandboxUnavailable(
                "prlimit and setpriv (Debian package util-linux) are not installed"
            )
        if not self.enabled:
            return
        self._bwrap = shutil.which("bwrap")
        if self._bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap is not installed (apt-get install bubblewrap); "
                "or set sandbox.mode: none to run programs unsandboxed"
            )
        if os.geteuid() == 0:
            self._ids = sandbox_user_ids(self.config.user)
            self._lease_uids()
        # Searchable by the sandbox's user, who mounts its devpts on pts/; the files in it are
        # read by the launch's first sh, as jupybot's user.
        self._identity_dir = Path(tempfile.mkdtemp(prefix="jupybot-sandbox-"))
        self._identity_dir.chmod(0o711)
        for name, text in identity_files().items():
            path = self._identity_dir / name
            path.write_text(text)
            path.chmod(0o600)
        if self.config.filtered:
            export_filters(self._identity_dir)
        self._shell_limits = shell_sets([*self._join(""), "--"], _PROBE_LIMITS)
        if self._ids is not None:
            self.view = MountView(self._identity_dir)
        self._bound_ptys()
        self._probe()
        if self.config.cgroups == "auto":
            total = TotalLimits.configured(self.config.total_memory_mb, self.config.total_processes)
            found = find_cgroups(total=total)
            if isinstance(found, Cgroups):
                self.cgroups = found
                self.limits_note = f"{found.describe()} and rlimits"
            else:
                self.limits_note = f"rlimits only: {found}; {RLIMITS_ONLY_GAPS}"
        else:
            self.limits_note = f"rlimits only (sandbox.cgroups: off); {RLIMITS_ONLY_GAPS}"

    def _lease_uids(self) -> None:
        """Check that C{sandbox.uids} belong to no one, and lease from them."""
        ids = parse_uid_range(self.config.uids) if self.config.uids != NONE else None
        if ids is None:
            return
        problem = uid_range_problem(ids)
        if problem is not None:
            raise SandboxUnavailable(
                f"sandbox.uids {self.config.uids} are not free: {problem}; choose a range no "
                "user, group or subordinate range has, or set sandbox.uids: none"
            )
        try:
            pool = UidPool(ids)
        except OSError as e:
            raise SandboxUnavailable(
                f"sandbox.uids: cannot lock uids in {LOCKS} ({e.strerror}); set sandbox.uids: none"
            ) from None
        taken = uids_in_use(ids, pool.leased_elsewhere)
        if len(taken) > len(ids) // 2:
            uid, who = next(iter(taken.items()))
            raise SandboxUnavailable(
                f"sandbox.uids {self.config.uids} are not free: {len(taken)} of them are used by "
                f"running processes ({who} has {uid}); choose a range no one uses, or set "
                "sandbox.uids: none"
            )
        if taken:
            log.warn(
                "sandbox: {count} uids of sandbox.uids are left out: running processes have "
                "them ({who} has {uid})",
                count=len(taken),
                who=next(iter(taken.values())),
                uid=next(iter(taken)),
            )
        pool.leave_out(taken)
        self.uids = pool

    def _bound_ptys(self) -> None:
        """Give every sandbox a devpts instance of its own with a bound: bubblewrap's --dev
        mounts one without, from which a session took about 1,000 PTYs. bubblewrap has no
        option for it and drops its capabilities before the program runs, so the launch mounts
        the instance itself in a user namespace of its own, just before bubblewrap. Where that
        namespace cannot be made (a setuid bubblewrap on a host without unprivileged user
        namespaces) sandboxes keep bubblewrap's unbounded one, and L{describe} says so."""
        unshare, mount = shutil.which("unshare"), shutil.which("mount")
        if unshare is None or mount is None:
            self.ptys_note = "unbounded (no unshare or mount: Debian package util-linux)"
            return
        assert self._identity_dir is not None
        (self._identity_dir / "pts").mkdir(mode=0o755)
        self._pty_tools = (unshare, mount)
        error = self.try_run(SandboxProfile(argv=("/bin/true",)))
        if error is not None:
            busy = self.busy_problem(error)
            if busy is not None:
                raise SandboxBusy(busy)
            self._pty_tools = None
            self.ptys_note = f"unbounded (a devpts of its own could not be mounted: {error})"
            return
        self.ptys_note = f"{self.config.max_ptys} per sandbox beyond its terminal"

    def _probe(self) -> None:
        """Run `true` in a sandbox like a program's: the kernel may forbid user namespaces, or
        the sandbox's user may be out of processes (which passes: L{SandboxBusy})."""
        error = self.try_run(SandboxProfile(argv=("/bin/true",)))
        if error is not None:
            busy = self.busy_problem(error)
            if busy is not None:
                raise SandboxBusy(busy)
            raise SandboxUnavailable(
                f"bubblewrap cannot create namespaces here ({error}); "
                "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                "user.max_user_namespaces > 0, or the AppArmor profile for bwrap), "
                "or set sandbox.mode: none"
            )

    def busy_problem(self, error: str) -> str | None:
        """Whether a launch that failed with C{error} (the chain's last word) failed for want
        of a process (its user at its process limit, or the host's), and if so a sentence
        saying so; None when it failed for another reason (no namespaces, say)."""
        if not _NO_PROCESS.search(error):
            return None
        uid = self._ids[0] if self._ids is not None else os.geteuid()
        named = "" if self.config.user == str(uid) else f" (uid {uid})"
        who = (
            f"the sandbox user {self.config.user}{named}"
            if self._ids is not None
            else f"jupybot's user (uid {uid}), whom the sandboxes run as,"
        )
        running = tasks_of(uid)
        limit = max(Limits().processes, NPROC_BACKSTOP)
        if running + LAUNCH_TASKS >= limit:
            return (
                f"{who} already runs {running} processes and threads, and a sandbox without "
                f"a cgroup of its own may start only while that user has fewer than {limit} "
                f"(RLIMIT_NPROC counts every process of the user on the host), so no sandbox "
                f"could start ({error}); this passes when they end, and jupybot tries again "
                "meanwhile. To keep it from coming back, give the sandbox a user of its own "
                "(sandbox.user, gateway.user) or let jupybot make cgroups (docs/deploy.md)"
            )
        return (
            f"the host refused the sandbox a new process ({error}), with {running} processes "
            f"of {who} running: a limit of the host's or of jupybot's service "
            "(kernel.threads-max, kernel.pid_max, TasksMax, LimitNPROC) is reached; this "
            "passes when processes end, and jupybot tries again meanwhile"
        )

    def try_run(self, profile: SandboxProfile) -> str | None:
        """Run C{profile} once, to its end, outside any session: None if it exited 0, else
        why not (bubblewrap's last word: a path the sandbox user cannot read, say)."""
        try:
            launch = self.launch(profile, name=None)
        except SandboxUnavailable as e:
            return str(e)
        try:
            result = subprocess.run(
                launch.argv, env=launch.env, capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"it could not be run: {e}"
        if result.returncode == 0:
            return None
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {result.returncode}"

    def describe(self) -> str:
        """One line for the start-up log, /ping and --check-config."""
        if not self.enabled:
            return "none (programs and kernels are NOT sandboxed)"
        who = f"as {self.config.user}" if self._ids is not None else f"as uid {os.geteuid()}"
        if self.uids is not None:
            who = f"as a uid of {self.uids.describe()} per session"
        filtered = "default" if self.config.filtered else "NONE"
        return (
            f"bubblewrap {who}; limits: {self.limits_note}; syscall filter: {filtered}; "
            f"PTYs: {self.ptys_note}"
        )

    def close(self) -> None:
        if self.view is not None:
            self.view.close()
        if self._identity_dir is not None:
            shutil.rmtree(self._identity_dir, ignore_errors=True)
            self._identity_dir = None
        if self.cgroups is not None:
            self.cgroups.close()
        if self.uids is not None:
            self.uids.close()

    def launch(self, profile: SandboxProfile, name: str | None) -> Launch:
        """The argv and environment that run C{profile}; C{name} names its cgroup."""
        assert self._prlimit is not None, "prepare() first"
        limits = profile.limits
        rlimits = [
            ("fsize", limits.file_size_mb * MEGABYTE),
            ("nofile", min(limits.open_files, _hard_open_file_limit())),
            ("core", 0),
            *([("cpu", limits.cpu_seconds)] if limits.cpu_seconds else []),
        ]
        if not self.enabled:
            # The process count is per user id without cgroups: the kernel counts every process
            # of jupybot's user (root's not at all), jupybot's own and its kernels' among them,
            # so, as for a sandbox without a cgroup, a backstop: the session's own count would
            # refuse it a fork whenever that user already runs as many (a normal user always).
            rlimits.append(("nproc", max(limits.processes, NPROC_BACKSTOP)))
            rlimits += _address_space(limits, in_cgroup=False)
            home = profile.cwd if os.path.isdir(profile.cwd) else tempfile.gettempdir()
            env = sandbox_env(profile.env) | {
                "HOME": home,
                "PATH": os.environ.get("PATH", INSIDE_PATH),
            }
            # Nothing ends an unsandboxed program with its parent (a gateway killed under its
            # kernels, say) but the parent-death signal, which survives the execs that follow.
            assert self._setpriv is not None
            prlimit = [self._prlimit, *Rlimits(tuple(rlimits)).prlimit_options()]
            argv = [self._setpriv, "--pdeathsig=KILL", "--", *prlimit, "--", *profile.argv]
            return Launch(argv, env, None, contained=False)
        assert self._bwrap is not None and self._identity_dir is not None
        # Before anything is leased: L{SandboxUnavailable} if a path cannot be shown.
        self.expose((*profile.read_only, *profile.writable))
        ids, releaser = self._ids, None
        # A program with writable: paths keeps sandbox.user, to whom the owner gave them: its
        # sessions share those files anyway.
        if ids is not None and self.uids is not None and name is not None and not profile.writable:
            uid = self.uids.lease()
            ids, releaser = (uid, uid), functools.partial(self.uids.release, uid)
        cgroup = None
        if self.cgroups is not None and name is not None:
            try:
                cgroup = self.cgroups.create(
                    name, CgroupLimits(limits.memory_mb, limits.processes, limits.cpu_percent)
                )
            except BaseException:
                if releaser is not None:
                    releaser()
                raise
        else:
            # A backstop only: without cgroups the count is shared by every sandbox.
            rlimits.append(("nproc", max(limits.processes, NPROC_BACKSTOP)))
        rlimits += _address_space(limits, in_cgroup=cgroup is not None)
        seccomp = ["--seccomp", str(FILTER_FD)] if self.config.filtered else []
        devpts = str(self._identity_dir / "pts") if self._pty_tools is not None else None
        view = self.view
        source = view.source if view is not None else None
        sandboxed = [self._bwrap, *bubblewrap_args(profile, devpts, source)]
        sandboxed += [*seccomp, "--", *profile.argv]
        argv = sandboxed
        pts_options = f"newinstance,max={self.config.max_ptys},ptmxmode=0666,mode=0620"
        if self._pty_tools is not None and devpts is not None:
            unshare, mount = self._pty_tools
            argv = [
                *(unshare, "--user", "--map-root-user", "--mount", "--"),
                *("/bin/sh", "-c", _DEVPTS_SCRIPT, "jupybot-devpts", mount, pts_options, devpts),
                *argv,
            ]
        set_limits = Rlimits(tuple(rlimits))
        in_shell: list[str] = []
        chain = argv
        if self._shell_limits:
            in_shell = set_limits.ulimit_arguments()
        else:
            chain = [self._prlimit, *set_limits.prlimit_options(), "--", *argv]
        dropped, entered = ids, []
        if ids is not None:
            uid, gid = ids
            assert self._setpriv is not None
            drop = [
                self._setpriv,
                f"--reuid={uid}",
                f"--regid={gid}",
                "--clear-groups",
                "--no-new-privs",
                "--",
            ]
            chain = [*drop, *chain]
            if view is not None and view.needed((*profile.read_only, *profile.writable)):
                # Still root: into the view, where the paths shown are reachable by that uid.
                entered = [*view.enter(), *drop]
                chain = [*view.enter(), *chain]
                dropped = None  # by setpriv, once nsenter has entered the view
        rules = str(filter_file(self._identity_dir, profile.network)) if seccomp else ""
        joins = cgroup.join_files if cgroup is not None else []
        chain = [*self._join(rules), *joins, "--", *in_shell, "--", *chain]
        identity = self._identity_files()
        files = (
            (DATA_FDS["/etc/passwd"], identity[0]),
            (DATA_FDS["/etc/group"], identity[1]),
            *((DATA_FDS[masked], os.devnull) for masked in PROC_MASKED),
            *(((FILTER_FD, rules),) if rules else ()),
        )
        # The child mounts the devpts instance itself (as root, before it drops to the
        # sandbox's user): no unshare, sh and mount to exec. Not where nsenter must run first.
        unprivileged = self._ids is None
        mounted = None
        if devpts is not None and (dropped is not None or unprivileged):
            mounted = (devpts, pts_options)
        forked = ForkedLaunch(
            sandboxed if mounted is not None else [*entered, *argv],
            tuple(joins),
            set_limits,
            files,
            dropped,
            mounted,
            user_namespace=unprivileged,
        )
        leased = ids[0] if releaser is not None and ids is not None else None
        return Launch(chain, sandbox_env(profile.env), cgroup, True, leased, releaser, forked)

    def _join(self, rules: str) -> list[str]:
        """The launch's first C{sh} up to its cgroup join files (L{_JOIN_SCRIPT})."""
        return ["/bin/sh", "-c", _JOIN_SCRIPT, "jupybot-join", rules, *self._identity_files()]

    def _identity_files(self) -> list[str]:
        """passwd and group as the sandbox shows them (L{identity_files})."""
        assert self._identity_dir is not None
        return [str(self._identity_dir / name) for name in ("passwd", "group")]

    def expose(self, paths: Iterable[str]) -> None:
        """Let the sandbox users reach C{paths} whatever folder they are in (as root, through
        L{MountView}; otherwise they run as jupybot's user, who reaches them anyway). Cheap for
        paths seen before; L{SandboxUnavailable} if a path cannot be shown."""
        if self.view is None:
            return
        paths = tuple(paths)
        try:
            self.view.expose(paths)
        except ViewUnavailable as e:
            hidden = {p: blocked_folder(os.path.realpath(p)) for p in paths}
            named = ", ".join(f"{p} (below {c})" for p, c in hidden.items() if c is not None)
            raise SandboxUnavailable(
                f"{named or ', '.join(paths)}: the sandbox user may not enter the folder above, "
                f"and jupybot could not show it in a mount namespace of its own ({e}); move it "
                "where others may enter (/srv, /opt), or let them pass that folder (chmod o+x)"
            ) from None

    def view_for(self, paths: Iterable[str]) -> str | None:
        """The view's namespace as a launch names it (C{nsenter --mount=...}) if one of
        C{paths} (L{expose}d) is shown through it, else None: where the embedded gateway
        starts, as root."""
        if self.view is None or not self.view.needed(paths):
            return None
        return self.view.namespace_path

    def resolve(self, executable: str, extra_paths: tuple[str, ...] = ()) -> str | None:
        """Where C{executable} is as the sandbox sees it (its PATH, the system and the profile's
        paths), or None: what is not inside cannot run."""
        if executable == "{python}":
            return sys.executable
        if "/" in executable:
            found = executable if os.access(executable, os.X_OK) else None
        else:
            found = shutil.which(executable, path=INSIDE_PATH)
        if found is None or not self.enabled:
            return found
        visible = ("/usr/", "/bin/", "/sbin/", "/lib/", *(p.rstrip("/") + "/" for p in extra_paths))
        return found if any(found.startswith(prefix) for prefix in visible) else None


def tasks_of(uid: int, proc: Path = Path("/proc")) -> int:
    """How many processes and threads run with the real uid C{uid} (what RLIMIT_NPROC counts)."""
    count = 0
    for status in proc.glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue  # gone meanwhile
        real = threads = None
        for line in text.splitlines():
            if line.startswith("Uid:"):
                real = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
        if real == uid and threads is not None:
            count += threads
    return count


def sandbox_user_ids(user: str) -> tuple[int, int]:
    """Who sandboxed processes are outside: C{user} when jupybot runs as root (never root
    itself), else jupybot's own user."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        if user.isdigit():
            return int(user), int(user)
        raise SandboxUnavailable(f"sandbox.user: there is no user {user!r} on this host") from None
    if entry.pw_uid == 0:
        raise SandboxUnavailable("sandbox.user: programs must not run as root")
    return entry.pw_uid, entry.pw_gid


def _address_space(limits: Limits, in_cgroup: bool) -> list[tuple[str, int]]:
    """The address-space rlimit for C{limits}, or none: where a cgroup holds the memory, only
    an address space asked for; elsewhere the memory limit (or a larger address space asked
    for), the only bound on memory there is."""
    if in_cgroup:
        megabytes = limits.address_space_mb
    else:
        megabytes = max(limits.memory_mb, limits.address_space_mb)
    return [("as", megabytes * MEGABYTE)] if megabytes else []


def _hard_open_file_limit() -> int:
    """What prlimit may grant a program at most: jupybot's own hard limit (it cannot raise it;
    asking for more fails every launch)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 20

"""The sandbox every visitor program and embedded kernel runs in (docs/terminal.md, "Containment").

A launch is a chain of small programs, each of which execs the next, so the process jupybot
spawns is, in turn:
  1. ``sh -c`` joining the session's cgroups (only where jupybot made them),
  2. ``setpriv`` dropping to ``sandbox.user`` with no groups and no new privileges (only when
     jupybot runs as root: nothing sandboxed ever runs as root, outside or inside),
  3. ``prlimit`` with the session's rlimits,
  4. ``bwrap``, which builds the namespaces of L{bubblewrap_args} and runs the program.
With ``--die-with-parent`` and a PID namespace, killing that one process kills everything the
program started, wherever it went.
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from twisted.logger import Logger

from ..config.sandbox import SandboxConfig
from .cgroups import CgroupLimits, Cgroups, SessionCgroup, find_cgroups
from .profile import (
    INSIDE_PATH,
    SandboxProfile,
    bubblewrap_args,
    identity_files,
    sandbox_env,
)

log = Logger()

# Joins every cgroup.procs file given before "--", then execs the rest: dash starts in about a
# millisecond, and the program can fork nothing before it is inside.
_JOIN_SCRIPT = (
    'n=0; for f do n=$((n+1)); [ "$f" = -- ] && break; echo $$ > "$f" || exit 126; done; '
    'shift $n; exec "$@"'
)
MEGABYTE = 1024 * 1024


class SandboxUnavailable(Exception):
    """The sandbox cannot run here; the message says why and what the owner can do."""


@dataclass
class Launch:
    """How to spawn one sandboxed program, and what to clean up after it."""

    argv: list[str]
    env: dict[str, str]
    cgroup: SessionCgroup | None
    # True: everything the program starts dies with the spawned process (PID namespace).
    contained: bool


class Sandbox:
    """Builds launches from profiles; L{prepare} checks that this host can run them."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        # Why the sandbox cannot run here, once prepare() failed; parts that need it refuse.
        self.problem: str | None = None
        self.prepared = False
        self.cgroups: Cgroups | None = None
        self.limits_note = "rlimits"
        self._bwrap: str | None = None
        self._setpriv: str | None = None
        self._prlimit: str | None = None
        self._ids: tuple[int, int] | None = None
        self._identity_dir: Path | None = None

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
            raise
        self.prepared = True

    def require(self) -> None:
        """Raise L{SandboxUnavailable} unless L{prepare} succeeded."""
        if not self.prepared:
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
        self._identity_dir = Path(tempfile.mkdtemp(prefix="jupybot-sandbox-"))
        self._identity_dir.chmod(0o755)
        for name, text in identity_files().items():
            path = self._identity_dir / name
            path.write_text(text)
            path.chmod(0o644)
        self._probe()
        if self.config.cgroups == "auto":
            found = find_cgroups()
            if isinstance(found, Cgroups):
                self.cgroups = found
                self.limits_note = f"{found.describe()} and rlimits"
            else:
                self.limits_note = f"rlimits only: {found}"

    def _probe(self) -> None:
        """Run `true` in a sandbox like a program's: the kernel may forbid user namespaces."""
        error = self.try_run(SandboxProfile(argv=("/bin/true",)))
        if error is not None:
            raise SandboxUnavailable(
                f"bubblewrap cannot create namespaces here ({error}); "
                "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                "user.max_user_namespaces > 0, or the AppArmor profile for bwrap), "
                "or set sandbox.mode: none"
            )

    def try_run(self, profile: SandboxProfile) -> str | None:
        """Run C{profile} once, to its end, outside any session: None if it exited 0, else
        why not (bubblewrap's last word: a path the sandbox user cannot read, say)."""
        launch = self.launch(profile, name=None)
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
        return f"bubblewrap {who}; limits: {self.limits_note}"

    def close(self) -> None:
        if self._identity_dir is not None:
            shutil.rmtree(self._identity_dir, ignore_errors=True)
            self._identity_dir = None
        if self.cgroups is not None:
            self.cgroups.close()

    def launch(self, profile: SandboxProfile, name: str | None) -> Launch:
        """The argv and environment that run C{profile}; C{name} names its cgroup."""
        assert self._prlimit is not None, "prepare() first"
        limits = profile.limits
        prlimit = [
            self._prlimit,
            f"--as={limits.memory_mb * MEGABYTE}",
            f"--fsize={limits.file_size_mb * MEGABYTE}",
            f"--nofile={min(limits.open_files, _hard_open_file_limit())}",
            "--core=0",
            *([f"--cpu={limits.cpu_seconds}"] if limits.cpu_seconds else []),
        ]
        if not self.enabled:
            # The process count is per user id without cgroups: the kernel counts every process
            # of jupybot's user.
            prlimit.append(f"--nproc={limits.processes}")
            home = profile.cwd if os.path.isdir(profile.cwd) else tempfile.gettempdir()
            env = sandbox_env(profile.env) | {
                "HOME": home,
                "PATH": os.environ.get("PATH", INSIDE_PATH),
            }
            # Nothing ends an unsandboxed program with its parent (a gateway killed under its
            # kernels, say) but the parent-death signal, which survives the execs that follow.
            assert self._setpriv is not None
            argv = [self._setpriv, "--pdeathsig=KILL", "--", *prlimit, "--", *profile.argv]
            return Launch(argv, env, None, contained=False)
        assert self._bwrap is not None and self._identity_dir is not None
        cgroup = None
        if self.cgroups is not None and name is not None:
            cgroup = self.cgroups.create(
                name, CgroupLimits(limits.memory_mb, limits.processes, limits.cpu_percent)
            )
        else:
            # A backstop only: without cgroups the count is shared by every sandbox.
            prlimit.append(f"--nproc={max(limits.processes, 1024)}")
        argv = [*prlimit, "--", self._bwrap, *bubblewrap_args(profile, self._identity_dir)]
        argv += ["--", *profile.argv]
        if self._ids is not None:
            uid, gid = self._ids
            assert self._setpriv is not None
            argv = [
                self._setpriv,
                f"--reuid={uid}",
                f"--regid={gid}",
                "--clear-groups",
                "--no-new-privs",
                "--",
                *argv,
            ]
        if cgroup is not None:
            argv = ["/bin/sh", "-c", _JOIN_SCRIPT, "jupybot-join", *cgroup.procs_files, "--", *argv]
        return Launch(argv, sandbox_env(profile.env), cgroup, contained=True)

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


def _hard_open_file_limit() -> int:
    """What prlimit may grant a program at most: jupybot's own hard limit (it cannot raise it;
    asking for more fails every launch)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 20

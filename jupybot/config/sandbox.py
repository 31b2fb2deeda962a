"""`sandbox:`: how visitor programs and embedded kernels are contained. Owned by jupybot.sandbox."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader

BUBBLEWRAP = "bubblewrap"
NONE = "none"


@dataclass(frozen=True)
class SandboxConfig:
    # bubblewrap: every program and embedded kernel in its own namespaces; none: no sandbox at
    # all (a warning at every start; only for a host where nobody but the owner runs code).
    mode: str = BUBBLEWRAP
    # Who sandboxed processes run as when jupybot itself runs as root.
    user: str = "nobody"
    # auto: per-session memory, process and CPU limits in cgroups where jupybot may create them,
    # rlimits otherwise; off: rlimits only.
    cgroups: str = "auto"
    # default: the syscall filter of jupybot/sandbox/seccomp.py in every sandbox; none: no
    # filter (a warning at every start: keyrings, io_uring, perf, vsock... are then open).
    seccomp: str = "default"
    # PTYs a sandboxed program may open beyond its terminal (script, tmux, pexpect): a devpts
    # instance of its own with this bound. Without it a session took about 1,000 of the
    # host's 4,096 (kernel.pty.max).
    max_ptys: int = 4
    # When jupybot runs as root: host uids (and gids of the same numbers) that no user, group,
    # subordinate range or process has, one per terminal session for its lifetime, so that
    # what the kernel counts per user is counted per session; none: every sandbox runs as
    # `user`. Checked at start.
    uids: str = "70000-71023"
    # The budget of all sessions and kernels together (cgroups only: the group above them
    # all): memory in MB (0: three quarters of the host's) and processes (0: 4096).
    total_memory_mb: int = 0
    total_processes: int = 0

    @classmethod
    def read(cls, r: Reader) -> SandboxConfig:
        default = cls()
        config = cls(
            mode=r.choice("mode", default.mode, (BUBBLEWRAP, NONE)),
            user=r.string("user", default.user),
            cgroups=r.choice("cgroups", default.cgroups, ("auto", "off")),
            seccomp=r.choice("seccomp", default.seccomp, ("default", NONE)),
            max_ptys=r.integer("max_ptys", default.max_ptys, minimum=0, maximum=1024),
            uids=r.string("uids", default.uids),
            total_memory_mb=r.integer("total_memory_mb", 0, minimum=0),
            total_processes=r.integer("total_processes", 0, minimum=0),
        )
        if not config.user:
            r.error("user", "expected a user name or a numeric uid")
        if config.uids != NONE and parse_uid_range(config.uids) is None:
            r.error("uids", "expected FIRST-LAST, ids from 65536 to 4294967292, or none")
        r.finish()
        return config

    @property
    def enabled(self) -> bool:
        return self.mode != NONE

    @property
    def filtered(self) -> bool:
        """Whether sandboxes get the syscall filter (only bubblewrap's can)."""
        return self.enabled and self.seccomp != NONE


# setpriv and the kernel take any id below this; (uid_t)-1 and -2 mean "unchanged"/overflow.
MAX_ID = 2**32 - 3


def parse_uid_range(text: str) -> range | None:
    """C{"FIRST-LAST"} -> a range of ids above the system's and below the special ones, or
    None if C{text} is not one."""
    first, dash, last = text.partition("-")
    if not dash or not first.strip().isdigit() or not last.strip().isdigit():
        return None
    low, high = int(first), int(last)
    if not 65536 <= low <= high <= MAX_ID:
        return None
    return range(low, high + 1)

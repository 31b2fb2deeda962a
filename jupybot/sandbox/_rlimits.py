"""A launch's rlimits, set either by ``prlimit`` (an unsandboxed launch), by the ``ulimit``
builtin of the sandboxed launch's first ``sh`` (one exec fewer: about 2 ms of an open), or by a
PTY child jupybot forks itself (L{Rlimits.apply}).

``ulimit``'s options and units are the shell's own: these are dash's (Debian's ``/bin/sh``),
and L{shell_sets} checks at start, in ``/proc/self/limits``, that this host's ``sh`` sets
exactly what ``prlimit`` would; where it does not, sandboxes keep ``prlimit``."""

from __future__ import annotations

import resource
import subprocess
from dataclasses import dataclass

__all__ = ["Rlimits", "shell_sets"]

# resource -> (prlimit's option, dash's ulimit option, the unit of dash's value in bytes, the
# name /proc/self/limits gives it, setrlimit's resource)
_RESOURCES = {
    "fsize": ("--fsize", "-f", 512, "Max file size", resource.RLIMIT_FSIZE),
    "nofile": ("--nofile", "-n", 1, "Max open files", resource.RLIMIT_NOFILE),
    "core": ("--core", "-c", 512, "Max core file size", resource.RLIMIT_CORE),
    "cpu": ("--cpu", "-t", 1, "Max cpu time", resource.RLIMIT_CPU),
    "nproc": ("--nproc", "-p", 1, "Max processes", resource.RLIMIT_NPROC),
    "as": ("--as", "-v", 1024, "Max address space", resource.RLIMIT_AS),
}


@dataclass(frozen=True)
class Rlimits:
    """Soft and hard limit alike, by resource (bytes, counts or seconds); a resource left out
    keeps what jupybot has."""

    values: tuple[tuple[str, int], ...]

    def prlimit_options(self) -> list[str]:
        return [f"{_RESOURCES[name][0]}={value}" for name, value in self.values]

    def ulimit_arguments(self) -> list[str]:
        """(option, value) pairs for the launch's ``ulimit`` loop."""
        pairs = []
        for name, value in self.values:
            _, option, unit, _, _ = _RESOURCES[name]
            pairs += [option, str(value // unit)]
        return pairs

    def apply(self) -> None:
        """Set them on this process (a forked child, before it execs the launch)."""
        for name, value in self.values:
            resource.setrlimit(_RESOURCES[name][4], (value, value))

    def in_proc_limits(self, text: str) -> bool:
        """Whether /proc/PID/limits (C{text}) shows every one of these, soft and hard."""
        shown = {}
        for line in text.splitlines()[1:]:
            # "Max open files            1024                 1024                 files"
            fields = line[26:].split()
            if len(fields) >= 2:
                shown[line[:26].strip()] = (fields[0], fields[1])
        return all(
            shown.get(_RESOURCES[name][3]) == (str(value), str(value))
            for name, value in self.values
        )


def shell_sets(script: list[str], limits: Rlimits) -> bool:
    """Whether C{script} (the launch's first C{sh}, its arguments up to its ulimit pairs) given
    C{limits}' pairs sets exactly C{limits}: run once at start, with /bin/cat showing them."""
    argv = [*script, *limits.ulimit_arguments(), "--", "/bin/cat", "/proc/self/limits"]
    try:
        result = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and limits.in_proc_limits(
        result.stdout.decode("ascii", "replace")
    )

"""Containment for what strangers run: bubblewrap namespaces, cgroups and rlimits per session."""

from .cgroups import CgroupLimits, Cgroups, SessionCgroup, find_cgroups
from .profile import INSIDE_HOME, Limits, SandboxProfile
from .sandbox import Launch, Sandbox, SandboxBusy, SandboxUnavailable

__all__ = [
    "INSIDE_HOME",
    "CgroupLimits",
    "Cgroups",
    "Launch",
    "Limits",
    "Sandbox",
    "SandboxBusy",
    "SandboxProfile",
    "SandboxUnavailable",
    "SessionCgroup",
    "find_cgroups",
]

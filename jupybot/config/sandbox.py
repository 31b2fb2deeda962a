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

    @classmethod
    def read(cls, r: Reader) -> SandboxConfig:
        default = cls()
        config = cls(
            mode=r.choice("mode", default.mode, (BUBBLEWRAP, NONE)),
            user=r.string("user", default.user),
            cgroups=r.choice("cgroups", default.cgroups, ("auto", "off")),
        )
        if not config.user:
            r.error("user", "expected a user name or a numeric uid")
        r.finish()
        return config

    @property
    def enabled(self) -> bool:
        return self.mode != NONE

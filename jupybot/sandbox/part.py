"""The sandbox as a part: prepared before the parts that run strangers' code, shown by /ping."""

from __future__ import annotations

from ..parts import RetryingPart
from ..reactor import Clock
from .sandbox import Sandbox

__all__ = ["SandboxPart"]


class SandboxPart(RetryingPart):
    """Checks at start that this host can contain programs and kernels, and says how.

    If it cannot, this part fails with the reason and what to allow; the terminal and the
    embedded kernels then refuse to start, and every other part keeps serving. When the reason
    passes by itself (the sandbox's user at its process limit: L{SandboxBusy}), the part, and
    the parts that refused, try again on a backoff.
    """

    def __init__(self, sandbox: Sandbox, clock: Clock) -> None:
        super().__init__("sandbox", clock)
        self.sandbox = sandbox

    def start_part(self) -> None:
        self.sandbox.prepare()
        self.detail = self.sandbox.describe()
        if self.sandbox.enabled:
            self.log.info("sandbox: {how}", how=self.sandbox.describe())
            if not self.sandbox.config.filtered:
                self.log.warn(
                    "sandbox: seccomp is none: sandboxed programs and kernels may use every "
                    "syscall, keyrings, io_uring, perf and vsock sockets included"
                )
        else:
            self.log.warn(
                "sandbox: mode is none: visitor programs and kernels run UNSANDBOXED, "
                "with jupybot's user and files within their reach"
            )

    def stop_part(self) -> None:
        self.sandbox.close()

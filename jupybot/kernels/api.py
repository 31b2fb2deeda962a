"""The kernel core's public API (docs/kernels.md): platform-neutral, Twisted-native.

Owners are opaque strings chosen by chat adapters, e.g. ``"matrix:!room:server"``. The base
L{KernelManager} answers that kernels are unavailable (a server without the kernels part);
L{GatewayKernelManager} is the real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from twisted.internet.defer import Deferred, fail


class KernelError(Exception):
    """A kernel operation failed; C{str()} is a message fit to show to people."""


class NoSuchKernel(KernelError):
    """The owner has no kernel by that name (or the gateway forgot it: HTTP 404)."""


class KernelLimitReached(KernelError):
    """Starting another kernel would exceed the global or per-owner limit."""


class GatewayUnavailable(KernelError):
    """The Kernel Gateway cannot be reached or refused the request."""


class KernelDied(KernelError):
    """The kernel process died while in use."""


class UnknownKernelSpec(KernelError):
    """The gateway has no kernelspec by that name."""


@dataclass(frozen=True)
class KernelSpec:
    name: str
    display_name: str
    language: str


@dataclass(frozen=True)
class KernelHandle:
    """One running kernel as an owner knows it: C{name} is the owner's label for it."""

    name: str
    kernel_id: str
    spec: str
    owner: str
    started_at: float = 0.0


@dataclass(frozen=True)
class Stream:
    name: str  # "stdout" or "stderr"
    text: str


@dataclass(frozen=True)
class DisplayData:
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    display_id: str | None = None


@dataclass(frozen=True)
class UpdateDisplayData:
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    display_id: str | None = None


@dataclass(frozen=True)
class ClearOutput:
    wait: bool


@dataclass(frozen=True)
class ExecuteResult:
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    count: int | None = None


@dataclass(frozen=True)
class ErrorOutput:
    ename: str
    evalue: str
    traceback: tuple[str, ...] = ()


OutputEvent = Stream | DisplayData | UpdateDisplayData | ClearOutput | ExecuteResult | ErrorOutput

ExecutionStatus = Literal["ok", "error", "aborted", "timeout", "died"]


@dataclass(frozen=True)
class ExecutionResult:
    status: ExecutionStatus
    execution_count: int | None
    duration_seconds: float
    message: str | None = None  # what happened, for people
    # The kernel was restarted to end this run (a time limit): its variables are gone.
    restarted: bool = False


class ExecutionListener(Protocol):
    """What an execution reports to its caller while it runs."""

    def on_output(self, event: OutputEvent) -> None: ...

    def on_input_request(self, prompt: str, password: bool) -> Deferred[str]: ...


def _not_built() -> Deferred[Any]:
    return fail(GatewayUnavailable("Kernels are not available yet on this server."))


class KernelManager:
    """All kernels of one server, keyed by owner. Built by C{build_kernels()}."""

    def kernelspecs(self) -> Deferred[list[KernelSpec]]:
        return _not_built()

    def start(
        self, owner: str, spec: str | None = None, name: str | None = None
    ) -> Deferred[KernelHandle]:
        return _not_built()

    def kernels(self, owner: str) -> list[KernelHandle]:
        return []

    def current(self, owner: str) -> KernelHandle | None:
        return None

    def use(self, owner: str, name: str) -> KernelHandle:
        raise NoSuchKernel(f"You have no kernel named {name!r}.")

    def execute(
        self,
        owner: str,
        code: str,
        listener: ExecutionListener,
        name: str | None = None,
        allow_stdin: bool = True,
        silent: bool = False,
    ) -> Deferred[ExecutionResult]:
        """Run C{code}; starts the owner's default kernel when it has none.

        C{silent}: the kernel keeps no trace of it (no history, no execution count, no C{_}),
        for jupybot's own work in a room's kernel (put, get); its output still comes."""
        return _not_built()

    def interrupt(self, owner: str, name: str | None = None) -> Deferred[None]:
        return _not_built()

    def restart(self, owner: str, name: str | None = None) -> Deferred[None]:
        return _not_built()

    def stop(self, owner: str, name: str | None = None) -> Deferred[None]:
        return _not_built()

"""A stand-in kernel manager for the Matrix plumbing tests while the real kernel core lands."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

from jupybot.kernels import (
    ExecuteResult,
    ExecutionListener,
    ExecutionResult,
)
from tests.commands.fakes import FakeKernels


class CannedKernels(FakeKernels):
    """Executes by echoing: ``run X`` answers ``X`` as an execute result, at once."""

    def execute(
        self,
        owner: str,
        code: str,
        listener: ExecutionListener,
        name: str | None = None,
        allow_stdin: bool = True,
    ) -> Deferred[ExecutionResult]:
        self.calls.append(("execute", owner, code))
        listener.on_output(ExecuteResult({"text/plain": f"echo: {code}"}, {}, 1))
        return succeed(ExecutionResult("ok", len(self.calls), 0.001))

"""An execution the kernel was restarted to end says so in its result (the notebook of a room
forgets that kernel's cells: its variables are gone)."""

from __future__ import annotations

from twisted.internet.task import Clock

from jupybot.kernels import ExecutionResult
from jupybot.kernels.execution import Execution
from tests.kernels.listener import RecordingListener


def test_a_restart_to_end_it_is_in_the_result() -> None:
    execution = Execution(RecordingListener(), Clock(), lambda value, parent: None)
    execution.override("timeout", "interrupted")
    execution.override("timeout", "restarted: its variables are lost", restarted=True)
    execution.finish("aborted")
    result = execution.result.result
    assert isinstance(result, ExecutionResult)
    assert (result.status, result.restarted) == ("timeout", True)
    plain = Execution(RecordingListener(), Clock(), lambda value, parent: None)
    plain.override("timeout", "interrupted")
    plain.finish("error")
    ended = plain.result.result
    assert isinstance(ended, ExecutionResult) and ended.restarted is False

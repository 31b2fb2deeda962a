"""Recent runs, so that editing a command or reacting 🔁 to its reply can run it again."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

__all__ = ["RERUN_REACTION", "RunRecord", "RunRecords"]

RERUN_REACTION = "🔁"


@dataclass
class RunRecord:
    command_id: str
    sender: str  # who sent the command: only they may edit it into another run
    code: str
    kernel: str | None
    at: float  # when it last ran
    reply_id: str | None = None  # the reply showing its output, once sent


class RunRecords:
    """The runs of the last C{window} seconds of each conversation, by command and by reply."""

    def __init__(self, clock: IReactorTime, window: float) -> None:
        self._clock = clock
        self._window = window
        self._records: OrderedDict[tuple[str, str], RunRecord] = OrderedDict()
        self._by_reply: dict[tuple[str, str], str] = {}

    def ran(
        self, room: str, command_id: str, sender: str, code: str, kernel: str | None
    ) -> RunRecord:
        """C{command_id} runs (again) now with C{code}; its sender and reply stay as they were."""
        self._forget_old()
        key = (room, command_id)
        record = self._records.pop(key, None)
        if record is None:
            record = RunRecord(command_id, sender, code, kernel, self._clock.seconds())
        else:
            record.code, record.kernel, record.at = code, kernel, self._clock.seconds()
        self._records[key] = record  # the newest last
        return record

    def replied(self, room: str, command_id: str, reply_id: str) -> None:
        record = self._records.get((room, command_id))
        if record is not None and record.reply_id != reply_id:
            record.reply_id = reply_id
            self._by_reply[(room, reply_id)] = command_id

    def find(self, room: str, command_id: str) -> RunRecord | None:
        """The run of C{command_id}, if it ran within the window."""
        self._forget_old()
        return self._records.get((room, command_id))

    def find_by_reply(self, room: str, reply_id: str) -> RunRecord | None:
        self._forget_old()
        command_id = self._by_reply.get((room, reply_id))
        return None if command_id is None else self._records.get((room, command_id))

    def _forget_old(self) -> None:
        oldest = self._clock.seconds() - self._window
        while self._records:
            key, record = next(iter(self._records.items()))
            if record.at >= oldest:
                break
            del self._records[key]
            if record.reply_id is not None:
                self._by_reply.pop((key[0], record.reply_id), None)

"""Log observers for twistd: readable text or JSON lines, at a level, never showing a secret."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

from .config import Secret
from .redaction import Redactor

# The owner reads the logs: hiding even a short secret there costs little.
_MIN_LOGGED_SECRET = 4


@implementer(ILogObserver)
class RedactingObserver:
    """Replaces any configured secret in an event's message before it reaches C{observer}.

    Secrets are never logged on purpose; this catches the accident (a library that logs a URL
    with a token in it, a repr() of a request).
    """

    def __init__(self, observer: ILogObserver, secrets: Iterable[Secret]) -> None:
        self._observer = observer
        self._redact = Redactor(secrets, _MIN_LOGGED_SECRET)

    def __call__(self, event: LogEvent) -> None:
        if self._redact:
            event = self._redacted(event)
        self._observer(event)

    def _redacted(self, event: LogEvent) -> LogEvent:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        redacted = self._redact(text)
        if redacted == text:
            return event
        clean = {k: v for k, v in event.items() if k.startswith("log_") and k != "log_failure"}
        clean["log_format"] = "{redacted_text}"
        clean["redacted_text"] = redacted
        return clean


def open_log_file(path: str | None) -> IO[str]:
    if not path or path == "-":
        return sys.stdout
    log_file: IO[str] = LogFile.fromFullPath(path)
    return log_file


def make_observer(
    log_format: str, level: str, secrets: Iterable[Secret], output: IO[str]
) -> ILogObserver:
    """The observer twistd uses for jupybot: text or JSON lines, filtered, redacted."""
    observer = jsonFileLogObserver(output) if log_format == "json" else textFileLogObserver(output)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    return RedactingObserver(FilteringLogObserver(observer, [predicate]), secrets)

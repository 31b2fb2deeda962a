"""Secrets out of kernel output before it becomes a chat reply (see L{ExecutionReporter})."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from ..kernels import (
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    OutputEvent,
    Stream,
    UpdateDisplayData,
)
from ..redaction import Redactor

# Chat replies are read by everyone in the room: a shorter "secret" (a 4-letter word, a short
# number) would be cut out of ordinary output far more often than it would protect anything.
MIN_SECRET_CHARS = 8


def redact_events(events: Sequence[OutputEvent], redact: Redactor) -> list[OutputEvent]:
    """C{events} with every secret in their text, data and tracebacks replaced.

    This happens before rendering, so a secret is gone from the text, the HTML, the uploads and
    the traceback before any of them is cut to size (a cut could keep half of one). Consecutive
    texts of one stream are joined first, as the renderer joins them, so a secret written in two
    pieces is still found.
    """
    if not redact:
        return list(events)
    redacted: list[OutputEvent] = []
    for event in _join_streams(events):
        if isinstance(event, Stream):
            redacted.append(Stream(event.name, redact(event.text)))
        elif isinstance(event, ErrorOutput):
            redacted.append(
                ErrorOutput(
                    redact(event.ename),
                    redact(event.evalue),
                    tuple(redact(line) for line in event.traceback),
                )
            )
        elif isinstance(event, (DisplayData, UpdateDisplayData, ExecuteResult)):
            redacted.append(replace(event, data=_redact_value(event.data, redact)))
        else:
            redacted.append(event)
    return redacted


def _join_streams(events: Iterable[OutputEvent]) -> Iterable[OutputEvent]:
    pending: list[str] = []
    name = ""
    for event in events:
        if isinstance(event, Stream):
            if pending and event.name != name:
                yield Stream(name, "".join(pending))
                pending = []
            name = event.name
            pending.append(event.text)
            continue
        if pending:
            yield Stream(name, "".join(pending))
            pending = []
        yield event
    if pending:
        yield Stream(name, "".join(pending))


def _redact_value(value: Any, redact: Redactor) -> Any:
    """Every string of a MIME bundle, JSON data included (a base64 image holds no secret's
    text but by a chance too small to matter)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_value(item, redact) for item in value]
    return value

"""The terminal part: visitors try the catalogue's programs in the browser (docs/terminal.md).

Core (L{TerminalSessions}, L{PtySession}) apart from the web adapter (websockets, the page).
"""

from __future__ import annotations

from .part import TerminalPart, build_terminal
from .pty import ExitStatus, OutputSink, ProgramNotFound, PtySession
from .sessions import Session, SessionRefused, TerminalSessions, Viewer

__all__ = [
    "ExitStatus",
    "OutputSink",
    "ProgramNotFound",
    "PtySession",
    "Session",
    "SessionRefused",
    "TerminalPart",
    "TerminalSessions",
    "Viewer",
    "build_terminal",
]

"""The terminal part: the sessions' owner, and the page and websockets it puts on the site."""

from __future__ import annotations

import shutil

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource

from ..config import Config
from ..parts import PartContext, Reactor
from ..service import JupybotService, Part
from .page import ProgramList, ProgramPage, static_files
from .pty import PYTHON
from .sessions import TerminalSessions
from .websocket import LineModeProtocol, RawTerminalProtocol, TerminalFactory

__all__ = ["TerminalPart", "build_terminal"]


class TerminalPart(Part):
    """Owns the sessions; stopping it ends every program (and everything they started)."""

    def __init__(self, config: Config, reactor: Reactor) -> None:
        super().__init__("terminal")
        self.sessions = TerminalSessions(
            reactor, config.terminal, {p.name: p for p in config.programs}
        )
        self._programs = config.programs

    def start_part(self) -> None:
        for program in self._programs:
            executable = program.argv[0]
            if executable != PYTHON and shutil.which(executable) is None:
                self.log.warn(
                    "terminal: program {name}: {executable!r} is not installed; "
                    "visitors who pick it get an error",
                    name=program.name,
                    executable=executable,
                )
        if shutil.which("prlimit") is None:
            self.log.error("terminal: prlimit (util-linux) is missing: no program can start")

    def stop_part(self) -> Deferred[None]:
        return self.sessions.close_all().addCallback(lambda _: None)

    def resources(self, config: Config, reactor: Reactor) -> dict[bytes, Resource]:
        def factory(protocol: type[WebSocketServerProtocol]) -> TerminalFactory:
            made = TerminalFactory(
                self.sessions, config.web.origins, config.terminal.token, reactor
            )
            made.protocol = protocol
            return made

        websockets = Resource()
        websockets.putChild(b"ws", WebSocketResource(factory(RawTerminalProtocol)))
        websockets.putChild(b"line", WebSocketResource(factory(LineModeProtocol)))
        return {
            b"": ProgramPage(self._programs),
            b"programs.json": ProgramList(self._programs),
            b"static": static_files(),
            b"terminal": websockets,
        }


def build_terminal(context: PartContext, top: JupybotService, web_root: Resource) -> None:
    """The terminal part with its page on C{web_root}, unless `terminal.enabled` is false."""
    config = context.config
    if not config.terminal.enabled:
        top.add_disabled("terminal", "terminal.enabled is false")
        return
    part = TerminalPart(config, context.reactor)
    for name, resource in part.resources(config, context.reactor).items():
        web_root.putChild(name, resource)
    top.add_part(part)

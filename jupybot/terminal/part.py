"""The terminal part: the sessions' owner, and the page and websockets it puts on the site."""

from __future__ import annotations

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.defer import Deferred
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory

from ..config import Config
from ..parts import PartContext, RetryingPart
from ..reactor import Clock, PtyReactor
from ..sandbox import Sandbox, SandboxBusy
from ..service import JupybotService
from ..web.clients import ProxyTrust
from .page import EmbedScript, ProgramList, ProgramPage, static_files
from .programs import program_problems
from .pty import KILL_GRACE
from .sessions import TerminalSessions
from .websocket import LineModeProtocol, RawTerminalProtocol, TerminalFactory

__all__ = ["TerminalPart", "build_terminal"]


class ProgramsUnavailable(Exception):
    """A program of the catalogue cannot run here; the message names each mistake."""


class TerminalPart(RetryingPart):
    """Owns the sessions; stopping it ends every program (and everything they started). While
    the sandbox is busy (its user at its process limit), the start is tried again on a
    backoff."""

    # The whole SIGHUP, SIGTERM, SIGKILL sequence, and a second for the kernel to reap.
    stop_needs = 2 * KILL_GRACE + 1.0

    def __init__(self, config: Config, reactor: PtyReactor, sandbox: Sandbox) -> None:
        super().__init__("terminal", reactor)
        self.sessions = TerminalSessions(
            reactor, config.terminal, {p.name: p for p in config.programs}, sandbox
        )
        self._programs = config.programs
        self._sandbox = sandbox

    def start_part(self) -> None:
        """Serve every program that can run in its sandbox; one that cannot is the owner's to
        fix (the log and /ping name the mistake), not a visitor's to find, and the others
        still serve. Fails only when no program can run."""
        self._sandbox.require()
        broken: dict[str, list[str]] = {}
        for index, program in enumerate(self._programs):
            problems = program_problems(program, self._sandbox, f"programs[{index}]")
            if problems:
                broken[program.name] = problems
                self.sessions.withdraw(program.name)
            else:
                self.sessions.withdrawn.discard(program.name)  # tried again, and it runs
        if broken and len(broken) == len(self._programs):
            found = "; ".join(p for problems in broken.values() for p in problems)
            busy = self._sandbox.busy_problem(found)
            if busy is not None:
                raise SandboxBusy(f"no program could be tried: {busy}")
            raise ProgramsUnavailable(found)
        for problem in (p for found in broken.values() for p in found):
            self.log.error("terminal: a program will not start: {problem}", problem=problem)
        if broken:
            self.detail = "not available: " + "; ".join(
                f"{name} ({'; '.join(found)})" for name, found in broken.items()
            )

    def stop_part(self) -> Deferred[None]:
        return self.sessions.close_all().addCallback(lambda _: None)

    def resources(self, config: Config, reactor: Clock) -> dict[bytes, Resource]:
        def factory(protocol: type[WebSocketServerProtocol]) -> TerminalFactory:
            made = TerminalFactory(
                self.sessions,
                config.web.origins,
                config.terminal.token,
                reactor,
                proxies=ProxyTrust.of(config.web),
            )
            made.protocol = protocol
            return made

        websockets = Resource()
        websockets.putChild(b"ws", WebSocketResource(factory(RawTerminalProtocol)))
        websockets.putChild(b"line", WebSocketResource(factory(LineModeProtocol)))
        return {
            b"": ProgramPage(
                self._programs,
                config.web.title,
                config.web.intro,
                config.terminal.max_frame_kb,
            ),
            b"programs.json": ProgramList(self._programs),
            # xterm.js is most of it: 330 KB, 80 KB gzipped.
            b"embed.js": EncodingResourceWrapper(EmbedScript(), [GzipEncoderFactory()]),
            b"static": static_files(),
            b"terminal": websockets,
        }


def build_terminal(
    context: PartContext, top: JupybotService, web_root: Resource, sandbox: Sandbox
) -> TerminalSessions | None:
    """The terminal part with its page on C{web_root}, unless `terminal.enabled` is false;
    every program runs in C{sandbox}. Returns its sessions (what /metrics reads)."""
    config = context.config
    if not config.terminal.enabled:
        top.add_disabled("terminal", "terminal.enabled is false")
        return None
    part = TerminalPart(config, context.reactor, sandbox)
    for name, resource in part.resources(config, context.reactor).items():
        web_root.putChild(name, resource)
    top.add_part(part)
    return part.sessions

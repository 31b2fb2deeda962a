"""The terminal core: which sessions run, for whom, for how long, and how a browser resumes one.

Knows nothing of websockets: a viewer is any L{Viewer}; the web adapter is one of them.
"""

from __future__ import annotations

import secrets
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorThreads
from twisted.logger import Logger

from ..config.terminal import ProgramConfig, TerminalConfig
from ..reactor import Clock, PtyReactor
from ..sandbox import Sandbox
from ..sandbox.remover import CgroupRemover
from .programs import host_cwd, launch_program
from .pty import ExitStatus, ProgramNotFound, PtySession

log = Logger()

# A program that ends badly this soon after it started crashed at start (a runtime that cannot
# live within its limits, a missing library): counted, and logged for the owner.
FAILED_START_SECONDS = 2.0

# How a line-mode answer ends: the program waits for input again (a whole answer); it exited;
# the session reached `session_seconds` or `idle_seconds`; the server stopped; the client left
# before the answer came.
ANSWER_ENDINGS = ("waiting", "exited", "time-limit", "idle", "shutdown", "closed")


class SessionRefused(Exception):
    """A session cannot be opened or resumed; C{reason} is a short code, C{str()} for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Viewer(Protocol):
    """Who watches a session: output, the program's end, and the server ending it."""

    def output(self, data: bytes) -> None: ...

    def ended(self, status: ExitStatus) -> None: ...

    def stopped(self, reason: str, message: str) -> None: ...


class ReplayBuffer:
    """The last C{capacity} bytes of output (at least), addressed by their offset in the whole
    output. Kept as chunks, so a flood costs no copying beyond the chunks themselves."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.total = 0
        self._chunks: deque[bytes] = deque()
        self._kept = 0

    def append(self, data: bytes) -> None:
        self.total += len(data)
        self._chunks.append(data)
        self._kept += len(data)
        while self._chunks and self._kept - len(self._chunks[0]) >= self.capacity:
            self._kept -= len(self._chunks.popleft())

    def since(self, offset: int) -> bytes:
        """What was output after C{offset} bytes, as far as still kept (at most C{capacity})."""
        wanted = min(self.total - max(0, offset), self.capacity, self._kept)
        if wanted <= 0:
            return b""
        return b"".join(self._chunks)[-wanted:]


class Session:
    """One program and its bookkeeping: viewer, replay, timers, resume token."""

    def __init__(
        self, sessions: TerminalSessions, program: ProgramConfig, client_ip: str, viewer: Viewer
    ) -> None:
        self.id = secrets.token_hex(8)
        self.resume_token = secrets.token_urlsafe(24)
        self.program = program
        self.client_ip = client_ip
        self.viewer: Viewer | None = viewer
        self.replay = ReplayBuffer(sessions.config.replay_kb * 1024)
        self.pty: PtySession
        self._sessions = sessions
        self._idle: IDelayedCall | None = None
        self._deadline: IDelayedCall | None = None
        self._detached: IDelayedCall | None = None
        # True once the session no longer counts against the caps (it is ending).
        self.released = False
        self.started_at = sessions.reactor.seconds()

    # OutputSink, for the PtySession.

    def output(self, data: bytes) -> None:
        self.replay.append(data)
        if self.viewer is not None:
            self.viewer.output(data)

    def ended(self, status: ExitStatus) -> None:
        self._cancel_timers()
        self._sessions._forget(self)
        self._sessions.count_end(self, status)
        if self.viewer is not None:
            self.viewer.ended(status)

    # Timers.

    def start_timers(self, reactor: Clock) -> None:
        limits = self.program.limits
        self._deadline = reactor.callLater(
            limits.session_seconds,
            self.stop,
            "time-limit",
            f"This session reached its time limit of {limits.session_seconds:g} s.",
        )
        self.touch()

    def touch(self) -> None:
        """Input or output happened: the idle clock starts again."""
        limits = self.program.limits
        if self._idle is not None and self._idle.active():
            self._idle.reset(limits.idle_seconds)
        elif self.pty.running:
            self._idle = self._sessions.reactor.callLater(
                limits.idle_seconds,
                self.stop,
                "idle",
                f"This session was idle for {limits.idle_seconds:g} s and was closed.",
            )

    def stop(self, reason: str, message: str) -> Deferred[ExitStatus]:
        """End the session on the server's initiative, telling the viewer why."""
        if self.viewer is not None:
            self.viewer.stopped(reason, message)
        return self.pty.terminate()

    def _cancel_timers(self) -> None:
        for timer in (self._idle, self._deadline, self._detached):
            if timer is not None and timer.active():
                timer.cancel()

    # Viewers coming and going.

    def detach(self) -> None:
        self.viewer = None
        if not self.pty.running:
            return
        grace = self._sessions.config.resume_seconds
        if grace <= 0:
            self.pty.terminate()
            return
        # Nobody reads: the program waits (and keeps what it prints) until a viewer resumes.
        self.pty.pause_reading("detached")
        self._detached = self._sessions.reactor.callLater(grace, self._expire)

    def _expire(self) -> None:
        """Nobody resumed in time: the token is void at once, though the program may take a
        few seconds to end."""
        self._sessions._by_token.pop(self.resume_token, None)
        self.pty.terminate()

    def evict(self) -> None:
        """End a detached session now to make room for a visitor who is here: its slot is free
        at once, while its program takes its few seconds to end."""
        if self._detached is not None and self._detached.active():
            self._detached.cancel()
        self._sessions._release(self)
        self.pty.terminate()

    def attach(self, viewer: Viewer, received: int) -> bytes:
        if self._detached is not None and self._detached.active():
            self._detached.cancel()
        self._detached = None
        self.viewer = viewer
        self.pty.resume_reading("detached")
        return self.replay.since(received)


class TerminalSessions:
    """Every terminal session of the server, with the caps of `terminal:`."""

    def __init__(
        self,
        reactor: PtyReactor,
        config: TerminalConfig,
        programs: Mapping[str, ProgramConfig],
        sandbox: Sandbox,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.sandbox = sandbox
        self.programs = dict(programs)
        # Every session's cgroup is removed by this one, off the reactor; made with the first
        # session (a reactor that only builds the service tree need not run threads).
        self._remover: CgroupRemover | None = None
        # Programs that cannot run here (the owner was told why at start): refused to visitors.
        self.withdrawn: set[str] = set()
        # Every session whose program runs, ending ones included; the caps count those not
        # released yet.
        self._sessions: dict[str, Session] = {}
        self._by_token: dict[str, Session] = {}
        self._held = 0
        self._per_ip: Counter[str] = Counter()
        # Visitors refused at a cap, by refusal ("too-many", "busy"); read by /metrics.
        self.refused: Counter[str] = Counter()
        # Sessions started, and programs that ended badly at start, by program; for /metrics.
        self.started: Counter[str] = Counter()
        self.failed_at_start: Counter[str] = Counter()
        # Line-mode answers by program and how each ended (ANSWER_ENDINGS); for /metrics.
        self.line_answers: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        return len(self._sessions)

    def programs_running(self) -> Counter[str]:
        """How many sessions run each program, ending ones included (read by /metrics)."""
        return Counter(session.program.name for session in self._sessions.values())

    def withdraw(self, program_name: str) -> None:
        """C{program_name} cannot run here: visitors are told it is not available."""
        self.withdrawn.add(program_name)

    def open(
        self,
        program_name: str,
        cols: int,
        rows: int,
        client_ip: str,
        viewer: Viewer,
        line_mode: bool = False,
    ) -> Session:
        """Spawn C{program_name} at C{cols}x{rows} for C{viewer}, or raise L{SessionRefused}.
        (Adapters check what clients sent: a size within bounds, a name that is a string.)
        A C{line_mode} session's program is read by a script, not shown in a terminal."""
        program = self.programs.get(program_name)
        if program is None:
            known = ", ".join(sorted(self.programs)) or "none"
            raise SessionRefused(
                "unknown-program", f"There is no program {program_name!r}; available: {known}."
            )
        if program.name in self.withdrawn:
            raise SessionRefused("unavailable", f"{program.title} is not available right now.")
        # A visitor who is here comes before one who left (a reload, a closed tab, another
        # program picked): the oldest abandoned session makes room.
        if self._per_ip[client_ip] >= self.config.max_sessions_per_ip and not self._evict(
            client_ip
        ):
            self.refused["too-many"] += 1
            raise SessionRefused(
                "too-many", "You have as many sessions open as allowed; close one first."
            )
        if self._held >= self.config.max_sessions and not self._evict(None):
            self.refused["busy"] += 1
            raise SessionRefused("busy", "The server runs as many sessions as it can; try later.")
        session = Session(self, program, client_ip, viewer)
        try:
            launch = launch_program(program, self.sandbox, session.id, line_mode)
            session.pty = PtySession(
                self.reactor,
                program.name,
                launch,
                cols,
                rows,
                session,
                cwd=host_cwd(program, self.sandbox),
                remover=self._cgroups(),
            )
            session.pty.on_activity = session.touch
            session.pty.start()
        except ProgramNotFound as e:
            # Where the program should be is the owner's business, not the visitor's.
            log.error("terminal: cannot start {program}: {error}", program=program.name, error=e)
            raise SessionRefused(
                "unavailable", f"{program.title} is not available right now."
            ) from None
        except OSError as e:
            log.error("terminal: cannot start {program}: {error}", program=program.name, error=e)
            raise SessionRefused("unavailable", f"{program.title} cannot start here.") from None
        self.started[program.name] += 1
        self._sessions[session.id] = session
        self._by_token[session.resume_token] = session
        self._held += 1
        self._per_ip[client_ip] += 1
        session.start_timers(self.reactor)
        return session

    def resume(self, token: object, viewer: Viewer, received: int) -> tuple[Session, bytes]:
        """Give a detached session to a new viewer, with the output it missed."""
        session = self._by_token.get(token) if isinstance(token, str) else None
        if session is None or not session.pty.running:
            raise SessionRefused("expired", "That session has ended; start a new one.")
        if session.viewer is not None:
            raise SessionRefused("in-use", "That session is open in another window.")
        return session, session.attach(viewer, received)

    def _evict(self, client_ip: str | None) -> bool:
        """End the oldest detached session (of C{client_ip}, or of anyone); False if none."""
        for session in self._sessions.values():
            abandoned = session.viewer is None and not session.released
            if abandoned and client_ip in (None, session.client_ip):
                log.info(
                    "terminal: ending an abandoned session of {program} to make room",
                    program=session.program.name,
                )
                session.evict()
                return True
        return False

    def _release(self, session: Session) -> None:
        if session.released:
            return
        session.released = True
        self._by_token.pop(session.resume_token, None)
        self._held -= 1
        self._per_ip[session.client_ip] -= 1
        if self._per_ip[session.client_ip] <= 0:
            del self._per_ip[session.client_ip]

    def count_answer(self, program_name: str, ending: str) -> None:
        """A line-mode answer (to the start or a command) ended so (one of L{ANSWER_ENDINGS})."""
        self.line_answers[program_name, ending] += 1

    def count_end(self, session: Session, status: ExitStatus) -> None:
        """Count (and log) a program that ended badly right after it started."""
        if session.pty.terminated:
            return  # ended by jupybot (a visitor who left, a limit), not by itself
        if status.code == 0 or self.reactor.seconds() - session.started_at > FAILED_START_SECONDS:
            return
        self.failed_at_start[session.program.name] += 1
        log.warn(
            "terminal: {program} {status} at start; see its limits and files in config.yml",
            program=session.program.name,
            status=status.describe(),
        )

    def _forget(self, session: Session) -> None:
        if self._sessions.pop(session.id, None) is not None:
            self._release(session)

    def _cgroups(self) -> CgroupRemover:
        if self._remover is None:
            self._remover = CgroupRemover(self.reactor, IReactorThreads(self.reactor))
        return self._remover

    def close_all(self) -> Deferred[Any]:
        """Stop every session (server shutdown); fires when every program has ended and its
        cgroup is gone (the sandbox part removes their parents after)."""
        endings = [
            session.stop("shutdown", "The server is shutting down.")
            for session in list(self._sessions.values())
        ]
        ended = DeferredList(endings, consumeErrors=True)
        remover = self._remover  # None: no session ever started, no cgroup to wait for
        return ended.addCallback(lambda _: remover.idle() if remover is not None else None)

"""One program on a pseudo-terminal: spawned at the viewer's size, resized, flow-controlled, and
killed with every process it started.

The program is spawned as a L{Launch} (jupybot.sandbox) makes it. Sandboxed, it lives in a PID
namespace that dies with the spawned process, so ending it is one SIGKILL whatever it started.
Unsandboxed (``sandbox.mode: none``), Twisted's PTY child calls ``setsid()``, so the session id is
the child's pid and everything the program starts can be found in /proc and killed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import signal
import struct
import termios
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.internet.process import PTYProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..reactor import PtyReactor
from ..sandbox import Launch
from ..sandbox.remover import CgroupRemover
from ..sandbox.sandbox import ForkedLaunch
from . import _proc

log = Logger()

# Seconds between SIGHUP, SIGTERM and SIGKILL when a session ends.
KILL_GRACE = 2.0
MIN_SIZE, MAX_COLS, MAX_ROWS = 1, 1000, 500
# Seconds after the spawned process is reaped before jupybot closes a terminal still held open.
ORPHAN_GRACE = 1.0


class ProgramNotFound(Exception):
    """The program's executable is not installed here."""


@dataclass(frozen=True)
class ExitStatus:
    code: int | None
    signal: int | None

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exited with status {self.code}"


class OutputSink(Protocol):
    """Where a session's output and end go (a websocket, a line-mode reader, a test)."""

    def output(self, data: bytes) -> None: ...

    def ended(self, status: ExitStatus) -> None: ...


def size_problem(cols: object, rows: object) -> str | None:
    """Why C{cols}x{rows} (as a client sent them) is no terminal size jupybot opens, or None."""
    if (
        isinstance(cols, int)
        and isinstance(rows, int)
        and not isinstance(cols, bool)
        and not isinstance(rows, bool)
        and MIN_SIZE <= cols <= MAX_COLS
        and MIN_SIZE <= rows <= MAX_ROWS
    ):
        return None
    return (
        f"Terminal size must be {MIN_SIZE}-{MAX_COLS} columns and {MIN_SIZE}-{MAX_ROWS} rows, "
        f"got {cols}x{rows}."
    )


class _PtyProtocol(ProcessProtocol):
    def __init__(self, session: PtySession) -> None:
        self.session = session

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.session._received(data)

    def processExited(self, reason: Failure) -> None:
        # Reaped: read the PTY to its end even if nobody watches, or processEnded never comes.
        self.session._exited()

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        if isinstance(value, ProcessDone):
            status = ExitStatus(0, None)
        elif isinstance(value, ProcessTerminated):
            status = ExitStatus(value.exitCode, value.signal)
            if self.session.contained and status.code is not None and 128 < status.code <= 192:
                # bubblewrap reports its program's death by signal N as status 128 + N.
                status = ExitStatus(None, status.code - 128)
        else:
            status = ExitStatus(None, None)
        self.session._process_ended(status)


# Linux hands a PTY's output out at most 4 KB per read(), however large the buffer; reading
# again at once pulls in what the program wrote meanwhile. Draining the PTY in one reactor turn
# (about 60 KB in a flood) costs one turn and one websocket frame instead of fifteen.
READ_SIZE = 64 * 1024
DRAIN_LIMIT = 256 * 1024


# Twisted's child lists /proc/self/fd to close what it inherited: with a thousand sessions open
# that is thousands of /proc entries per child, which the kernel frees when the child is reaped
# (75% of the server's CPU while 1000 sessions end, bench.terminal --only ending); close_range(2),
# which os.closerange uses, closes them in one call.
_FD_CEILING = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if _FD_CEILING == resource.RLIM_INFINITY:
    _FD_CEILING = 1 << 20


def _close_inherited_descriptors() -> None:
    os.closerange(3, _FD_CEILING)


class _DrainingPtyProcess(PTYProcess):
    """Twisted's PTY transport, reading the terminal until it is empty (up to L{DRAIN_LIMIT})
    each time the reactor says it is readable, where Twisted's reads once."""

    takes_terminal = True  # the child becomes the terminal's session leader

    def _setupChild(self, masterfd: int, slavefd: int) -> None:
        os.close(masterfd)
        os.setsid()
        if self.takes_terminal:
            fcntl.ioctl(slavefd, termios.TIOCSCTTY, 0)
        for fd in range(3):
            if fd != slavefd:
                os.close(fd)
        for fd in range(3):
            os.dup2(slavefd, fd)
        _close_inherited_descriptors()
        self._resetSignalDisposition()

    def doRead(self) -> object:
        """PTYProcess.doRead's results (None, or why the fd is done), with what was read
        delivered first, in one piece."""
        chunks: list[bytes] = []
        size = 0
        outcome: object = None
        while size < DRAIN_LIMIT:
            try:
                data = os.read(self.fd, READ_SIZE)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EINTR):
                    outcome = CONNECTION_LOST
                break
            if not data:
                outcome = CONNECTION_DONE
                break
            chunks.append(data)
            size += len(data)
        if chunks and self.proto is not None:
            self.proto.childDataReceived(1, b"".join(chunks) if len(chunks) > 1 else chunks[0])
        return outcome


class _SandboxPtyProcess(_DrainingPtyProcess):
    """A PTY child in a session of its own that leaves the terminal free: inside its PID
    namespace the program makes itself the terminal's session leader (``setsid --ctty``), so
    job control sees process groups it can name. Twisted's own PTY child takes the terminal for
    the process outside, whose group the program cannot see ("Cannot set tty process group").
    Given a L{ForkedLaunch}, the child does its first steps itself before it execs the rest."""

    takes_terminal = False
    forked: ForkedLaunch | None = None

    def __init__(self, *args: Any, forked: ForkedLaunch | None = None) -> None:
        self.forked = forked  # before PTYProcess.__init__ forks
        super().__init__(*args)

    def _setupChild(self, masterfd: int, slavefd: int) -> None:
        super()._setupChild(masterfd, slavefd)
        if self.forked is not None:
            try:
                self.forked.prepare_child()
            except OSError as e:
                # What the launch's sh would say, rather than Twisted's traceback of jupybot.
                os.write(2, f"jupybot: the sandbox cannot start: {e}\r\n".encode())
                os._exit(126)


class PtySession:
    """A running program. L{start} spawns it; L{ended} fires with its exit status. A program
    sandboxed in a cgroup needs a L{CgroupRemover} to remove that cgroup when it ends."""

    def __init__(
        self,
        reactor: PtyReactor,
        name: str,
        launch: Launch,
        cols: int,
        rows: int,
        sink: OutputSink,
        cwd: str | None = None,
        remover: CgroupRemover | None = None,
    ) -> None:
        self.name = name
        self._launch = launch
        self._cwd = cwd
        self._reactor = reactor
        self._sink = sink
        self._remover = remover
        self._size = (cols, rows)
        self._transport: PTYProcess | None = None
        self._master_fd: int | None = None
        self._tty_name: str | None = None
        self._paused_by: set[str] = set()
        self._killing: IDelayedCall | None = None
        # True once jupybot asked the program to end (it did not end by itself).
        self.terminated = False
        self.pid: int | None = None
        self._reaped = False
        self._orphan_check: IDelayedCall | None = None
        self.status: ExitStatus | None = None
        self.ended: Deferred[ExitStatus] = Deferred()
        # Fires once the sandbox's cgroup is gone and its host uid given back (or given up on).
        self.released: Deferred[None] = Deferred()
        self.on_activity: Callable[[], None] = lambda: None

    @property
    def contained(self) -> bool:
        return self._launch.contained

    @property
    def running(self) -> bool:
        return self.pid is not None and self.status is None

    @property
    def _live(self) -> PTYProcess | None:
        """The PTY's transport while the program runs."""
        return self._transport if self.running else None

    def start(self) -> None:
        forked = self._launch.forked
        argv = forked.argv if forked is not None else self._launch.argv
        master, slave = os.openpty()
        tty_name = os.ttyname(slave)
        try:
            _set_size(master, *self._size)
            # Built here rather than by reactor.spawnProcess, which can only make Twisted's own
            # PTYProcess; the arguments are the ones spawnProcess passes it.
            spawned = (
                self._reactor,
                argv[0],
                argv,
                self._launch.env,
                self._cwd,
                _PtyProtocol(self),
                None,
                None,
                (master, slave, tty_name),
            )
            if self._launch.contained:
                self._transport = _SandboxPtyProcess(*spawned, forked=forked)
            else:
                self._transport = _DrainingPtyProcess(*spawned)
        except Exception:
            os.close(master)
            os.close(slave)
            self._release_sandbox()
            raise
        transport = self._transport
        self._master_fd = master
        self._tty_name = tty_name  # Twisted closed our copy of the slave side after the fork
        self.pid = transport.pid
        log.info(
            "terminal: started {program} (pid {pid}, {cols}x{rows})",
            program=self.name,
            pid=self.pid,
            cols=self._size[0],
            rows=self._size[1],
        )

    def write(self, data: bytes) -> None:
        if (transport := self._live) is not None and data:
            transport.write(data)
            self.on_activity()

    def resize(self, cols: int, rows: int) -> None:
        """TIOCSWINSZ on the terminal: the kernel sends SIGWINCH to the foreground group."""
        self._size = (cols, rows)
        if self.running and self._master_fd is not None:
            _set_size(self._master_fd, cols, rows)

    def pause_reading(self, reason: str) -> None:
        """Stop reading output (the viewer is behind); the program blocks when the PTY fills."""
        if not self._paused_by and (transport := self._live) is not None:
            transport.pauseProducing()
        self._paused_by.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason not in self._paused_by:
            return
        self._paused_by.discard(reason)
        if not self._paused_by and (transport := self._live) is not None:
            transport.resumeProducing()

    def waiting_for_input(self) -> bool:
        """Is the program blocked waiting for terminal input (line mode's end of an answer)?"""
        if not self.running or self._master_fd is None:
            return False
        try:
            foreground = os.tcgetpgrp(self._master_fd)
        except OSError:
            return False
        return not self._input_pending() and _proc.is_waiting_for_input(
            foreground, self._tty_name or "", self.pid
        )

    def local_modes(self) -> int:
        """The terminal's local modes (termios C{c_lflag}: ECHO, ICANON...) as the program
        set them (Linux answers for the program's side on the master); 0 once it ended."""
        if not self.running or self._master_fd is None:
            return 0
        try:
            return int(termios.tcgetattr(self._master_fd)[3])
        except termios.error:
            return 0

    def throttle_input(self, producer: IPushProducer | None) -> None:
        """C{producer} (an C{IPushProducer}: the viewer's connection) is paused while more
        input waits to be written to the terminal than Twisted buffers (64 KB), and resumed
        once it is written. None: nobody any more."""
        if self._transport is None:
            return
        if self._transport.producer is not None:
            self._transport.unregisterProducer()
        if producer is not None and self.running:
            self._transport.registerProducer(producer, True)

    def _input_pending(self) -> bool:
        """Has the program still to read input written to it? (It is then not waiting yet.)"""
        if self._tty_name is None:
            return False
        try:
            fd = os.open(self._tty_name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            pending = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            return bool(pending)
        except OSError:
            return False
        finally:
            os.close(fd)

    def terminate(self) -> Deferred[ExitStatus]:
        """SIGHUP every process of the session, SIGTERM after a grace, then SIGKILL."""
        # Whatever the program prints while it ends is read (for nobody, maybe): a paused
        # program could not see its signals through, and its end would never be noticed.
        self._resume_all()
        self.terminated = True
        if self.running and self._killing is None:
            self._signal_session(signal.SIGHUP)
            self._killing = self._reactor.callLater(KILL_GRACE, self._escalate, signal.SIGTERM)
        return _chain(self.ended)

    def _escalate(self, signum: int) -> None:
        self._signal_session(signum)
        if signum == signal.SIGTERM:
            self._killing = self._reactor.callLater(KILL_GRACE, self._escalate, signal.SIGKILL)
        else:
            self._killing = None

    def _signal_session(self, signum: int) -> None:
        if self.pid is None:
            return
        if self._launch.contained:
            if not self._reaped:  # else its pid may be someone else's by now
                self._signal_sandbox(self.pid, signum)
            return
        # The session finds what the program left behind; the tree finds children that left
        # the session with setsid() while the program still runs.
        targets = {self.pid, *_proc.session_members(self.pid), *_proc.descendants(self.pid)}
        for pid in targets:
            with suppress(ProcessLookupError):
                os.kill(pid, signum)
        if self.status is None and signum == signal.SIGKILL and self._transport is not None:
            with suppress(ProcessExitedAlready):
                self._transport.signalProcess("KILL")

    def _signal_sandbox(self, pid: int, signum: int) -> None:
        """The program's foreground group gets the polite signals; SIGKILL goes to the process
        jupybot spawned (C{pid}), whose death takes the whole PID namespace with it."""
        if signum == signal.SIGKILL or self._master_fd is None:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return
        try:
            foreground = os.tcgetpgrp(self._master_fd)
        except OSError:
            foreground = 0
        # 0 while the program does not lead its terminal yet (or any more): then the sandbox
        # itself gets the signal, which ends it at once. (killpg(0) would signal jupybot.)
        with suppress(OSError):
            if foreground > 0 and foreground != os.getpgrp():
                os.killpg(foreground, signum)
            else:
                os.kill(pid, signum)

    def _resume_all(self) -> None:
        if self._paused_by and (transport := self._live) is not None:
            self._paused_by.clear()
            transport.resumeProducing()

    def _exited(self) -> None:
        """The spawned process was reaped. What it started may still hold the terminal: a
        sandbox whose parent died while it was being set up escapes ``--die-with-parent``, and
        unsandboxed programs leave daemons. Kill them, and if the terminal still does not close,
        close it ourselves: the session must end. (A third of sandboxes still hold the terminal
        when reaped, measured with 20 sessions: waiting for them before the kill kept their
        sessions a full grace longer.)"""
        self._reaped = True
        self._resume_all()
        if self._launch.cgroup is not None:
            self._release_sandbox()
        elif self._launch.contained and self.pid is not None:
            # No cgroup (a normal user on cgroup v1): a bubblewrap killed while setting up
            # leaves its child, the sandbox's PID 1, waiting for ever for its uid map, in the
            # process group jupybot started. One signal to that group: PID 1's death takes the
            # rest, and a group's id is not reused while anything is in it.
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self._orphan_check = self._reactor.callLater(ORPHAN_GRACE, self._close_terminal)

    def _close_terminal(self) -> None:
        if self.status is None and self._transport is not None:
            log.warn("terminal: {program} (pid {pid}) left processes holding its terminal; closing it",
                     program=self.name, pid=self.pid)  # fmt: skip
            self._transport.loseConnection()

    def _release_sandbox(self) -> None:
        """Remove the sandbox's cgroup (killing what still runs in it) off the reactor, then
        give its host uid back: nothing of the sandbox runs any more. Given up on, the uid
        stays leased: something of the sandbox may still run as it."""
        cgroup = self._launch.cgroup
        if cgroup is None:
            self._launch.release()
            self.released.callback(None)
            return
        assert self._remover is not None, "a launch with a cgroup needs a remover"
        self._remover.remove(cgroup).addCallback(self._cgroup_removed)

    def _cgroup_removed(self, gone: bool) -> None:
        if gone:
            self._launch.release()
        else:
            log.warn("terminal: cannot remove the cgroup of {program} (pid {pid})",
                     program=self.name, pid=self.pid)  # fmt: skip
        self.released.callback(None)

    def _received(self, data: bytes) -> None:
        self.on_activity()
        self._sink.output(data)

    def _process_ended(self, status: ExitStatus) -> None:
        self.status = status
        # Processes the program left behind in its session (daemons, background jobs) go too;
        # in a sandbox they went with its PID namespace.
        if not self._launch.contained and self.pid is not None and _proc.session_members(self.pid):
            self._signal_session(signal.SIGKILL)
        if self._launch.cgroup is None:
            self._release_sandbox()
        for pending in (self._killing, self._orphan_check):
            if pending is not None and pending.active():
                pending.cancel()
        self._killing = self._orphan_check = None
        self._master_fd = None  # closed by Twisted with the transport
        log.info(
            "terminal: {program} (pid {pid}) {status}",
            program=self.name,
            pid=self.pid,
            status=status.describe(),
        )
        self._sink.ended(status)
        self.ended.callback(status)


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _chain(d: Deferred[ExitStatus]) -> Deferred[ExitStatus]:
    """A new Deferred with C{d}'s result, leaving C{d} itself untouched for others."""
    copy: Deferred[ExitStatus] = Deferred()

    def forward(status: ExitStatus) -> ExitStatus:
        copy.callback(status)
        return status

    d.addCallback(forward)
    return copy

"""The web adapter of the terminal: autobahn websockets for the page (raw) and for scripts (lines).

See docs/protocol.md. Each connection is one L{Viewer} of one session of L{TerminalSessions}.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from zope.interface import implementer

from ..config import Secret
from ..reactor import Clock
from ..web.clients import (
    CLIENT_HEADERS,
    NO_PROXIES,
    OriginVerdict,
    ProxyTrust,
    check_origin,
    resolve_client,
)
from ..web.sendnow import write_now
from . import wire
from .linemode import Answerer, NotAnswered
from .pty import ExitStatus, size_problem
from .sessions import Session, SessionRefused, TerminalSessions

log = Logger()

# A connection that sends no hello (raw) or `initialize` (line mode) this long is closed.
HELLO_SECONDS = 10.0
# Pings keep idle connections through proxies; a peer that answers none within the timeout is
# gone.
PING_INTERVAL_SECONDS = 30.0
PING_TIMEOUT_SECONDS = 20.0


def checked_size(cols: object, rows: object) -> tuple[int, int]:
    """A terminal size a client sent, within bounds, or L{wire.BadSize} saying which."""
    problem = size_problem(cols, rows)
    if problem is not None:
        raise wire.BadSize(problem)
    assert isinstance(cols, int) and isinstance(rows, int)
    return cols, rows


class TerminalFactory(WebSocketServerFactory):
    """What every terminal connection shares: the sessions, the allowed origins, the token."""

    noisy = False  # no "Starting factory" line in the log for each listening port

    def __init__(
        self,
        sessions: TerminalSessions,
        origins: tuple[str, ...],
        token: Secret | None,
        reactor: Clock,
        proxies: ProxyTrust = NO_PROXIES,
    ) -> None:
        super().__init__()
        self.sessions = sessions
        self.origins = origins
        # Whose forwarding headers name the visitor (`web.trusted_proxies`).
        self.proxies = proxies
        self.token = token
        self.reactor = reactor
        # autobahn holds what it sends to the same limit as what it receives.
        self.frame_bytes = sessions.config.max_frame_kb * 1024
        self.setProtocolOptions(
            maxFramePayloadSize=self.frame_bytes,
            maxMessagePayloadSize=self.frame_bytes,
            autoPingInterval=PING_INTERVAL_SECONDS,
            autoPingTimeout=PING_TIMEOUT_SECONDS,
            # Tell a client that breaks the protocol why (1007 invalid UTF-8, 1009 too large)
            # with a close frame, rather than drop the connection (1006 for the client).
            failByDrop=False,
            # autobahn would refuse Origin null (and file://) with a bare 400 before
            # `onConnect`; `check_origin` refuses it there, with a reason.
            allowNullOrigin=True,
        )


class _TerminalProtocol(WebSocketServerProtocol):
    factory: TerminalFactory

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        self.client_ip = "unknown"
        self._hello_timer: IDelayedCall | None = None
        self._input_paused = False

    @property
    def _tcp(self) -> Any:
        """The TCP transport under the websocket (peer address, producer registration)."""
        return self.transport

    @property
    def _socket(self) -> Any:
        """The transport that holds the socket's send buffer, under the wrappers the site puts
        around it (EdgeFactory's connection caps, TLS): Twisted pauses a producer when this
        one's buffer is full, whatever a wrapper's C{bufferSize} says."""
        transport: Any = self.transport
        while isinstance(transport, ProtocolWrapper):
            transport = transport.transport
        return transport

    def onConnect(self, request: ConnectionRequest) -> None:
        """The visitor's address (through a trusted proxy, the one it forwarded) and the one
        Origin rule of jupybot/web/clients.py."""
        headers = {
            name: request.headers[name] for name in CLIENT_HEADERS if name in request.headers
        }
        client = resolve_client(
            getattr(self._tcp.getPeer(), "host", None),
            ISSLTransport(self._tcp, None) is not None,
            headers,
            self.factory.proxies,
        )
        # What the session caps count: the address, or an IPv6 address's /64.
        self.client_ip = client.limit_key
        origin = request.headers.get("origin")
        verdict = check_origin(origin, client, self.factory.origins)
        if not verdict.allowed:
            log.info(
                "terminal: refused a websocket from origin {origin} ({ip})",
                origin=origin,
                ip=client.address,
            )
            if verdict is OriginVerdict.NULL:
                raise ConnectionDeny(
                    403, "Origin null (a file:// page or a sandboxed frame) may not open terminals"
                )
            raise ConnectionDeny(403, "This origin may not open terminals here.")

    def onOpen(self) -> None:
        self._hello_timer = self.factory.reactor.callLater(
            HELLO_SECONDS, self.refuse, "no-hello", "No hello was received in time."
        )

    def _hello_received(self) -> None:
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None

    def token_ok(self, hello: dict[str, Any]) -> bool:
        expected = self.factory.token
        if expected is None:
            return True
        given = hello.get("token")
        return isinstance(given, str) and hmac.compare_digest(
            given.encode(), expected.reveal().encode()
        )

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        session, self.session = self.session, None
        if session is not None and session.viewer is self:
            session.pty.throttle_input(None)
            session.detach()

    def refuse(self, reason: str, message: str) -> None:
        """Tell the client why, then close with the matching code (each protocol its way)."""

    def close_with(self, code: int, reason: str = "") -> None:
        """Close with C{code} and the short C{reason}. autobahn's C{sendClose} refuses the codes
        of RFC 6455 a server sends (1001 going away) and takes only 1000 and 3000-4999; the
        frame itself is what its C{sendCloseFrame} sends, whatever the code."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=reason.encode() or None, isReply=False)

    def _program_hello(self, hello: dict[str, Any]) -> str:
        """The program a hello asks for: a name, or L{wire.BadFrame}."""
        if "program" not in hello:
            raise wire.BadFrame("the hello names a 'program' (or a session to 'resume')")
        name = hello["program"]
        if not isinstance(name, str):
            raise wire.BadFrame("'program' must be a program's name")
        return name

    # Input flow control.

    def _throttle_input(self, session: Session) -> None:
        """While the program has not read what was typed or pasted (64 KB wait to be written
        to its terminal), the websocket is not read: the client's sends wait, not the
        server's memory."""
        session.pty.throttle_input(_InputFlow(self))

    def input_paused(self, paused: bool) -> None:
        if paused == self._input_paused:
            return
        self._input_paused = paused
        if paused:
            self._tcp.pauseProducing()
        else:
            self._tcp.resumeProducing()

    def onAutoPingTimeout(self) -> None:
        if self._input_paused:
            # The pong waits behind the input nobody reads yet: that says nothing of the peer.
            # Another ping does: written to a peer that has gone, it fails and ends the
            # connection (a paused transport would not see the peer's close).
            self.sendPing()
            self.autoPingTimeoutCall = self.factory.reactor.callLater(
                PING_TIMEOUT_SECONDS, self.onAutoPingTimeout
            )
            return
        super().onAutoPingTimeout()

    def _pause_while_socket_full(self, session: Session, buffer_bytes: int = 0) -> None:
        """The program's output waits while the socket has more to send than C{buffer_bytes}
        (at least Twisted's 64 KB)."""
        if getattr(self._tcp, "producer", None) is not None:
            # Served through twisted.web: the HTTP channel is still the registered producer.
            self._tcp.unregisterProducer()
        socket = self._socket
        socket.bufferSize = max(socket.bufferSize, buffer_bytes)
        # Without it, a frame's tail shorter than a segment waits for the client's delayed ACK.
        self._tcp.setTcpNoDelay(True)
        self._tcp.registerProducer(_Backpressure(session), True)

    # Viewer.

    def output(self, data: bytes) -> None:
        raise NotImplementedError

    def ended(self, status: ExitStatus) -> None:
        raise NotImplementedError

    def stopped(self, reason: str, message: str) -> None:
        self.refuse(reason, message)


class RawTerminalProtocol(_TerminalProtocol):
    """The page's protocol: raw PTY bytes both ways, resize, and acknowledgements."""

    def __init__(self) -> None:
        super().__init__()
        self._unacked = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            if self.session is None:
                if isBinary:
                    raise wire.BadFrame("the first message must be the JSON hello, as text")
                self._hello(wire.decode_hello(payload))
            else:
                self._frame(payload, isBinary)
        except wire.BadSize as e:
            self.refuse("bad-size", str(e))
        except wire.BadFrame as e:
            self.refuse("bad-request", str(e))
        except SessionRefused as e:
            self.refuse(e.reason, str(e))

    def _hello(self, hello: dict[str, Any]) -> None:
        self._hello_received()
        if not self.token_ok(hello):
            raise SessionRefused("unauthorized", "A valid access token is needed.")
        sessions = self.factory.sessions
        if "resume" in hello:
            received = hello.get("received", 0)
            if not isinstance(received, int) or received < 0:
                raise wire.BadFrame("'received' must be a byte count")
            session, missed = sessions.resume(hello["resume"], self, received)
            self._attach(session)
            if missed:
                self.output(missed)
            return
        program = self._program_hello(hello)
        cols, rows = checked_size(hello.get("cols"), hello.get("rows"))
        session = sessions.open(program, cols, rows, self.client_ip, self)
        self._attach(session)

    def _attach(self, session: Session) -> None:
        self.session = session
        # A resumed session may have been paused for the window of the viewer that went away.
        self._unacked = 0
        session.pty.resume_reading("window")
        # Twisted pauses a producer once 64 KB wait to be sent; the window below already bounds
        # what a session may have in flight, so the socket may hold that much.
        self._pause_while_socket_full(session, self._window)
        self._throttle_input(session)
        body = {
            "session": session.id,
            "resume": session.resume_token,
            "program": session.program.name,
            "title": session.program.title,
            "received": session.replay.total,
        }
        self.sendMessage(wire.json_frame(wire.READY, body), isBinary=True)

    def _frame(self, payload: bytes, isBinary: bool) -> None:
        assert self.session is not None
        if not isBinary:
            raise wire.BadFrame("after the hello, frames are binary")
        frame = wire.decode_client_frame(payload)
        pty = self.session.pty
        if isinstance(frame, wire.Input):
            pty.write(frame.data)
        elif isinstance(frame, wire.Resize):
            pty.resize(*checked_size(frame.cols, frame.rows))
        else:
            self._unacked = max(0, self._unacked - frame.count)
            if self._unacked <= self._window // 2:
                pty.resume_reading("window")

    @property
    def _window(self) -> int:
        return self.factory.sessions.config.window_kb * 1024

    # Viewer.

    def output(self, data: bytes) -> None:
        if self.state != self.STATE_OPEN:
            return
        # One write of the frames sendMessage would send, one copy of the output: sendMessage
        # copied each frame's payload twice and Twisted joined the frames once more, 40% of
        # the output path's time in a flood (issue 27).
        frames = wire.output_messages(data, self.factory.frame_bytes)
        if self.send_queue or self.transport is None:  # autobahn's delayed writes go first
            self.sendData(frames)
        else:
            write_now(self.transport, frames)
        self._unacked += len(data)
        if self._unacked > self._window and self.session is not None and not self._input_paused:
            # The browser has not drawn this much yet: let the program wait (Ctrl-C still goes).
            # Not while its acknowledgements wait behind unread input: the program would wait
            # for them, and the input for the program. The socket's send buffer still bounds it.
            self.session.pty.pause_reading("window")

    def input_paused(self, paused: bool) -> None:
        super().input_paused(paused)
        if paused and self.session is not None:
            self.session.pty.resume_reading("window")

    def ended(self, status: ExitStatus) -> None:
        self._release()
        if self.state != self.STATE_OPEN:
            return
        body = {"code": status.code, "signal": status.signal, "message": status.describe()}
        self.sendMessage(wire.json_frame(wire.EXIT, body), isBinary=True)
        self.close_with(wire.CLOSE_NORMAL)

    def refuse(self, reason: str, message: str) -> None:
        if self.state != self.STATE_OPEN:
            return
        self.sendMessage(
            wire.json_frame(wire.ERROR, {"reason": reason, "message": message}), isBinary=True
        )
        self.close_with(wire.close_code(reason), reason)

    def _release(self) -> None:
        if self.session is not None:
            self.session.pty.resume_reading("socket")
            self.session.pty.resume_reading("window")
            self.session.pty.throttle_input(None)
            self._tcp.unregisterProducer()
        # The client's reply to the close must be read.
        self.input_paused(False)


class _Backpressure:
    """Pauses the program's output while the websocket's send buffer is full."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def pauseProducing(self) -> None:
        self._session.pty.pause_reading("socket")

    def resumeProducing(self) -> None:
        self._session.pty.resume_reading("socket")

    def stopProducing(self) -> None:
        self._session.pty.resume_reading("socket")


@implementer(IPushProducer)
class _InputFlow:
    """The viewer's connection as the producer of the program's input (see
    L{_TerminalProtocol._throttle_input})."""

    def __init__(self, protocol: _TerminalProtocol) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.input_paused(True)

    def resumeProducing(self) -> None:
        self._protocol.input_paused(False)

    def stopProducing(self) -> None:
        self._protocol.input_paused(False)


class LineModeProtocol(_TerminalProtocol):
    """JSON text frames: each `command` is answered with everything the program printed until
    it waits for input again (L{Answerer}, the core; this class only translates)."""

    def __init__(self) -> None:
        super().__init__()
        self._answerer: Answerer | None = None

    @property
    def _part_bytes(self) -> int:
        # JSON escapes a control byte or an invalid one in six characters: a part of this many
        # bytes fits a frame whatever it holds.
        return max(64, (self.factory.frame_bytes - 256) // 6)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            if isBinary:
                raise wire.BadFrame("line mode uses JSON text frames")
            message = json.loads(payload)
            if not isinstance(message, dict):
                raise wire.BadFrame("each message must be a JSON object")
            self._event(message)
        except (ValueError, UnicodeDecodeError):
            self.refuse("bad-request", "each message must be a JSON object")
        except wire.BadSize as e:
            self.refuse("bad-size", str(e))
        except wire.BadFrame as e:
            self.refuse("bad-request", str(e))
        except SessionRefused as e:
            self.refuse(e.reason, str(e))

    def _event(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "initialize":
            self._hello_received()
            if self.session is not None:
                raise wire.BadFrame("this connection already runs a program")
            if not self.token_ok(message):
                raise SessionRefused("unauthorized", "A valid access token is needed.")
            program = self._program_hello(message)
            cols, rows = checked_size(message.get("cols", 80), message.get("rows", 24))
            session = self.factory.sessions.open(
                program, cols, rows, self.client_ip, self, line_mode=True
            )
            self.session = session
            self._answerer = Answerer(
                IReactorTime(self.factory.reactor), session.pty, self._answer, self._part_bytes
            )
            self._pause_while_socket_full(session)
            self._throttle_input(session)
            self._answerer.start()
        elif event == "command":
            if self.session is None or self._answerer is None:
                raise wire.BadFrame("send 'initialize' with a program first")
            text = message.get("input")
            if not isinstance(text, str):
                raise wire.BadFrame("'input' must be a string")
            try:
                data = self._answerer.command(text)
            except NotAnswered as e:
                raise wire.BadFrame(str(e)) from None
            self.session.pty.write(data)
        else:
            raise wire.BadFrame("'event' must be 'initialize' or 'command'")

    def _answer(self, text: str, more: bool) -> None:
        body: dict[str, Any] = {"event": "output", "output": text}
        if more:
            body["more"] = True
        else:
            self._count_answer("waiting")
        self._reply(body)

    def _count_answer(self, ending: str) -> None:
        """Count the answer under way as ended so (for /metrics), once."""
        if self.session is not None:
            self.factory.sessions.count_answer(self.session.program.name, ending)

    def _answer_cut_short(self, ending: str) -> None:
        """The answer under way, if any, will not end with the program waiting: count why."""
        if self._answerer is not None and self._answerer.awaiting:
            self._answerer.stop()
            self._count_answer(ending)

    def _reply(self, body: dict[str, Any]) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps(body).encode(), isBinary=False)

    # Viewer.

    def output(self, data: bytes) -> None:
        if self._answerer is not None:
            self._answerer.output(data)

    def ended(self, status: ExitStatus) -> None:
        if self._answerer is not None and self._answerer.awaiting:
            self._count_answer("exited")
        rest = self._answerer.ended() if self._answerer is not None else ""
        if self.session is not None:
            self.session.pty.throttle_input(None)
        self.input_paused(False)
        self._reply(
            {
                "event": "exit",
                "output": rest,
                "code": status.code,
                "signal": status.signal,
                "message": status.describe(),
            }
        )
        self.close_with(wire.CLOSE_NORMAL)

    def stopped(self, reason: str, message: str) -> None:
        self._answer_cut_short(reason)  # time-limit, idle, shutdown
        super().stopped(reason, message)

    def refuse(self, reason: str, message: str) -> None:
        self._reply({"event": "error", "reason": reason, "message": message})
        self.close_with(wire.close_code(reason), reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # Line mode has no resume: a script that goes away ends its program.
        self._answer_cut_short("closed")
        session, self.session = self.session, None
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        if session is not None:
            session.viewer = None
            session.pty.throttle_input(None)
            session.pty.terminate()

"""The web adapter of the terminal: autobahn websockets for the page (raw) and for scripts (lines).

See docs/protocol.md. Each connection is one L{Viewer} of one session of L{TerminalSessions}.
"""

from __future__ import annotations

import codecs
import hmac
import json
from typing import Any
from urllib.parse import urlparse

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from ..config import Secret
from . import wire
from .pty import ExitStatus
from .sessions import Session, SessionRefused, TerminalSessions

log = Logger()

HELLO_SECONDS = 10.0
# Line mode: output quiet this long, then the program's state is checked.
QUIET_SECONDS = 0.02
# Line mode: a command that produced no output at all is answered after this long.
SILENT_ANSWER_SECONDS = 1.0


class TerminalFactory(WebSocketServerFactory):
    """What every terminal connection shares: the sessions, the allowed origins, the token."""

    def __init__(
        self,
        sessions: TerminalSessions,
        origins: tuple[str, ...],
        token: Secret | None,
        reactor: Any,
    ) -> None:
        super().__init__()
        self.sessions = sessions
        self.origins = origins
        self.token = token
        self.reactor = reactor
        # autobahn holds what it sends to the same limit as what it receives.
        self.frame_bytes = sessions.config.max_frame_kb * 1024
        self.setProtocolOptions(
            maxFramePayloadSize=self.frame_bytes,
            maxMessagePayloadSize=self.frame_bytes,
            autoPingInterval=30,
            autoPingTimeout=20,
        )


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Browsers always send Origin: it must be the page's own or one of C{allowed}.
    Clients that are not browsers send none and cannot be lured into cross-site requests."""
    if origin is None:
        return True
    if origin.rstrip("/") in allowed:
        return True
    parsed = urlparse(origin)
    return bool(host) and parsed.netloc == host


class _TerminalProtocol(WebSocketServerProtocol):
    factory: TerminalFactory

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        self.client_ip = "unknown"
        self._hello_timer: IDelayedCall | None = None

    @property
    def _tcp(self) -> Any:
        """The TCP transport under the websocket (peer address, producer registration)."""
        return self.transport

    def onConnect(self, request: ConnectionRequest) -> None:
        origin = request.headers.get("origin")
        if not origin_allowed(origin, request.headers.get("host"), self.factory.origins):
            log.info("terminal: refused a websocket from origin {origin}", origin=origin)
            raise ConnectionDeny(403, "This origin may not open terminals here.")
        peer = self._tcp.getPeer()
        self.client_ip = getattr(peer, "host", "unknown")

    def onOpen(self) -> None:
        self._hello_timer = self.factory.reactor.callLater(
            HELLO_SECONDS, self.refuse, "bad-request", "No hello was received in time."
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
            session.detach()

    def refuse(self, reason: str, message: str) -> None:
        """Tell the client why, then close with the matching code (each protocol its way)."""

    def _pause_while_socket_full(self, session: Session, buffer_bytes: int = 0) -> None:
        """The program's output waits while the socket has more to send than C{buffer_bytes}
        (at least Twisted's 64 KB)."""
        if getattr(self._tcp, "producer", None) is not None:
            # Served through twisted.web: the HTTP channel is still the registered producer.
            self._tcp.unregisterProducer()
        self._tcp.bufferSize = max(self._tcp.bufferSize, buffer_bytes)
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
        session = sessions.open(
            hello.get("program"), hello.get("cols"), hello.get("rows"), self.client_ip, self
        )
        self._attach(session)

    def _attach(self, session: Session) -> None:
        self.session = session
        # A resumed session may have been paused for the window of the viewer that went away.
        self._unacked = 0
        session.pty.resume_reading("window")
        # Twisted pauses a producer once 64 KB wait to be sent; the window below already bounds
        # what a session may have in flight, so the socket may hold that much.
        self._pause_while_socket_full(session, self._window)
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
            if not (1 <= frame.cols <= 1000 and 1 <= frame.rows <= 500):
                raise wire.BadFrame(f"bad terminal size {frame.cols}x{frame.rows}")
            pty.resize(frame.cols, frame.rows)
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
        step = self.factory.frame_bytes - 1  # the type byte
        for start in range(0, len(data), step):
            self.sendMessage(wire.output_frame(data[start : start + step]), isBinary=True)
        self._unacked += len(data)
        if self._unacked > self._window and self.session is not None:
            # The browser has not drawn this much yet: let the program wait (Ctrl-C still goes).
            self.session.pty.pause_reading("window")

    def ended(self, status: ExitStatus) -> None:
        self._release()
        if self.state != self.STATE_OPEN:
            return
        body = {"code": status.code, "signal": status.signal, "message": status.describe()}
        self.sendMessage(wire.json_frame(wire.EXIT, body), isBinary=True)
        self.sendClose(wire.CLOSE_NORMAL)

    def refuse(self, reason: str, message: str) -> None:
        if self.state != self.STATE_OPEN:
            return
        self.sendMessage(
            wire.json_frame(wire.ERROR, {"reason": reason, "message": message}), isBinary=True
        )
        self.sendClose(wire.REFUSAL_CLOSE_CODES.get(reason, wire.CLOSE_BAD_REQUEST), message)

    def _release(self) -> None:
        if self.session is not None:
            self.session.pty.resume_reading("socket")
            self.session.pty.resume_reading("window")
            self._tcp.unregisterProducer()


def _utf8_decoder() -> codecs.IncrementalDecoder:
    """Decodes output part by part: a character split between two parts is not garbled."""
    return codecs.getincrementaldecoder("utf-8")("replace")


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


class LineModeProtocol(_TerminalProtocol):
    """JSON text frames: each `command` is answered with everything the program printed until
    it waits for input again, told from the program's state, not from a delay. An answer too
    large for one frame goes out in parts as it comes, so memory stays bounded."""

    def __init__(self) -> None:
        super().__init__()
        self._pending = bytearray()
        self._decoder = _utf8_decoder()
        self._awaiting = False
        self._check: IDelayedCall | None = None
        self._echo: bytes | None = None
        self._asked_at = 0.0
        self._seen_waiting = False
        self._sent_part = False

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
            self.session = self.factory.sessions.open(
                message.get("program"),
                message.get("cols", 80),
                message.get("rows", 24),
                self.client_ip,
                self,
            )
            self._pause_while_socket_full(self.session)
            self._await_answer()
        elif event == "command":
            if self.session is None:
                raise wire.BadFrame("send 'initialize' with a program first")
            text = message.get("input")
            if not isinstance(text, str):
                raise wire.BadFrame("'input' must be a string")
            if self._awaiting:
                raise wire.BadFrame("the program has not answered the previous command yet")
            line = text if text.endswith("\n") else text + "\n"
            self._echo = line.replace("\n", "\r\n").encode()
            self.session.pty.write(line.encode())
            self._await_answer()
        else:
            raise wire.BadFrame("'event' must be 'initialize' or 'command'")

    def _await_answer(self) -> None:
        self._awaiting = True
        self._seen_waiting = False
        self._sent_part = False
        self._asked_at = self.factory.reactor.seconds()
        self._schedule_check()

    def _schedule_check(self) -> None:
        if self._check is not None and self._check.active():
            self._check.reset(QUIET_SECONDS)
        else:
            self._check = self.factory.reactor.callLater(QUIET_SECONDS, self._check_waiting)

    def _check_waiting(self) -> None:
        self._check = None
        if not self._awaiting or self.session is None:
            return
        # Input just written may not have reached the terminal's read queue yet, and the
        # program still looks as if it waited: believe that only once it has answered
        # something, or after a while for a command that prints nothing (echo off).
        answered = self._sent_part or (
            bool(self._pending) and not (self._echo or b"").startswith(self._pending)
        )
        settled = self.factory.reactor.seconds() - self._asked_at >= SILENT_ANSWER_SECONDS
        waiting = (answered or settled) and self.session.pty.waiting_for_input()
        if waiting and self._seen_waiting:
            # Twice in a row, with no output between: not a passing moment of the program.
            self._reply({"event": "output", "output": self._take_output()})
            self._awaiting = False
            self._seen_waiting = False
        else:
            self._seen_waiting = waiting
            self._schedule_check()

    def _send_parts(self) -> None:
        """Send the output that fills whole parts now, each with C{"more": true}."""
        part = self._part_bytes
        while len(self._pending) >= part + len(self._echo or b""):
            self._reply({"event": "output", "output": self._take_output(part), "more": True})
            self._sent_part = True

    def _take_output(self, limit: int | None = None) -> str:
        """The pending output as text, all of it or a part of at most C{limit} bytes."""
        if self._echo is not None and self._pending.startswith(self._echo):
            del self._pending[: len(self._echo)]  # the terminal's echo of the command itself
        self._echo = None
        data = bytes(self._pending if limit is None else self._pending[:limit])
        if limit is not None and len(data) > 1 and data.endswith(b"\r"):
            data = data[:-1]  # its \n may be the first byte of the next part
        del self._pending[: len(data)]
        text = self._decoder.decode(data, final=limit is None)
        return text.replace("\r\n", "\n")

    def _reply(self, body: dict[str, Any]) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps(body).encode(), isBinary=False)

    # Viewer.

    def output(self, data: bytes) -> None:
        self._pending += data
        self._seen_waiting = False
        self._send_parts()
        if self._awaiting:
            self._schedule_check()

    def ended(self, status: ExitStatus) -> None:
        if self._check is not None and self._check.active():
            self._check.cancel()
        self._send_parts()
        self._reply(
            {
                "event": "exit",
                "output": self._take_output(),
                "code": status.code,
                "signal": status.signal,
                "message": status.describe(),
            }
        )
        if self.state == self.STATE_OPEN:
            self.sendClose(wire.CLOSE_NORMAL)

    def refuse(self, reason: str, message: str) -> None:
        self._reply({"event": "error", "reason": reason, "message": message})
        if self.state == self.STATE_OPEN:
            self.sendClose(wire.REFUSAL_CLOSE_CODES.get(reason, wire.CLOSE_BAD_REQUEST), message)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # Line mode has no resume: a script that goes away ends its program.
        if self._check is not None and self._check.active():
            self._check.cancel()
        session, self.session = self.session, None
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        if session is not None:
            session.viewer = None
            session.pty.terminate()

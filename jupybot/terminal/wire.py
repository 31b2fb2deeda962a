"""The raw terminal protocol's frames (docs/protocol.md): one type byte, then the payload."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

# Browser -> server (binary frames, after the JSON hello text frame).
INPUT = 0x00
RESIZE = 0x01  # u16 cols, u16 rows, big-endian
ACK = 0x02  # u32: bytes of output the terminal has processed since the last ACK

# Server -> browser (binary frames).
OUTPUT = 0x10
READY = 0x11  # JSON {"session", "resume", "program", "title", "received"}
EXIT = 0x12  # JSON {"code", "signal", "message"}
ERROR = 0x13  # JSON {"reason", "message"}

# Close codes (4000-4999 are the application's). The close reason is the refusal's short code;
# the ERROR frame before it carries the message for people.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TIMEOUT = 4408
CLOSE_BUSY = 4429
CLOSE_UNAVAILABLE = 4503

REFUSAL_CLOSE_CODES = {
    "unknown-program": CLOSE_NOT_FOUND,
    "bad-size": CLOSE_BAD_REQUEST,
    "busy": CLOSE_BUSY,
    "too-many": CLOSE_BUSY,
    "unavailable": CLOSE_UNAVAILABLE,
    "expired": CLOSE_NOT_FOUND,
    "in-use": CLOSE_BUSY,
    "unauthorized": CLOSE_UNAUTHORIZED,
    "bad-request": CLOSE_BAD_REQUEST,
    "idle": CLOSE_TIMEOUT,
    "time-limit": CLOSE_TIMEOUT,
    "no-hello": CLOSE_TIMEOUT,
    "shutdown": CLOSE_GOING_AWAY,
}


def close_code(reason: str) -> int:
    """The close code that goes with a refusal's short code (4400 for one not listed)."""
    return REFUSAL_CLOSE_CODES.get(reason, CLOSE_BAD_REQUEST)


class BadFrame(Exception):
    """A frame that does not follow the protocol; C{str()} says how."""


class BadSize(BadFrame):
    """A terminal size out of range (refused as `bad-size`)."""


@dataclass(frozen=True)
class Resize:
    cols: int
    rows: int


@dataclass(frozen=True)
class Ack:
    count: int


@dataclass(frozen=True)
class Input:
    data: bytes


ClientFrame = Input | Resize | Ack


def decode_client_frame(payload: bytes) -> ClientFrame:
    if not payload:
        raise BadFrame("empty frame")
    kind, body = payload[0], payload[1:]
    if kind == INPUT:
        return Input(body)
    if kind == RESIZE:
        if len(body) != 4:
            raise BadFrame("a resize frame carries 4 bytes: u16 cols, u16 rows")
        cols, rows = struct.unpack("!HH", body)
        return Resize(cols, rows)
    if kind == ACK:
        if len(body) != 4:
            raise BadFrame("an ack frame carries 4 bytes: u32 count")
        return Ack(struct.unpack("!I", body)[0])
    raise BadFrame(f"unknown frame type 0x{kind:02x}")


def decode_hello(payload: bytes) -> dict[str, Any]:
    try:
        hello = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        raise BadFrame("the first message must be a JSON object (the hello)") from None
    if not isinstance(hello, dict):
        raise BadFrame("the first message must be a JSON object (the hello)")
    return hello


def output_messages(data: bytes, max_payload: int) -> bytes:
    """C{data} as OUTPUT messages of at most C{max_payload} bytes each (the type byte
    included), each one unmasked binary websocket frame (RFC 6455 5.2), joined: the bytes
    autobahn's C{sendMessage} writes for them, with the output copied once on the way."""
    step = max_payload - 1
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    for start in range(0, len(data), step):
        part = view[start : start + step]
        parts += (_output_header(len(part) + 1), part)
    return b"".join(parts)


def _output_header(length: int) -> bytes:
    """A final binary frame's header for a payload of C{length} bytes, and the OUTPUT byte
    that begins the payload."""
    if length < 126:
        return struct.pack("!BBB", 0x82, length, OUTPUT)
    if length < 1 << 16:
        return struct.pack("!BBHB", 0x82, 126, length, OUTPUT)
    return struct.pack("!BBQB", 0x82, 127, length, OUTPUT)


def json_frame(kind: int, body: dict[str, Any]) -> bytes:
    return bytes((kind,)) + json.dumps(body).encode()

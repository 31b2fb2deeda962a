"""Jupyter messages on the channels websocket, in its two wire formats.

`v1.kernel.websocket.jupyter.org` (Jupyter Server 1.17+ and 2, so Kernel Gateway 3, Enterprise
Gateway 3 and Jupyter Server pick it when the client offers it): one binary frame per message,
the channel and the message's ZMQ parts (header, parent_header, metadata, content, buffers) as
the kernel packed them, behind a table of offsets. The gateway passes the parts between the
socket and ZMQ as they are. The legacy format (no subprotocol) is one JSON text frame per
message, which the gateway parses and re-encodes once per message each way.
"""

from __future__ import annotations

import json
import struct
from itertools import pairwise
from typing import Any

KERNEL_WS_PROTOCOL = "v1.kernel.websocket.jupyter.org"

Message = dict[str, Any]

_OFFSET = struct.Struct("<Q")
# header, parent_header, metadata, content: what every message has before its buffers.
_PARTS = 4
# ASCII: a lone surrogate in the code (JSON from a chat network may carry one) stays escaped.
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_decode = json.JSONDecoder().decode


def encode_v1(channel: str, header: Message, parent_header: Message, content: Message) -> bytes:
    """One message (no metadata, no buffers) as a v1 frame."""
    parts = (
        channel.encode(),
        _dumps(header).encode(),
        _dumps(parent_header).encode(),
        b"{}",
        _dumps(content).encode(),
    )
    # The table: how many offsets follow, then where the channel starts and where each
    # part (the channel first) ends.
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def decode_v1(frame: bytes) -> Message:
    """The message in a v1 frame, with its C{channel}; C{ValueError} if it is not one."""
    try:
        (count,) = _OFFSET.unpack_from(frame)
        if not _PARTS + 2 <= count <= len(frame) // 8:
            raise ValueError("not a v1 frame: offset count")
        offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    except struct.error as error:
        raise ValueError(f"not a v1 frame: {error}") from None
    if (
        offsets[0] != 8 * (count + 1)
        or offsets[-1] != len(frame)
        or sorted(offsets) != list(offsets)
    ):
        raise ValueError("not a v1 frame: offsets")
    spans = list(pairwise(offsets))  # the channel's, then each part's
    channel, header, parent_header, metadata, content = (
        frame[start:end].decode() for start, end in spans[: _PARTS + 1]
    )
    return _checked(
        {
            "channel": channel,
            "header": _decode(header),
            "parent_header": _decode(parent_header),
            "metadata": _decode(metadata),
            "content": _decode(content),
            "buffers": [frame[start:end] for start, end in spans[_PARTS + 1 :]],
        }
    )


def encode_legacy(channel: str, header: Message, parent_header: Message, content: Message) -> bytes:
    """One message as the legacy format's JSON text (UTF-8)."""
    message = {
        "header": header,
        "parent_header": parent_header,
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }
    return _dumps(message).encode()


def decode_legacy(text: bytes) -> Message:
    """The message in a legacy text frame; C{ValueError} if it is not a JSON object."""
    message = _decode(text.decode())
    if not isinstance(message, dict):
        raise ValueError("not a Jupyter message: not an object")
    return _checked(message)


def _checked(message: Message) -> Message:
    # A kernel can send anything it likes on its sockets (it holds their key), and a gateway
    # passes v1 messages on unparsed.
    for key in ("header", "parent_header", "metadata", "content"):
        if message.get(key) is not None and not isinstance(message[key], dict):
            raise ValueError(f"not a Jupyter message: its {key} is not an object")
    return message


__all__ = ["KERNEL_WS_PROTOCOL", "decode_legacy", "decode_v1", "encode_legacy", "encode_v1"]

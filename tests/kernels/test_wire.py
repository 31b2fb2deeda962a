"""The channels websocket's two formats: v1 frames read and written as Jupyter Server itself
does, malformed frames refused, and runs on each real gateway in the format it picks (v1 on Kernel
Gateway, Enterprise Gateway and Jupyter Server; the legacy JSON on a gateway that refuses v1)."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import pytest_twisted
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)

from jupybot.kernels._wire import (
    KERNEL_WS_PROTOCOL,
    decode_legacy,
    decode_v1,
    encode_legacy,
    encode_v1,
)
from jupybot.kernels.manager import GatewayKernelManager
from tests.kernels.listener import RecordingListener
from tests.kernels.test_gateway import GatewayPeer, gateway, manager_for
from tests.peers.kernel_gateway import KernelGateway

__all__ = ["gateway"]  # the fixture: each real-gateway test below runs on all three

HEADER = {
    "msg_id": "1",
    "msg_type": "execute_request",
    "session": "s",
    "username": "jupybot",
    "date": "2026-01-01T00:00:00+00:00",
    "version": "5.3",
}
CONTENT = {"code": "print('é \ud800')", "silent": False}


def test_a_v1_frame_is_what_jupyter_server_reads() -> None:
    channel, parts = deserialize_msg_from_ws_v1(encode_v1("shell", HEADER, {}, CONTENT))
    assert channel == "shell"
    assert [json.loads(part) for part in parts] == [HEADER, {}, {}, CONTENT]


def test_a_frame_jupyter_server_writes_is_read_with_its_buffers() -> None:
    parts = [json.dumps(d).encode() for d in (HEADER, {"msg_id": "0"}, {"m": 1}, CONTENT)]
    frame = serialize_msg_to_ws_v1([*parts, b"\x00buffer"], "iopub")
    assert decode_v1(frame) == {
        "channel": "iopub",
        "header": HEADER,
        "parent_header": {"msg_id": "0"},
        "metadata": {"m": 1},
        "content": CONTENT,
        "buffers": [b"\x00buffer"],
    }


def test_the_legacy_format_round_trips() -> None:
    message = decode_legacy(encode_legacy("shell", HEADER, {}, CONTENT))
    assert message["channel"] == "shell" and message["content"] == CONTENT


def _frame(offsets: list[int], body: bytes) -> bytes:
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + body


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01",
        _frame([8], b""),  # too few offsets
        struct.pack("<Q", 2**40),  # more offsets than the frame holds
        _frame([64, 69, 71, 73, 75, 77], b"iopub{}{}{}{}"),  # the table's size misstated
        _frame([56, 61, 63, 62, 67, 69], b"iopub{}{}{}{}"),  # offsets going back
        _frame([56, 61, 63, 65, 67, 70], b"iopub{}{}{}{}"),  # past the end
        _frame([56, 61, 63, 65, 67, 69], b"iopub[]{}{}{}"),  # a header that is no object
        _frame([56, 61, 63, 65, 67, 69], b"iopub{}{}{}{x"),  # no JSON
        _frame([56, 61, 63, 65, 67, 69], b"\xffpub{}{}{}{}"),  # no UTF-8
    ],
)
def test_a_malformed_v1_frame_is_refused(frame: bytes) -> None:
    # The gateway passes what a kernel sends on unparsed: anything may come.
    with pytest.raises(ValueError):
        decode_v1(frame)


@pytest.mark.parametrize("text", [b"[]", b'{"header": []}', b'{"content": "x"}', b"{", b"\xff"])
def test_a_malformed_legacy_frame_is_refused(text: bytes) -> None:
    with pytest.raises(ValueError):
        decode_legacy(text)


def _protocol(manager: GatewayKernelManager, owner: str) -> str | None:
    [handle] = manager.kernels(owner)
    kernel = manager._owners[owner][handle.name].kernel
    protocol = kernel.channels._protocol
    assert protocol is not None
    in_use: str | None = protocol.websocket_protocol_in_use
    return in_use


async def _run_and_check(manager: GatewayKernelManager) -> None:
    listener = RecordingListener()
    result = await manager.execute("room", "print('é')\n1 + 1", listener)
    assert result.status == "ok" and listener.text() == "é\n"


@pytest_twisted.ensureDeferred
async def test_runs_speak_v1_on_every_gateway(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway)
    try:
        await _run_and_check(manager)
        assert _protocol(manager, "room") == KERNEL_WS_PROTOCOL
    finally:
        await manager.shutdown_all()


@pytest.fixture(scope="module")
def legacy_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelGateway]:
    """A Kernel Gateway set to refuse the v1 format, as a gateway that predates it would."""
    workdir: Path = tmp_path_factory.mktemp("legacy-kernel-gateway")
    config = workdir / "config"
    config.mkdir()
    (config / "jupyter_kernel_gateway_config.json").write_text(
        json.dumps({"ZMQChannelsWebsocketConnection": {"kernel_ws_protocol": ""}})
    )
    peer = KernelGateway(workdir)
    with mock.patch.dict(os.environ, {"JUPYTER_CONFIG_DIR": str(config)}):
        peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest_twisted.ensureDeferred
async def test_runs_speak_legacy_json_where_v1_is_refused(legacy_gateway: KernelGateway) -> None:
    manager = manager_for(legacy_gateway)
    try:
        await _run_and_check(manager)
        assert _protocol(manager, "room") is None
    finally:
        await manager.shutdown_all()

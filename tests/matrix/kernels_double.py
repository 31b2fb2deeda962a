"""A stand-in kernel manager for the Matrix plumbing tests while the real kernel core lands.

``run`` takes tiny scripts: ``stream N`` prints N lines, the first at once and each other one
when the test calls L{CannedKernels.print_next_line} (so a test waits on what the chat shows, not
on time), ``ask P``
asks for input with prompt P and prints the answer, ``secret P`` asks for a password, ``image``
shows a PNG, ``long`` prints more than fits in a message, ``fail`` raises; anything else is
echoed as the execution's result.
"""

from __future__ import annotations

import struct
import zlib

from twisted.internet.defer import Deferred, DeferredQueue, succeed

from jupybot.kernels import (
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    ExecutionListener,
    ExecutionResult,
    Stream,
)
from tests.commands.fakes import FakeKernels


def tiny_png(width: int = 2, height: int = 1) -> bytes:
    """A valid PNG of C{width} x C{height} black pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


class CannedKernels(FakeKernels):
    def __init__(self) -> None:
        super().__init__()
        self._next_lines: DeferredQueue[None] = DeferredQueue()

    def print_next_line(self) -> None:
        """Let a running ``stream`` print its next line (now, or as soon as it runs)."""
        self._next_lines.put(None)

    def execute(
        self,
        owner: str,
        code: str,
        listener: ExecutionListener,
        name: str | None = None,
        allow_stdin: bool = True,
        silent: bool = False,
    ) -> Deferred[ExecutionResult]:
        self.calls.append(("execute", owner, code))
        count = sum(1 for c in self.calls if c[0] == "execute")
        return Deferred.fromCoroutine(self._run(code, listener, count))

    async def _run(self, code: str, listener: ExecutionListener, count: int) -> ExecutionResult:
        word, _, rest = code.partition(" ")
        if word == "stream":
            for i in range(int(rest)):
                if i:
                    await self._next_lines.get()
                listener.on_output(Stream("stdout", f"line {i}\n"))
            return ExecutionResult("ok", count, int(rest) * 0.5)
        if word == "ask":
            answer = await listener.on_input_request(rest, False)
            listener.on_output(Stream("stdout", f"got {answer}\n"))
            return ExecutionResult("ok", count, 0.1)
        if word == "secret":
            answer = await listener.on_input_request(rest, True)
            listener.on_output(Stream("stdout", f"got {len(answer)} characters\n"))
            return ExecutionResult("ok", count, 0.1)
        if word == "image":
            listener.on_output(DisplayData({"image/png": tiny_png(), "text/plain": "<Figure>"}))
            return ExecutionResult("ok", count, 0.1)
        if word == "long":
            listener.on_output(Stream("stdout", "".join(f"row {i}\n" for i in range(2000))))
            return ExecutionResult("ok", count, 0.1)
        if word == "fail":
            listener.on_output(
                ErrorOutput("ValueError", "bad", ("\x1b[31mValueError\x1b[0m: bad",))
            )
            return ExecutionResult("error", count, 0.1)
        listener.on_output(ExecuteResult({"text/plain": f"echo: {code}"}, {}, count))
        return ExecutionResult("ok", count, 0.001)


__all__ = ["CannedKernels", "succeed", "tiny_png"]

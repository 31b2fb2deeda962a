"""Test doubles at the command layer's two seams: a chat conversation and the kernel manager."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, succeed

from jupybot.commands import Conversation, Reply, reply_to_text
from jupybot.kernels import (
    DisplayData,
    ExecuteResult,
    ExecutionListener,
    ExecutionResult,
    KernelHandle,
    KernelManager,
    KernelSpec,
    NoSuchKernel,
    OutputEvent,
    Stream,
)
from jupybot.rendering import Attachment, Image, Rendered, RenderOptions


@dataclass
class FakeConversation:
    """Records what the bot sends; every call succeeds at once with a fresh message id."""

    key: str = "test:room"
    is_direct: bool = False
    sent: list[tuple[str, Reply, str | None]] = field(default_factory=list)
    edits: list[tuple[str, Reply]] = field(default_factory=list)
    reactions: list[tuple[str, str]] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    files: list[Attachment] = field(default_factory=list)
    directs: dict[str, FakeConversation] = field(default_factory=dict)
    _count: int = 0

    def _next_id(self) -> str:
        self._count += 1
        return f"{self.key}/m{self._count}"

    def send(self, reply: Reply, in_reply_to: str | None = None) -> Deferred[str]:
        message_id = self._next_id()
        self.sent.append((message_id, reply, in_reply_to))
        return succeed(message_id)

    def edit(self, message_id: str, reply: Reply) -> Deferred[None]:
        self.edits.append((message_id, reply))
        return succeed(None)

    def react(self, message_id: str, key: str) -> Deferred[None]:
        self.reactions.append((message_id, key))
        return succeed(None)

    def send_image(self, image: Image, in_reply_to: str | None = None) -> Deferred[str]:
        self.images.append(image)
        return succeed(self._next_id())

    def send_file(self, attachment: Attachment, in_reply_to: str | None = None) -> Deferred[str]:
        self.files.append(attachment)
        return succeed(self._next_id())

    def direct_with(self, user_id: str) -> Deferred[Conversation]:
        direct = self.directs.setdefault(
            user_id, FakeConversation(key=f"test:dm:{user_id}", is_direct=True)
        )
        return succeed(direct)

    def texts(self) -> list[str]:
        return [reply_to_text(reply) for _, reply, _ in self.sent]

    def last_text(self, message_id: str | None = None) -> str:
        """The latest content of C{message_id} (edits applied), or of the last message sent."""
        if message_id is None:
            message_id = self.sent[-1][0]
        for edited_id, reply in reversed(self.edits):
            if edited_id == message_id:
                return reply_to_text(reply)
        for sent_id, reply, _ in self.sent:
            if sent_id == message_id:
                return reply_to_text(reply)
        raise KeyError(message_id)


@dataclass
class Execution:
    code: str
    listener: ExecutionListener
    name: str | None
    result: Deferred[ExecutionResult]
    silent: bool = False


class FakeKernels(KernelManager):
    """Kernels as the command layer sees them; each execute() waits for the test to finish it."""

    def __init__(self) -> None:
        self.handles: dict[str, list[KernelHandle]] = {}
        self.currents: dict[str, str] = {}
        self.executions: list[Execution] = []
        self.calls: list[tuple[str, str, str | None]] = []

    def kernelspecs(self) -> Deferred[list[KernelSpec]]:
        return succeed([KernelSpec("python3", "Python 3 (ipykernel)", "python")])

    def start(
        self, owner: str, spec: str | None = None, name: str | None = None
    ) -> Deferred[KernelHandle]:
        owned = self.handles.setdefault(owner, [])
        handle = KernelHandle(
            name=name or f"k{len(owned) + 1}",
            kernel_id=f"id{len(owned)}",
            spec=spec or "python3",
            owner=owner,
        )
        owned.append(handle)
        self.currents[owner] = handle.name
        return succeed(handle)

    def kernels(self, owner: str) -> list[KernelHandle]:
        return list(self.handles.get(owner, []))

    def current(self, owner: str) -> KernelHandle | None:
        name = self.currents.get(owner)
        return next((h for h in self.kernels(owner) if h.name == name), None)

    def use(self, owner: str, name: str) -> KernelHandle:
        for handle in self.kernels(owner):
            if handle.name == name:
                self.currents[owner] = name
                return handle
        raise NoSuchKernel(f"There is no kernel named '{name}' here.")

    def execute(
        self,
        owner: str,
        code: str,
        listener: ExecutionListener,
        name: str | None = None,
        allow_stdin: bool = True,
        silent: bool = False,
    ) -> Deferred[ExecutionResult]:
        result: Deferred[ExecutionResult] = Deferred()
        self.executions.append(Execution(code, listener, name, result, silent))
        return result

    def interrupt(self, owner: str, name: str | None = None) -> Deferred[None]:
        self.calls.append(("interrupt", owner, name))
        return succeed(None)

    def restart(self, owner: str, name: str | None = None) -> Deferred[None]:
        self.calls.append(("restart", owner, name))
        return succeed(None)

    def stop(self, owner: str, name: str | None = None) -> Deferred[None]:
        self.calls.append(("stop", owner, name))
        return succeed(None)


def simple_render(events: Sequence[OutputEvent], options: RenderOptions) -> Rendered:
    """A small stand-in for the kernel renderer: text, cut at max_text_chars; PNG images."""
    text = ""
    images: list[Image] = []
    for event in events:
        if isinstance(event, Stream):
            text += event.text
        elif isinstance(event, (ExecuteResult, DisplayData)):
            data: dict[str, Any] = event.data
            if "image/png" in data:
                images.append(Image("image/png", data["image/png"], 1, 1, "image.png"))
            elif "text/plain" in data:
                text += data["text/plain"] + "\n"
    truncated = len(text) > options.max_text_chars
    files = [Attachment("output.txt", "text/plain", text.encode())] if truncated else []
    shown = text[: options.max_text_chars]
    return Rendered(text=shown.rstrip("\n"), images=images, files=files, truncated=truncated)

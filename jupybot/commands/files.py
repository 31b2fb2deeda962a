"""Files in and out of a room's kernel: `put` writes a file sent to the room into the folder the
kernel works in, `get PATH` sends a file from there to the room (docs/commands.md, "Files").

The transfer goes through the kernel itself, in silent executions of L{_kernel_files}'s source
(512 KiB a piece): that works on every gateway, Kernel Gateway included, which has no contents
API. What a path may be is checked twice: here, as typed (no C{..}, no control characters), and
in the kernel, where the path is walked from the kernel's starting folder without following a
single link. Sizes are capped both ways (C{NotebookLimits.transfer_bytes}) and the kernel's
answers are checked against what was asked: a kernel cannot make the bot send more than the
cap, or a file it was not asked for.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import mimetypes
import re
import secrets
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail

from ..ansi import strip_ansi
from ..kernels import (
    DisplayData,
    ErrorOutput,
    ExecutionResult,
    KernelError,
    KernelHandle,
    KernelManager,
    OutputEvent,
    Stream,
)
from ..redaction import Redactor
from ..rendering import Attachment
from .conversation import IncomingAttachment, Reply
from .notebook import NotebookLimits

__all__ = [
    "HELPER_SOURCE",
    "PIECE_BYTES",
    "FileRefused",
    "RoomFiles",
    "attachment_name",
    "typed_path",
]

# What one execution carries: base64 makes it a third bigger, well under the 10 MiB a Kernel
# Gateway's websocket takes in one message.
PIECE_BYTES = 512 * 1024
HELPER_SOURCE = Path(__file__).with_name("_kernel_files.py").read_text(encoding="utf-8")
ANSWER_MIME = "application/x.jupybot-files+json"
ANSWER_MARK = "\x1ejupybot-files:"

_MAX_PATH_CHARS = 1024
_MAX_NAME_BYTES = 255
_NAME_CHARS = re.compile(r"[^\w .+=@,()\[\]-]")


class FileRefused(Exception):
    """A put or get that will not happen; C{str()} says why, for people."""


def size_text(size: int) -> str:
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def size_beyond(size: int, limit: int) -> tuple[str, str]:
    """C{size} and C{limit} as people read them, in bytes where rounding would show them equal."""
    if size_text(size) == size_text(limit):
        return f"{size:,} bytes", f"{limit:,} bytes"
    return size_text(size), size_text(limit)


def typed_path(text: str) -> str:
    """A path as typed after C{put} or C{get}, checked: quotes around it and C{./} removed;
    refused (L{FileRefused}) with C{..}, control characters, a backslash or an empty name."""
    path = text.strip()
    if len(path) >= 2 and path[0] == path[-1] and path[0] in "\"'`":
        path = path[1:-1].strip()
    if not path:
        raise FileRefused("Which file? Give its path in the kernel's folder, e.g. data.csv.")
    if len(path) > _MAX_PATH_CHARS:
        raise FileRefused(f"That path is {len(path)} characters long: I take up to 1024.")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise FileRefused("That path has control characters in it: I take printable names only.")
    if "\\" in path:
        raise FileRefused("Use / between folders (a backslash is not a folder separator here).")
    absolute = path.startswith("/")
    names = [n for n in path.split("/") if n not in ("", ".")]
    if ".." in names:
        raise FileRefused(
            "'..' is not allowed in a path: I only reach files in the kernel's folder "
            "and the folders in it."
        )
    if not names:
        raise FileRefused("That is a folder, not a file: give a file's path, e.g. data.csv.")
    for name in names:
        if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
            raise FileRefused(f"'{name[:40]}…' is too long a name: up to 255 bytes.")
    return ("/" if absolute else "") + "/".join(names)


def attachment_name(filename: str) -> str:
    """The name a file sent to the room is saved under: its last part, with letters, digits
    and a few marks (others become C{_}), not hidden, at most 120 characters."""
    name = re.split(r"[/\\]", filename)[-1]
    name = "".join(c for c in name if ord(c) >= 32 and ord(c) != 127)
    name = _NAME_CHARS.sub("_", name).strip(" .-")
    if len(name) > 120:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: 119 - len(extension)] + "." + extension
        else:
            name = name[:120]
    return name or "file"


class _Answers:
    """The listener of one of jupybot's executions in a kernel: the helper's answer, and any
    error the kernel raised instead."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.stdout: list[str] = []
        self.errors: list[str] = []

    def on_output(self, event: OutputEvent) -> None:
        if isinstance(event, DisplayData) and ANSWER_MIME in event.data:
            self.answers.append(event.data[ANSWER_MIME])
        elif isinstance(event, Stream) and event.name == "stdout":
            self.stdout.append(event.text)
        elif isinstance(event, ErrorOutput):
            self.errors.append(f"{event.ename}: {event.evalue}" if event.evalue else event.ename)

    def on_input_request(self, prompt: str, password: bool) -> Deferred[str]:
        return fail(KernelError("jupybot's file transfer does not answer input()"))

    def answer(self) -> Any:
        if self.answers:
            return self.answers[-1]
        for line in "".join(self.stdout).splitlines():
            if line.startswith(ANSWER_MARK):
                try:
                    return json.loads(line[len(ANSWER_MARK) :])
                except ValueError:
                    return None
        return None


class RoomFiles:
    """C{put} and C{get} in a room's current kernel (which must be a Python one)."""

    def __init__(
        self,
        kernels: KernelManager,
        limits: NotebookLimits,
        redact: Redactor,
        helper: str = HELPER_SOURCE,
    ) -> None:
        self._kernels = kernels
        self._limit = limits.transfer_bytes
        self._redact = redact
        self._helper = helper

    @property
    def limit(self) -> int:
        return self._limit

    # -- put ----------------------------------------------------------------------------------

    async def put(
        self, room: str, name: str | None, attachment: IncomingAttachment | None
    ) -> Reply:
        """Write C{attachment} as C{name} (or its own name) into the kernel's folder."""
        try:
            return await self._put(room, name, attachment)
        except FileRefused as e:
            return Reply.text(f"❌ {e}")

    async def _put(
        self, room: str, name: str | None, attachment: IncomingAttachment | None
    ) -> Reply:
        if attachment is None:
            raise FileRefused(
                "Send a file with 'put' (or reply to a file with 'put'): it is written into "
                "the kernel's folder, where open('its name') reads it."
            )
        size = attachment.size if attachment.size is not None else len(attachment.data)
        if size > self._limit:
            shown, limit = size_beyond(size, self._limit)
            raise FileRefused(f"That file is {shown}: 'put' takes files of up to {limit}.")
        if name is None:
            path = attachment_name(attachment.filename)
        elif name.rstrip().endswith("/"):
            path = typed_path(
                name.rstrip().rstrip("/") + "/" + attachment_name(attachment.filename)
            )
        else:
            path = typed_path(name)
        await self._python_kernel(room, start=True)
        data = attachment.data
        token = secrets.token_hex(8)
        pieces = [data[i : i + PIECE_BYTES] for i in range(0, len(data), PIECE_BYTES)] or [b""]
        answer: dict[str, Any] = {}
        try:
            for index, piece in enumerate(pieces):
                answer = await self._call(
                    room,
                    {
                        "op": "put",
                        "path": path,
                        "token": token,
                        "offset": index * PIECE_BYTES,
                        "data": base64.b64encode(piece).decode("ascii"),
                        "last": index == len(pieces) - 1,
                        "limit": self._limit,
                    },
                    path,
                    "write",
                )
        except (FileRefused, KernelError):
            await self._abort(room, path, token)
            raise
        where = self._shown(answer.get("where")) or path
        replaced = "; it replaced the file that was there" if answer.get("replaced") else ""
        return Reply.text(f"📥 Saved {where} ({size_text(len(data))}){replaced}.")

    async def _abort(self, room: str, path: str, token: str) -> None:
        with contextlib.suppress(FileRefused, KernelError):
            await self._call(room, {"op": "abort", "path": path, "token": token}, path, "write")

    # -- get ----------------------------------------------------------------------------------

    async def get(self, room: str, path: str) -> Attachment | Reply:
        """The file at C{path} in the kernel's folder, to send; or why not."""
        try:
            return await self._get(room, typed_path(path))
        except FileRefused as e:
            return Reply.text(f"❌ {e}")

    async def _get(self, room: str, path: str) -> Attachment:
        if await self._python_kernel(room, start=False) is None:
            raise FileRefused("There is no kernel here yet, so no file to get: 'run' starts one.")
        pieces: list[bytes] = []
        offset, size = 0, -1
        expect: Any = None
        while True:
            answer = await self._call(
                room,
                {
                    "op": "get",
                    "path": path,
                    "offset": offset,
                    "length": PIECE_BYTES,
                    "limit": self._limit,
                    "expect": expect,
                },
                path,
                "read",
            )
            try:
                data = base64.b64decode(answer["data"], validate=True)
                told, expect = answer["size"], answer["identity"]
                if not isinstance(told, int) or not isinstance(expect, list):
                    raise TypeError("not a size")
            except (KeyError, TypeError, ValueError, binascii.Error):
                raise FileRefused("The kernel's answer was not what I asked for.") from None
            if size < 0:
                size = told
            if told != size or len(data) > PIECE_BYTES or offset + len(data) > size:
                raise FileRefused(f"{path} changed while I was reading it; try again.")
            if size > self._limit:  # the kernel should have said so itself
                raise FileRefused(self._refusal({"error": "too_big", "size": size}, path, "read"))
            pieces.append(data)
            offset += len(data)
            if offset >= size:
                break
            if not data:
                raise FileRefused(f"{path} changed while I was reading it; try again.")
        content = b"".join(pieces)
        if self._holds_secret(content):
            raise FileRefused("That file holds one of this bot's secrets: I do not send it.")
        name = attachment_name(path.rsplit("/", 1)[-1])
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Attachment(name, mimetype, content)

    def _holds_secret(self, content: bytes) -> bool:
        if not self._redact:
            return False
        for text in (content.decode("utf-8", "replace"), content.decode("latin-1")):
            if self._redact(text) != text:
                return True
        return False

    # -- the kernel ---------------------------------------------------------------------------

    async def _python_kernel(self, room: str, start: bool) -> KernelHandle | None:
        """The room's current kernel, started first if C{start}; refused unless Python."""
        handle = self._kernels.current(room)
        if handle is None and start:
            # An empty silent run starts the room's kernel as its first run would.
            await self._kernels.execute(room, "", _Answers(), allow_stdin=False, silent=True)
            handle = self._kernels.current(room)
        if handle is None:
            return None
        try:
            specs = await self._kernels.kernelspecs()
        except KernelError:
            specs = []
        spec = next((s for s in specs if s.name == handle.spec), None)
        if spec is not None and not spec.language.lower().startswith("python"):
            raise FileRefused(
                f"'put' and 'get' work in Python kernels; kernel '{handle.name}' here is "
                f"{spec.display_name}."
            )
        return handle

    async def _call(
        self, room: str, request: dict[str, Any], path: str, doing: str
    ) -> dict[str, Any]:
        listener = _Answers()
        code = (
            f"(lambda g: (exec({self._helper!r}, g), g['main']({request!r})))"
            "({'__name__': '_jupybot_files'})"
        )
        result: ExecutionResult = await self._kernels.execute(
            room, code, listener, allow_stdin=False, silent=True
        )
        answer = listener.answer()
        if not isinstance(answer, dict):
            why = listener.errors[-1] if listener.errors else (result.message or result.status)
            raise FileRefused(
                f"The kernel could not {doing} {path}: {self._shown(strip_ansi(why), 300)}"
            )
        if "error" in answer:
            raise FileRefused(self._refusal(answer, path, doing))
        if answer.get("ok") is not True:
            raise FileRefused("The kernel's answer was not what I asked for.")
        return answer

    def _shown(self, value: Any, limit: int = 200) -> str:
        """Text from the kernel, as it may be shown: a string, printable, short, redacted."""
        if not isinstance(value, str):
            return ""
        text = "".join(c if c.isprintable() else "?" for c in value)
        text = self._redact(text)
        return text if len(text) <= limit else text[:limit] + "…"

    def _refusal(self, answer: dict[str, Any], path: str, doing: str) -> str:
        root = self._shown(answer.get("root")) or "the kernel's folder"
        at = self._shown(answer.get("at")) or path
        verb = "send files from" if doing == "read" else "write files into"
        match answer.get("error"):
            case "outside":
                return f"{path} is outside the kernel's folder ({root}): I only {verb} there."
            case "bad_path":
                return f"{path} is not a path I take: no '..', no empty names."
            case "link":
                return (
                    f"{at} is a symbolic link: I do not follow links, which could lead out of "
                    f"the kernel's folder ({root})."
                )
            case "not_folder":
                return f"{at} is not a folder."
            case "missing":
                return f"There is no {at} in the kernel's folder ({root})."
            case "is_folder":
                return f"{path} is a folder: I only {verb.split()[0]} files."
            case "not_regular":
                return (
                    f"{path} is not a regular file (a pipe, a socket or a device): "
                    f"I only {verb.split()[0]} regular files."
                )
            case "hard_links":
                return (
                    f"{path} has other names (hard links), one of which could be a file from "
                    "outside the kernel's folder: I only send a file that has one name."
                )
            case "too_big":
                size = answer.get("size")
                size = size if isinstance(size, int) else self._limit + 1
                shown, limit = size_beyond(size, self._limit)
                what = "'get' sends" if doing == "read" else "'put' takes"
                return f"{path} is {shown}: {what} files of up to {limit}."
            case "changed":
                return f"{path} changed while I was {doing.rstrip('e')}ing it; try again."
            case "os":
                detail = self._shown(answer.get("detail")) or "an error"
                return f"The kernel could not {doing} {path}: {detail}."
        return "The kernel's answer was not what I asked for."

"""Files people send to a room, for the commands that take one (`run` a notebook, `put`).

On Matrix a file is its own event (C{m.file}, or C{m.image}, C{m.audio}, C{m.video}); a command
takes it by replying to it (``!bot run`` as a reply to the notebook, ``!bot put`` to a CSV).
L{RoomFiles} remembers the latest file events of each room and, before a sync's commands are
handed on, downloads the file each such reply names: through authenticated media
(C{/_matrix/client/v1/media}, MSC3916, as nio does it) and decrypted in encrypted rooms. The
download happens before the room's events go to the command layer, so the commands keep their
order. A file bigger than the command takes is not downloaded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from nio import AsyncClient, DownloadError, MegolmEvent, RoomGetEventResponse
from nio.crypto.attachments import decrypt_attachment
from twisted.logger import Logger

from ..commands import IncomingAttachment
from .api import MatrixApi, MatrixError

__all__ = ["RoomFiles"]

# The latest file events remembered, across rooms; an older one is fetched from the server.
_REMEMBERED = 200

# (room id, sender, text of the reply) -> the most bytes that command takes from the file it
# replies to, or None when it takes none (or its sender may not use it)
WantsFile = Callable[[str, str, str], int | None]
_FILE_TYPES = ("m.file", "m.image", "m.audio", "m.video")

log = Logger()


def _file_content(source: dict[str, Any]) -> dict[str, Any] | None:
    content = source.get("content")
    if not isinstance(content, dict) or content.get("msgtype") not in _FILE_TYPES:
        return None
    if not isinstance(content.get("url") or (content.get("file") or {}).get("url"), str):
        return None
    return content


class RoomFiles:
    """The files of recent C{m.file} events, downloaded when a command replies to one."""

    def __init__(self, client: AsyncClient, api: MatrixApi) -> None:
        self._client = client
        self._api = api
        self._files: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    async def for_commands(
        self, room_id: str, events: list[Any], wants: WantsFile
    ) -> dict[str, tuple[IncomingAttachment, ...]]:
        """The attachments of the commands among C{events} that reply to a file to run, by
        the command's event id; file events among them are remembered on the way."""
        found: dict[str, tuple[IncomingAttachment, ...]] = {}
        for event in events:
            source = getattr(event, "source", None)
            if not isinstance(source, dict):
                continue
            if _file_content(source) is not None and isinstance(source.get("event_id"), str):
                self._remember(room_id, source["event_id"], source["content"])
                continue
            content = source.get("content") or {}
            replied = ((content.get("m.relates_to") or {}).get("m.in_reply_to") or {}).get(
                "event_id"
            )
            text = getattr(event, "body", None)
            if not isinstance(replied, str) or not isinstance(text, str):
                continue
            cap = wants(room_id, getattr(event, "sender", ""), text)
            if cap is None:
                continue
            attachment = await self._attachment(room_id, replied, cap)
            if attachment is not None:
                found[getattr(event, "event_id", "")] = (attachment,)
        return found

    def _remember(self, room_id: str, event_id: str, content: dict[str, Any]) -> None:
        self._files[(room_id, event_id)] = content
        self._files.move_to_end((room_id, event_id))
        while len(self._files) > _REMEMBERED:
            self._files.popitem(last=False)

    async def _attachment(
        self, room_id: str, event_id: str, max_bytes: int
    ) -> IncomingAttachment | None:
        content = self._files.get((room_id, event_id)) or await self._fetch(room_id, event_id)
        if content is None:
            return None
        filename = str(content.get("filename") or content.get("body") or "file")
        info = content.get("info")
        if not isinstance(info, dict):
            info = {}
        mimetype = str(info.get("mimetype") or "application/octet-stream")
        size = info.get("size")
        if isinstance(size, int) and size > max_bytes:
            return IncomingAttachment(filename, mimetype, b"", size)
        try:
            data = await self._download(content)
        except (MatrixError, ValueError, KeyError, TypeError) as e:
            log.warn("matrix: could not download {name}: {error}", name=filename, error=str(e))
            return None
        if len(data) > max_bytes:
            return IncomingAttachment(filename, mimetype, b"", len(data))
        return IncomingAttachment(filename, mimetype, data)

    async def _fetch(self, room_id: str, event_id: str) -> dict[str, Any] | None:
        """A file event the bot no longer remembers (before a restart), read from the server."""
        try:
            response = await self._api.retrying(
                f"reading event {event_id}", lambda: self._client.room_get_event(room_id, event_id)
            )
        except MatrixError:
            return None
        if not isinstance(response, RoomGetEventResponse):
            return None
        event = response.event
        if isinstance(event, MegolmEvent):
            try:
                event = self._client.decrypt_event(event)
            except Exception:
                return None
        source = getattr(event, "source", None)
        return _file_content(source) if isinstance(source, dict) else None

    async def _download(self, content: dict[str, Any]) -> bytes:
        encrypted = content.get("file")
        url = encrypted["url"] if isinstance(encrypted, dict) else content["url"]
        response = await self._api.retrying(
            "downloading a file", lambda: self._client.download(mxc=url)
        )
        if isinstance(response, DownloadError) or not isinstance(
            getattr(response, "body", None), bytes
        ):
            raise MatrixError(f"the download was refused: {response}")
        body: bytes = response.body
        if isinstance(encrypted, dict):
            body = decrypt_attachment(
                body, encrypted["key"]["k"], encrypted["hashes"]["sha256"], encrypted["iv"]
            )
        return body

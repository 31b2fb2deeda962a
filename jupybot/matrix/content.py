"""Matrix event contents for the bot's replies: notices with HTML, rich replies, edits, media."""

from __future__ import annotations

import json
from typing import Any

from ..commands import Reply, reply_to_html, reply_to_text
from ..rendering import Attachment, Image

__all__ = [
    "edit_content",
    "file_content",
    "image_content",
    "notice_content",
    "reaction_content",
    "strip_reply_fallback",
]

HTML_FORMAT = "org.matrix.custom.html"
# Homeservers refuse events over 65536 bytes; keep well below with room for the envelope.
_MAX_CONTENT_BYTES = 48_000
# An empty m.mentions turns off the body-matching push rules (@room, display names): the bot's
# messages never ping anyone, whatever the kernel printed (Matrix 1.7, intentional mentions).
NO_MENTIONS: dict[str, Any] = {}


def _reply_relation(in_reply_to: str | None) -> dict[str, Any]:
    return {"m.relates_to": {"m.in_reply_to": {"event_id": in_reply_to}}} if in_reply_to else {}


def _size(content: dict[str, Any]) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode())


def _message(reply: Reply, msgtype: str) -> dict[str, Any]:
    body = reply_to_text(reply)
    content: dict[str, Any] = {
        "msgtype": msgtype,
        "body": body,
        "format": HTML_FORMAT,
        "formatted_body": reply_to_html(reply),
        "m.mentions": dict(NO_MENTIONS),
    }
    if _size(content) > _MAX_CONTENT_BYTES:
        # The HTML goes first; the text is cut if it alone is still too big.
        del content["format"], content["formatted_body"]
        if _size(content) > _MAX_CONTENT_BYTES:
            content["body"] = body[: _MAX_CONTENT_BYTES // 4] + "\n… (cut)"
    return content


def notice_content(reply: Reply, in_reply_to: str | None = None) -> dict[str, Any]:
    """An m.notice (bots' messages, which other bots ignore), as a rich reply if asked."""
    return {**_message(reply, "m.notice"), **_reply_relation(in_reply_to)}


def edit_content(event_id: str, reply: Reply) -> dict[str, Any]:
    """An m.replace edit of the bot's message C{event_id}, with the "* " fallback for old clients."""
    new = _message(reply, "m.notice")
    fallback = {**new, "body": "* " + new["body"]}
    if "formatted_body" in new:
        fallback["formatted_body"] = "* " + new["formatted_body"]
    return {
        **fallback,
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }


def image_content(
    url: str, image: Image, in_reply_to: str | None, file: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An m.image; C{file} (with its key) replaces C{url} in encrypted rooms."""
    info: dict[str, Any] = {"mimetype": image.mimetype, "size": len(image.data)}
    if image.width:
        info["w"] = image.width
    if image.height:
        info["h"] = image.height
    content: dict[str, Any] = {
        "msgtype": "m.image",
        "body": image.filename,
        "info": info,
        "m.mentions": dict(NO_MENTIONS),
        **_reply_relation(in_reply_to),
    }
    content.update({"file": file} if file else {"url": url})
    return content


def file_content(
    url: str,
    attachment: Attachment,
    in_reply_to: str | None,
    file: dict[str, Any] | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "msgtype": "m.file",
        "body": attachment.filename,
        "filename": attachment.filename,
        "info": {"mimetype": attachment.mimetype, "size": len(attachment.data)},
        "m.mentions": dict(NO_MENTIONS),
        **_reply_relation(in_reply_to),
    }
    content.update({"file": file} if file else {"url": url})
    return content


def reaction_content(event_id: str, key: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}


def strip_reply_fallback(body: str) -> str:
    """A reply's body without the quoted "> <@user> text" lines older clients put first."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and lines[index] == "":
        index += 1
    return "\n".join(lines[index:])

"""Matrix event contents and the state files, without a homeserver."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from jupybot.commands import CodeBlock, Paragraph, Reply
from jupybot.matrix.content import (
    edit_content,
    file_content,
    image_content,
    notice_content,
    strip_reply_fallback,
)
from jupybot.matrix.session import SessionFile, StoredSession, SyncFile, SyncState
from jupybot.rendering import Attachment, Image

REPLY = Reply((Paragraph("result:"), CodeBlock("42")))


def test_notice_is_a_rich_reply_that_pings_nobody() -> None:
    content = notice_content(REPLY, "$command")
    assert content == {
        "msgtype": "m.notice",
        "body": "result:\n\n```\n42\n```",
        "format": "org.matrix.custom.html",
        "formatted_body": "<p>result:</p><pre><code>42</code></pre>",
        "m.mentions": {},
        "m.relates_to": {"m.in_reply_to": {"event_id": "$command"}},
    }


def test_edit_replaces_with_a_fallback() -> None:
    content = edit_content("$reply", REPLY)
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$reply"}
    assert content["body"] == "* result:\n\n```\n42\n```"
    assert content["m.new_content"]["body"] == "result:\n\n```\n42\n```"
    assert "m.relates_to" not in content["m.new_content"]


def test_oversized_content_drops_html_then_cuts_text() -> None:
    big = Reply((CodeBlock("x" * 100_000),))
    content = notice_content(big)
    assert "formatted_body" not in content
    assert len(json.dumps(content).encode()) < 65_536
    assert content["body"].endswith("… (cut)")


def test_media_contents() -> None:
    image = image_content("mxc://s/i", Image("image/png", b"png", 4, 3, "plot.png"), "$c")
    assert image["info"] == {"mimetype": "image/png", "size": 3, "w": 4, "h": 3}
    assert image["url"] == "mxc://s/i" and image["body"] == "plot.png"
    encrypted = file_content(
        "mxc://s/f", Attachment("out.txt", "text/plain", b"abc"), None, file={"url": "mxc://s/f"}
    )
    assert "url" not in encrypted and encrypted["file"] == {"url": "mxc://s/f"}


def test_reply_fallback_is_removed() -> None:
    assert strip_reply_fallback("> <@a:b> question?\n> more\n\nmy answer") == "my answer"
    assert strip_reply_fallback("plain > text") == "plain > text"


def test_state_files_are_private_and_survive_garbage(tmp_path: Path) -> None:
    sessions = SessionFile(tmp_path / "session.json")
    stored = StoredSession("https://hs", "@bot:hs", "DEVICE", "token")
    sessions.save(stored)
    assert stat.S_IMODE((tmp_path / "session.json").stat().st_mode) == 0o600
    assert sessions.load("https://hs", "@bot:hs") == stored
    assert sessions.load("https://other", "@bot:hs") is None

    syncs = SyncFile(tmp_path / "sync.json")
    syncs.save(SyncState("s1_2", {"!r:hs": 5}, ["!r:hs"], []))
    assert syncs.load() == SyncState("s1_2", {"!r:hs": 5}, ["!r:hs"], [])
    (tmp_path / "sync.json").write_text("{not json")
    assert syncs.load() == SyncState()

"""One strip_ansi for the renderer and the chat: what a kernel's coloured output leaves."""

from __future__ import annotations

import pytest

from jupybot.ansi import strip_ansi


@pytest.mark.parametrize(
    ("coloured", "plain"),
    [
        ("\x1b[31mValueError\x1b[39m: bad", "ValueError: bad"),
        ("\x1b[1;32m----> 1\x1b[0m 1/0", "----> 1 1/0"),
        # Colon-separated parameters (256-colour SGR) and private ones (cursor show/hide).
        ("\x1b[38:5:196mred\x1b[m", "red"),
        ("\x1b[?25lbusy\x1b[?25h", "busy"),
        ("50%\x1b[2K\r\x1b[1A100%", "50%\r100%"),
        # A hyperlink (OSC 8), ended by ST or BEL, and a window title.
        ("\x1b]8;;https://x.org\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1b]0;title\x07text", "text"),
        ("up\x1bMone", "upone"),
        ("no codes [31m here", "no codes [31m here"),
    ],
)
def test_codes_go_and_the_text_stays(coloured: str, plain: str) -> None:
    assert strip_ansi(coloured) == plain

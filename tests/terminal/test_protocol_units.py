"""The protocol's pure parts: its close codes agree with docs/protocol.md line for line."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from jupybot.terminal import wire
from jupybot.web.clients import Client, check_origin

DOCS = Path(__file__).parents[2] / "docs" / "protocol.md"


def documented_refusals() -> dict[str, int]:
    """Each short reason of the close-code table in docs/protocol.md, with its code."""
    found: dict[str, int] = {}
    for code, reasons in re.findall(r"^\| (\d{4}) \| ([^|]*) \|", DOCS.read_text(), re.M):
        for reason in re.findall(r"`([a-z-]+)`", reasons):
            found[reason] = int(code)
    return found


def test_every_refusal_closes_with_the_code_the_docs_give() -> None:
    documented = documented_refusals()
    assert documented == wire.REFUSAL_CLOSE_CODES
    for reason, code in documented.items():
        assert wire.close_code(reason) == code


def test_an_undocumented_reason_is_a_bad_request() -> None:
    assert wire.close_code("no-such-reason") == wire.CLOSE_BAD_REQUEST


@pytest.mark.parametrize("origin", ["null", "file://", "https://evil.example"])
def test_origins_that_say_nothing_or_another_site_are_refused(origin: str) -> None:
    page = Client("192.0.2.1", "https://jupybot.example")
    assert not check_origin(origin, page, ("https://me.example",)).allowed


def test_the_page_and_listed_origins_are_allowed() -> None:
    allowed = ("https://me.example",)
    page = Client("192.0.2.1", "https://jupybot.example")
    assert check_origin("https://me.example/", page, allowed).allowed
    assert check_origin("https://jupybot.example", page, allowed).allowed
    assert check_origin(None, page, allowed).allowed  # not a browser


def test_a_resize_frame_decodes_whatever_its_size() -> None:
    # Checked against the limits by the protocol (bad-size), not refused as a bad frame.
    assert wire.decode_client_frame(b"\x01" + struct.pack("!HH", 0, 0)) == wire.Resize(0, 0)

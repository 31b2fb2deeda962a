"""The page's HTML and its `web:` keys, without a browser: what a portfolio owner configures
shows, escaped, and a mistake is named by its key path."""

from __future__ import annotations

import pytest

from jupybot.config import ConfigError, parse_config
from jupybot.config.terminal import ProgramConfig
from jupybot.terminal.page import render_page

PROGRAMS = (
    ProgramConfig(name="py", title="Python <3", description="Types & all", argv=("python3",)),
)


def test_the_heading_and_intro_are_the_owners() -> None:
    config = parse_config(
        "web:\n  title: Ada's <b>programs</b>\n  intro: |\n    First.\n\n    Second & last.\n",
        environ={},
    )
    html = render_page(PROGRAMS, config.web.title, config.web.intro).decode()
    assert "<title>Ada&#x27;s &lt;b&gt;programs&lt;/b&gt;</title>" in html
    assert "<h1>Ada&#x27;s &lt;b&gt;programs&lt;/b&gt;</h1>" in html
    assert "<p>First.</p>" in html
    assert "<p>Second &amp; last.</p>" in html


def test_addresses_in_the_intro_are_links() -> None:
    html = render_page(
        PROGRAMS, intro="Back to https://ada.example/work?a=1&b=2. Or <script>, not a link."
    ).decode()
    assert (
        '<a href="https://ada.example/work?a=1&amp;b=2" rel="noopener">'
        "https://ada.example/work?a=1&amp;b=2</a>. Or &lt;script&gt;, not a link." in html
    )


def test_defaults_say_what_the_page_is() -> None:
    web = parse_config("", environ={}).web
    html = render_page(PROGRAMS, web.title, web.intro).decode()
    assert "<h1>Try my programs</h1>" in html
    assert "nothing to install" in html


def test_each_program_has_its_address_and_escaped_card() -> None:
    html = render_page(PROGRAMS).decode()
    assert 'href="#py"' in html
    assert "Python &lt;3" in html and "Types &amp; all" in html
    assert 'rel="icon" href="/static/favicon.svg"' in html


def test_the_page_knows_the_frame_limit_for_pastes() -> None:
    assert 'data-max-frame-kb="16"' in render_page(PROGRAMS, max_frame_kb=16).decode()


def test_an_empty_title_is_named_by_its_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("web:\n  title: '  '\n", environ={})
    assert caught.value.errors == ["web.title: must not be empty (it is the page's heading)"]

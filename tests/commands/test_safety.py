"""Mentions made inert, for a network without a no-pings switch: in prose, never in code."""

from __future__ import annotations

from jupybot.commands import defang_mentions, defang_paragraphs, reply_to_html, reply_to_text
from jupybot.commands.conversation import CodeBlock, HtmlBlock, Paragraph, Reply
from jupybot.commands.safety import WORD_JOINER


def test_room_pings_and_user_ids_are_made_inert() -> None:
    text = "hi @room and @everyone, @here; ping @alice:example.org or <@1234> <@&55> <#9>"
    safe = defang_mentions(text)
    for token in ("@room", "@everyone", "@here", "@alice:example.org", "<@1234>", "<@&55>", "<#9>"):
        assert token not in safe
    assert safe.replace(WORD_JOINER, "") == text


def test_ordinary_at_signs_are_left_alone() -> None:
    text = "a @ b, email me@example.org, @decorator, @roomy"
    assert defang_mentions(text) == text


def test_only_paragraphs_are_defanged_never_code() -> None:
    code = CodeBlock('{"user": "@bot:localhost"} @room')
    html = HtmlBlock("<b>@room</b>", "@room")
    reply = defang_paragraphs(Reply((Paragraph("ValueError: @room"), code, html)))
    assert reply == Reply((Paragraph(f"ValueError: @{WORD_JOINER}room"), code, html))


def test_reply_forms() -> None:
    reply = Reply((Paragraph("a <b> & c\nd"), CodeBlock("x = '```'", "python")))
    assert reply_to_text(reply) == "a <b> & c\nd\n\n````python\nx = '```'\n````"
    assert reply_to_html(reply) == (
        "<p>a &lt;b&gt; &amp; c<br>d</p>"
        '<pre><code class="language-python">x = &#x27;```&#x27;</code></pre>'
    )

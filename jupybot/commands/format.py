"""Turning a L{Reply} into the text forms chat networks take: Markdown-ish plain text and HTML."""

from __future__ import annotations

import html

from .conversation import CodeBlock, HtmlBlock, Paragraph, Reply

__all__ = ["reply_to_html", "reply_to_text"]


def _fence(text: str, language: str = "") -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text}\n{fence}"


def reply_to_text(reply: Reply) -> str:
    """Plain text with code in ``` fences: a Matrix C{body}, a Discord message."""
    parts: list[str] = []
    for block in reply.blocks:
        if isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, CodeBlock):
            parts.append(_fence(block.text, block.language))
        elif isinstance(block, HtmlBlock):
            parts.append(_fence(block.text))
    return "\n\n".join(p for p in parts if p)


def reply_to_html(reply: Reply) -> str:
    """HTML for clients that show it (a Matrix C{formatted_body}); HTML blocks are trusted as
    already sanitised by the kernel renderer."""
    parts: list[str] = []
    for block in reply.blocks:
        if isinstance(block, Paragraph):
            parts.append("<p>" + html.escape(block.text).replace("\n", "<br>") + "</p>")
        elif isinstance(block, CodeBlock):
            language = (
                f' class="language-{html.escape(block.language, quote=True)}"'
                if block.language
                else ""
            )
            parts.append(f"<pre><code{language}>{html.escape(block.text)}</code></pre>")
        elif isinstance(block, HtmlBlock):
            parts.append(block.html)
    return "".join(parts)

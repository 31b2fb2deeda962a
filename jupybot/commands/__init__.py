"""The platform-neutral chat command layer shared by the Matrix and Discord bots.

See docs/commands.md. Adapters implement L{Conversation}, build one L{ChatCommands} (from a
L{ChatNetwork}, L{ChatRules} and L{ChatStores}: C{assembly.build_chat_commands} makes them from
a chat section's config) and hand it each readable message as an L{IncomingMessage}.
"""

from __future__ import annotations

from .access import AccessPolicy, RefusalLimiter, matches
from .bot import ChatCommands
from .conversation import (
    Block,
    CodeBlock,
    Conversation,
    HtmlBlock,
    IncomingAttachment,
    IncomingMessage,
    IncomingReaction,
    Paragraph,
    Reply,
)
from .format import reply_to_html, reply_to_text
from .inflight import RunningReplies
from .parse import (
    Addressing,
    Command,
    Forget,
    Get,
    Help,
    Interrupt,
    Kernels,
    Notebook,
    Put,
    Restart,
    Run,
    RunNotebook,
    Specs,
    Start,
    Stop,
    UsageError,
    Use,
    extract_code,
    file_command,
    parse_message,
    strip_address,
    wants_file,
)
from .rooms import ChatLimits
from .safety import defang_mentions, defang_paragraphs
from .stdin import InputRouter
from .streaming import ExecutionReporter, RenderFunction, status_line
from .wiring import ChatNetwork, ChatRules, ChatStores

__all__ = [
    "AccessPolicy",
    "Addressing",
    "Block",
    "ChatCommands",
    "ChatLimits",
    "ChatNetwork",
    "ChatRules",
    "ChatStores",
    "CodeBlock",
    "Command",
    "Conversation",
    "ExecutionReporter",
    "Forget",
    "Get",
    "Help",
    "HtmlBlock",
    "IncomingAttachment",
    "IncomingMessage",
    "IncomingReaction",
    "InputRouter",
    "Interrupt",
    "Kernels",
    "Notebook",
    "Paragraph",
    "Put",
    "RefusalLimiter",
    "RenderFunction",
    "Reply",
    "Restart",
    "Run",
    "RunNotebook",
    "RunningReplies",
    "Specs",
    "Start",
    "Stop",
    "UsageError",
    "Use",
    "defang_mentions",
    "defang_paragraphs",
    "extract_code",
    "file_command",
    "matches",
    "parse_message",
    "reply_to_html",
    "reply_to_text",
    "status_line",
    "strip_address",
    "wants_file",
]

"""A configured secret that a kernel prints anyway never reaches the chat: not in the streamed
edits, the final reply, a traceback, a prompt, nor the uploaded full output."""

from __future__ import annotations

import html

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from jupybot.commands import (
    AccessPolicy,
    Addressing,
    ChatCommands,
    ChatNetwork,
    ChatRules,
    IncomingMessage,
    RenderFunction,
    reply_to_html,
    reply_to_text,
)
from jupybot.config import Secret
from jupybot.kernels import (
    DisplayData,
    ErrorOutput,
    ExecutionResult,
    KernelHandle,
    Stream,
    UnknownKernelSpec,
)
from jupybot.rendering import RenderOptions, render_outputs

from .fakes import FakeConversation, FakeKernels, simple_render

ALICE = "@alice:example.org"
PASSWORD = "correct-horse-battery"
TOKEN = "syt_Ym90_AbCdEfGhIjKl"
SHORT = "pw1234"  # under 8 characters: too common to cut out of output


class UnknownSpecs(FakeKernels):
    """Kernels whose start is refused with a message naming the spec asked for."""

    def start(
        self, owner: str, spec: str | None = None, name: str | None = None
    ) -> Deferred[KernelHandle]:
        return fail(UnknownKernelSpec(f"The gateway has no kernel '{spec}': {TOKEN}"))


def make_bot(
    render: RenderFunction = simple_render,
    secrets: tuple[str, ...] = (PASSWORD, TOKEN, SHORT),
    kernels: FakeKernels | None = None,
) -> tuple[ChatCommands, FakeKernels, Clock]:
    clock = Clock()
    kernels = kernels or FakeKernels()
    network = ChatNetwork(
        AccessPolicy.build(["*:example.org"], [], []),
        Addressing(prefixes=("!jupybot",)),
        RenderOptions(max_text_chars=50),
        render,
    )
    rules = ChatRules(secrets=tuple(Secret(secret) for secret in secrets))
    bot = ChatCommands(kernels, network, clock, rules=rules)
    return bot, kernels, clock


def run(bot: ChatCommands, room: FakeConversation, code: str) -> None:
    bot.handle(IncomingMessage(f"$cmd-{code}", ALICE, f"!jupybot run {code}", room))


def everything_shown(room: FakeConversation) -> str:
    """Every reply, every edit of one, every upload, in this room and its direct chats."""
    replies = [reply for _, reply, _ in room.sent] + [reply for _, reply in room.edits]
    shown = [reply_to_text(reply) + reply_to_html(reply) for reply in replies]
    shown += [upload.data.decode("utf-8", "replace") for upload in room.files + room.images]
    shown += [everything_shown(direct) for direct in room.directs.values()]
    return "\n".join(shown)


def test_a_printed_secret_is_redacted_from_edits_tracebacks_and_uploads() -> None:
    bot, kernels, clock = make_bot()
    room = FakeConversation()
    run(bot, room, "leak()")
    execution = kernels.executions[0]
    clock.advance(1.0)  # a long run: its reply is posted, then edited
    # Printed in two writes, and long enough to be cut (at 50 characters) inside the secret.
    execution.listener.on_output(Stream("stdout", "x" * 36 + " token=" + TOKEN[:6]))
    clock.advance(0.1)
    execution.listener.on_output(Stream("stdout", TOKEN[6:] + f"\npassword={PASSWORD}\n"))
    clock.advance(1.0)
    execution.listener.on_output(
        ErrorOutput(
            "LoginError",
            f"refused {PASSWORD}",
            (f"\x1b[31mLoginError\x1b[39m: login('{PASSWORD}')",),
        )
    )
    execution.result.callback(ExecutionResult("error", 2, 2.5, f"gave up after {TOKEN}"))

    assert len(room.edits) >= 2 and len(room.files) == 1
    shown = everything_shown(room)
    assert "[redacted]" in shown
    for secret in (PASSWORD, TOKEN):
        # Nor a half of one, as a cut at the length limit would have kept.
        assert secret[:6] not in shown
        assert secret[-6:] not in shown
    assert room.files[0].data.decode().startswith("x" * 36 + " token=[redacted]\n")
    final = room.last_text(room.sent[0][0])
    assert final.startswith("```\n" + "x" * 36 + " token")
    assert "LoginError: refused [redacted]" in final
    assert final.endswith("❌ error · [2] · 2.5 s · gave up after [redacted]")


def test_a_secret_in_html_output_is_redacted_escaped_too() -> None:
    password = "p&ss<w0rd>'42"
    bot, kernels, _ = make_bot(render_outputs, secrets=(password,))
    room = FakeConversation()
    run(bot, room, "df")
    execution = kernels.executions[0]
    execution.listener.on_output(
        DisplayData(
            {
                "text/html": f"<table><tr><td>{html.escape(password)}</td></tr></table>",
                "text/plain": f"0    {password}",
            }
        )
    )
    execution.result.callback(ExecutionResult("ok", 1, 0.1))
    shown = everything_shown(room)
    assert "<td>[redacted]</td>" in shown
    assert password not in shown
    assert html.escape(password) not in shown
    assert html.escape(password, quote=False) not in shown


def test_a_secret_in_a_prompt_is_redacted() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    run(bot, room, "input()")
    execution = kernels.executions[0]
    execution.listener.on_input_request(f"Is {PASSWORD} right? ", False)
    execution.listener.on_input_request(f"{TOKEN} again:", True)
    assert "⌨ The code asks" in room.texts()[-2]
    assert "Is [redacted] right?" in room.texts()[-2]
    assert "[redacted] again:" in room.directs[ALICE].texts()[-1]

    assert PASSWORD not in everything_shown(room)
    assert TOKEN not in everything_shown(room)


def test_a_secret_in_a_kernel_error_is_redacted() -> None:
    bot, _, _ = make_bot(kernels=UnknownSpecs())
    room = FakeConversation()
    bot.handle(IncomingMessage("$start", ALICE, "!jupybot start R", room))
    assert room.texts() == ["❌ The gateway has no kernel 'R': [redacted]"]


def test_short_secrets_are_left_in_ordinary_output() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    run(bot, room, "print(x)")
    execution = kernels.executions[0]
    execution.listener.on_output(Stream("stdout", f"{SHORT}\n"))
    execution.result.callback(ExecutionResult("ok", 1, 0.1))
    assert room.texts() == [f"```\n{SHORT}\n```\n\n✅ done · [1] · 100 ms"]

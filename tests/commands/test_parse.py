"""Parsing what people type into commands: addressing, aliases, code blocks, usage errors."""

from __future__ import annotations

import pytest

from jupybot.commands import (
    Addressing,
    Help,
    Interrupt,
    Kernels,
    Restart,
    Run,
    Specs,
    Start,
    Stop,
    UsageError,
    Use,
    extract_code,
    parse_message,
)

BOT = Addressing(prefixes=("!jupybot",), mentions=("@jupybot:example.org", "jupybot", "Jupy Bot"))


def test_messages_not_addressed_to_the_bot_are_ignored_in_rooms() -> None:
    assert parse_message("run 1+1", BOT, direct=False) is None
    assert parse_message("!jupybotx run 1", BOT, direct=False) is None
    assert parse_message("hello jupybot: run 1", BOT, direct=False) is None


@pytest.mark.parametrize(
    "text",
    [
        "!jupybot run 1+1",
        "  !JupyBot   run 1+1",
        "jupybot: run 1+1",
        "jupybot, run 1+1",
        "@jupybot:example.org run 1+1",
        "Jupy Bot: run 1+1",
    ],
)
def test_prefix_and_mentions_address_the_bot(text: str) -> None:
    assert parse_message(text, BOT, direct=False) == Run("1+1")


def test_direct_chats_need_no_prefix_but_accept_one() -> None:
    assert parse_message("run 1+1", BOT, direct=True) == Run("1+1")
    assert parse_message("!jupybot run 2", BOT, direct=True) == Run("2")


def test_code_on_following_lines_and_in_fences() -> None:
    multi = parse_message("!jupybot run\nx = 1\nprint(x)", BOT, direct=False)
    assert multi == Run("x = 1\nprint(x)")
    fenced = parse_message(
        "!jupybot run\n```python\nfor i in range(2):\n    print(i)\n```\nthanks", BOT, False
    )
    assert fenced == Run("for i in range(2):\n    print(i)")
    assert parse_message("!jupybot exec ```\nprint(1)\n```", BOT, direct=False) == Run("print(1)")
    assert parse_message("!jupybot run `6*7`", BOT, direct=False) == Run("6*7")
    assert parse_message("!jupybot run`6*7`", BOT, direct=False) == Run("6*7")


def test_unclosed_fence_takes_the_rest() -> None:
    assert extract_code("```py\nprint(1)\nprint(2)") == "print(1)\nprint(2)"


def test_original_spellings_are_aliases() -> None:
    assert parse_message("!jupybot startKernel python3", BOT, direct=False) == Start("python3")
    execute = parse_message("!jupybot executeKernel calc\nprint(1)", BOT, direct=False)
    assert execute == Run("print(1)", kernel="calc")
    same_line = parse_message("!jupybot executeKernel print(1)", BOT, direct=False)
    assert same_line == Run("print(1)")


def test_start_arguments() -> None:
    def start(args: str) -> tuple[str | None, str | None]:
        command = parse_message(f"!jupybot start {args}", BOT, direct=False)
        assert isinstance(command, Start)
        return command.kernelspec, command.kernel

    assert start("") == (None, None)
    assert start("python3") == ("python3", None)
    assert start("python3 as calc") == ("python3", "calc")
    assert start("as calc") == (None, "calc")
    with pytest.raises(UsageError, match=r"Usage: !jupybot start \[kernelspec\] \[as NAME\]"):
        start("python3 ir as calc")
    with pytest.raises(UsageError, match="not a kernel name"):
        start("python3 as <b>")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!jupybot", r"Yes\? Try '!jupybot help'"),
        ("!jupybot dance", r"Unknown command 'dance'\. Try '!jupybot help'"),
        ("!jupybot run", r"no code to run\. Usage: !jupybot run CODE"),
        ("!jupybot run ```\n```", "no code to run"),
        ("!jupybot use", r"Usage: !jupybot use NAME  \(example: !jupybot use calc\)"),
        ("!jupybot use a b", "Usage: !jupybot use NAME"),
        ("!jupybot kernels now", "Usage: !jupybot kernels"),
        ("!jupybot stop a b", r"Usage: !jupybot stop \[NAME\]"),
        ("!jupybot interrupt ../../etc", "not a kernel name"),
        ("!jupybot help\nmore", "Usage: !jupybot help"),
    ],
)
def test_mistakes_get_a_usage_line(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_message(text, BOT, direct=False)


def test_usage_in_a_direct_chat_has_no_prefix() -> None:
    with pytest.raises(UsageError, match=r"Usage: use NAME  \(example: use calc\)"):
        parse_message("use", BOT, direct=True)
    with pytest.raises(UsageError, match=r"Unknown command 'hello'\. Try 'help'"):
        parse_message("hello there", BOT, direct=True)


def test_kernel_names_for_kernel_commands() -> None:
    assert parse_message("!jupybot interrupt calc", BOT, direct=False) == Interrupt("calc")
    assert parse_message("!jupybot restart calc", BOT, direct=False) == Restart("calc")
    assert parse_message("!jupybot stop calc", BOT, direct=False) == Stop("calc")
    assert parse_message("!jupybot use calc", BOT, direct=False) == Use("calc")
    assert parse_message("!jupybot stop", BOT, direct=False) == Stop()


def test_each_command_is_its_own_type() -> None:
    assert parse_message("!jupybot help", BOT, direct=False) == Help()
    assert parse_message("!jupybot help run", BOT, direct=False) == Help("run")
    assert parse_message("!jupybot specs", BOT, direct=False) == Specs()
    assert parse_message("!jupybot kernels", BOT, direct=False) == Kernels()
    assert parse_message("!jupybot start", BOT, direct=False) == Start()
    assert parse_message("!jupybot start ir as stats", BOT, direct=False) == Start("ir", "stats")

"""Parsing what people type into commands: addressing, aliases, code blocks, usage errors."""

from __future__ import annotations

import pytest

from jupybot.commands import Addressing, UsageError, extract_code, parse_message

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
    command = parse_message(text, BOT, direct=False)
    assert command is not None
    assert (command.name, command.code, command.explicit) == ("run", "1+1", True)


def test_direct_chats_need_no_prefix_but_accept_one() -> None:
    plain = parse_message("run 1+1", BOT, direct=True)
    assert plain is not None and plain.code == "1+1" and not plain.explicit
    prefixed = parse_message("!jupybot run 2", BOT, direct=True)
    assert prefixed is not None and prefixed.code == "2" and prefixed.explicit


def test_code_on_following_lines_and_in_fences() -> None:
    multi = parse_message("!jupybot run\nx = 1\nprint(x)", BOT, direct=False)
    assert multi is not None and multi.code == "x = 1\nprint(x)"
    fenced = parse_message(
        "!jupybot run\n```python\nfor i in range(2):\n    print(i)\n```\nthanks", BOT, False
    )
    assert fenced is not None and fenced.code == "for i in range(2):\n    print(i)"
    bare = parse_message("!jupybot exec ```\nprint(1)\n```", BOT, direct=False)
    assert bare is not None and bare.code == "print(1)" and bare.name == "run"
    inline = parse_message("!jupybot run `6*7`", BOT, direct=False)
    assert inline is not None and inline.code == "6*7"
    glued = parse_message("!jupybot run`6*7`", BOT, direct=False)
    assert glued is not None and glued.code == "6*7"


def test_unclosed_fence_takes_the_rest() -> None:
    assert extract_code("```py\nprint(1)\nprint(2)") == "print(1)\nprint(2)"


def test_original_spellings_are_aliases() -> None:
    start = parse_message("!jupybot startKernel python3", BOT, direct=False)
    assert start is not None and start.name == "start" and start.start_spec == "python3"
    execute = parse_message("!jupybot executeKernel calc\nprint(1)", BOT, direct=False)
    assert execute is not None and execute.name == "run"
    assert (execute.kernel, execute.code) == ("calc", "print(1)")
    same_line = parse_message("!jupybot executeKernel print(1)", BOT, direct=False)
    assert same_line is not None and (same_line.kernel, same_line.code) == (None, "print(1)")


def test_start_arguments() -> None:
    def start(args: str) -> tuple[str | None, str | None]:
        command = parse_message(f"!jupybot start {args}", BOT, direct=False)
        assert command is not None
        return command.start_spec, command.start_name

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
    for word in ("interrupt", "restart", "stop", "use"):
        command = parse_message(f"!jupybot {word} calc", BOT, direct=False)
        assert command is not None and command.kernel == "calc"
    bare = parse_message("!jupybot stop", BOT, direct=False)
    assert bare is not None and bare.kernel is None

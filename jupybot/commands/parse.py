"""From a chat message to a L{Command}: addressing, the command word, arguments and code."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .texts import CommandSpec, lookup, usage_line

__all__ = ["Addressing", "Command", "UsageError", "extract_code", "parse_message"]

_KERNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:\n?```|\Z)", re.DOTALL)
_INLINE = re.compile(r"^`([^`\n]+)`$")


@dataclass(frozen=True)
class Addressing:
    """How people address the bot in a room.

    C{prefixes} start a command outright (``!jupybot run 1``); C{mentions} are names that may be
    followed by ``:`` or ``,`` (``jupybot: run 1``, a Matrix pill, a Discord ``<@id>``).
    C{shown} is the form used in help and usage texts.
    """

    prefixes: tuple[str, ...]
    mentions: tuple[str, ...] = ()

    @property
    def shown(self) -> str:
        return self.prefixes[0] if self.prefixes else ""


@dataclass(frozen=True)
class Command:
    spec: CommandSpec
    word: str  # as typed, e.g. "executeKernel"
    args: tuple[str, ...] = ()
    code: str | None = None
    kernel: str | None = None  # the kernel named by executeKernel NAME / interrupt NAME ...
    start_spec: str | None = None
    start_name: str | None = None
    explicit: bool = True  # addressed with a prefix or mention (not just typed in a direct chat)

    @property
    def name(self) -> str:
        return self.spec.name


class UsageError(Exception):
    """The message was meant for the bot but cannot be understood; str() says how to fix it."""


def strip_address(text: str, addressing: Addressing) -> str | None:
    """The text after a prefix or mention at its start, or None when the bot is not addressed."""
    stripped = text.lstrip()
    folded = stripped.casefold()
    for prefix in addressing.prefixes:
        if folded.startswith(prefix.casefold()):
            rest = stripped[len(prefix) :]
            if not rest or rest[0].isspace():
                return rest
    for mention in addressing.mentions:
        if folded.startswith(mention.casefold()):
            rest = stripped[len(mention) :]
            if rest[:1] in (":", ","):
                return rest[1:]
            if not rest or rest[0].isspace():
                return rest
    return None


def extract_code(text: str) -> str:
    """The code in C{text}: the first ``` fenced block, a single `inline` span, or all of it."""
    fenced = _FENCE.search(text)
    if fenced:
        return fenced.group(1).strip("\n")
    stripped = text.strip()
    inline = _INLINE.match(stripped)
    if inline:
        return inline.group(1)
    return stripped.strip("\n")


def parse_message(text: str, addressing: Addressing, direct: bool) -> Command | None:
    """The command in C{text}, or None when the message is not for the bot.

    In a direct chat every message is for the bot, with or without a prefix. Raises
    L{UsageError} for a message addressed to the bot that is not a valid command.
    """
    rest = strip_address(text, addressing)
    explicit = rest is not None
    if rest is None:
        if not direct:
            return None
        rest = text
    rest = rest.lstrip()
    if not rest:
        raise UsageError(f"Yes? Try '{_lead(addressing, direct)}help'.")
    word, _, after = _split_word(rest)
    spec = lookup(word)
    if spec is None:
        shown = word if len(word) <= 40 else word[:40] + "…"
        raise UsageError(
            f"Unknown command '{shown}'. Try '{_lead(addressing, direct)}help' for the list."
        )
    prefix = "" if direct and not explicit else addressing.shown
    if spec.takes_code:
        return _parse_code_command(spec, word, after, prefix, explicit)
    first_line, _, more = after.partition("\n")
    args = tuple(first_line.split())
    if more.strip():
        raise UsageError(usage_line(spec, prefix))
    command = Command(spec=spec, word=word, args=args, explicit=explicit)
    return _checked_arguments(command, prefix)


def _lead(addressing: Addressing, direct: bool) -> str:
    return "" if direct or not addressing.shown else addressing.shown + " "


def _split_word(text: str) -> tuple[str, str, str]:
    match = re.match(r"(\S+)(.*)", text, re.DOTALL)
    assert match is not None
    word = match.group(1)
    # "run```code```" and "run`1+1`": the command word ends where code starts.
    tick = word.find("`")
    if tick > 0:
        return word[:tick], "", word[tick:] + match.group(2)
    return word, "", match.group(2)


def _parse_code_command(
    spec: CommandSpec, word: str, after: str, prefix: str, explicit: bool
) -> Command:
    kernel = None
    if word.casefold() == "executekernel":
        # The original bot's form: "executeKernel NAME" then the code on the next lines.
        first_line, _, more = after.partition("\n")
        tokens = first_line.split()
        if len(tokens) == 1 and not tokens[0].startswith("`") and more.strip():
            kernel = tokens[0]
            after = more
    code = extract_code(after)
    if not code.strip():
        raise UsageError(f"There is no code to run. {usage_line(spec, prefix)}")
    if kernel is not None and not _KERNEL_NAME.match(kernel):
        raise UsageError(_bad_name(kernel))
    return Command(spec=spec, word=word, code=code, kernel=kernel, explicit=explicit)


def _checked_arguments(command: Command, prefix: str) -> Command:
    spec, args = command.spec, command.args
    usage = usage_line(spec, prefix)
    if spec.name in ("specs", "kernels"):
        if args:
            raise UsageError(usage)
        return command
    if spec.name == "help":
        if len(args) > 1:
            raise UsageError(usage)
        return command
    if spec.name == "use":
        if len(args) != 1:
            raise UsageError(usage)
        return _with_kernel(command, args[0])
    if spec.name in ("interrupt", "restart", "stop"):
        if len(args) > 1:
            raise UsageError(usage)
        return _with_kernel(command, args[0]) if args else command
    if spec.name == "start":
        return _parse_start(command, usage)
    raise AssertionError(f"no argument rules for {spec.name}")


def _with_kernel(command: Command, name: str) -> Command:
    if not _KERNEL_NAME.match(name):
        raise UsageError(_bad_name(name))
    return Command(
        spec=command.spec,
        word=command.word,
        args=command.args,
        kernel=name,
        explicit=command.explicit,
    )


def _parse_start(command: Command, usage: str) -> Command:
    args = list(command.args)
    name = None
    if len(args) >= 2 and args[-2].casefold() == "as":
        name = args[-1]
        del args[-2:]
        if not _KERNEL_NAME.match(name):
            raise UsageError(_bad_name(name))
    if len(args) > 1:
        raise UsageError(usage)
    spec = args[0] if args else None
    if spec is not None and (spec.casefold() == "as" or not _KERNEL_NAME.match(spec)):
        raise UsageError(usage)
    return Command(
        spec=command.spec,
        word=command.word,
        args=command.args,
        start_spec=spec,
        start_name=name,
        explicit=command.explicit,
    )


def _bad_name(name: str) -> str:
    shown = name if len(name) <= 40 else name[:40] + "…"
    return (
        f"'{shown}' is not a kernel name: use up to 32 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit."
    )

"""From a chat message to a L{Command}: addressing, the command word, arguments and code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from .texts import CommandSpec, lookup, usage_line

__all__ = [
    "Addressing",
    "Command",
    "Forget",
    "Get",
    "Help",
    "Interrupt",
    "Kernels",
    "Notebook",
    "Put",
    "Restart",
    "Run",
    "RunNotebook",
    "Specs",
    "Start",
    "Stop",
    "UsageError",
    "Use",
    "extract_code",
    "file_command",
    "parse_message",
]

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
class Help:
    """List the commands, or explain C{topic} (as typed: it may name no command)."""

    name: ClassVar[str] = "help"
    topic: str | None = None


@dataclass(frozen=True)
class Specs:
    """List the kernel types that can be started."""

    name: ClassVar[str] = "specs"


@dataclass(frozen=True)
class Start:
    """Start a kernel of C{kernelspec} (the gateway's default if None), called C{kernel}."""

    name: ClassVar[str] = "start"
    kernelspec: str | None = None
    kernel: str | None = None


@dataclass(frozen=True)
class Kernels:
    """List the conversation's kernels."""

    name: ClassVar[str] = "kernels"


@dataclass(frozen=True)
class Use:
    """Make C{kernel} the conversation's current kernel."""

    name: ClassVar[str] = "use"
    kernel: str


@dataclass(frozen=True)
class Run:
    """Run C{code} in C{kernel}, or in the current kernel when None."""

    name: ClassVar[str] = "run"
    code: str
    kernel: str | None = None


@dataclass(frozen=True)
class RunNotebook:
    """Run the code cells of the notebook attached to the message, in the current kernel;
    stop at the first error unless C{keep_going} (``run --all``)."""

    name: ClassVar[str] = "run"
    keep_going: bool = False


@dataclass(frozen=True)
class Notebook:
    """Send the current kernel's runs (the last C{last} of them, or all) as a notebook file."""

    name: ClassVar[str] = "notebook"
    last: int | None = None


@dataclass(frozen=True)
class Forget:
    """Drop what the room keeps for C{notebook}, at once (memory and disk)."""

    name: ClassVar[str] = "forget"


@dataclass(frozen=True)
class Put:
    """Write the file attached to the message into the kernel's folder, as C{path} (a folder
    when it ends with C{/}) or under its own name."""

    name: ClassVar[str] = "put"
    path: str | None = None


@dataclass(frozen=True)
class Get:
    """Send the file at C{path} in the kernel's folder to the room."""

    name: ClassVar[str] = "get"
    path: str


@dataclass(frozen=True)
class _KernelAction:
    """Act on C{kernel}, or on the current kernel when None."""

    kernel: str | None = None


@dataclass(frozen=True)
class Interrupt(_KernelAction):
    name: ClassVar[str] = "interrupt"


@dataclass(frozen=True)
class Restart(_KernelAction):
    name: ClassVar[str] = "restart"


@dataclass(frozen=True)
class Stop(_KernelAction):
    name: ClassVar[str] = "stop"


_KERNEL_ACTIONS: dict[str, type[Interrupt] | type[Restart] | type[Stop]] = {
    action.name: action for action in (Interrupt, Restart, Stop)
}


# Every command is its own type; C{name} (the command's name in L{COMMANDS}) is what access
# rules and logs use.
Command = (
    Help
    | Specs
    | Start
    | Kernels
    | Use
    | Run
    | RunNotebook
    | Notebook
    | Forget
    | Put
    | Get
    | Interrupt
    | Restart
    | Stop
)


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


def parse_message(
    text: str, addressing: Addressing, direct: bool, with_file: bool = False
) -> Command | None:
    """The command in C{text}, or None when the message is not for the bot.

    In a direct chat every message is for the bot, with or without a prefix. Raises
    L{UsageError} for a message addressed to the bot that is not a valid command. With
    C{with_file} (the message carries a file), C{run} or C{run --all} without code runs the
    notebook attached.
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
        if with_file and after.strip() in ("", "--all"):
            return RunNotebook(keep_going=after.strip() == "--all")
        return _parse_code_command(spec, word, after, prefix)
    first_line, _, more = after.partition("\n")
    if more.strip():
        raise UsageError(usage_line(spec, prefix))
    if spec.name in ("put", "get"):
        # A path is the rest of the line, spaces and all.
        path = first_line.strip() or None
        if spec.name == "put":
            return Put(path)
        if path is None:
            raise UsageError(usage_line(spec, prefix))
        return Get(path)
    return _with_arguments(spec, first_line.split(), usage_line(spec, prefix))


def file_command(text: str, addressing: Addressing, direct: bool) -> str | None:
    """The command that takes a file sent with C{text} (``run`` or ``run --all`` with no code
    runs a notebook, ``put`` writes it into the kernel's folder), or None: adapters download a
    message's attachments only for one, and check its sender may use that command."""
    try:
        command = parse_message(text, addressing, direct, with_file=True)
    except UsageError:
        return None
    return command.name if isinstance(command, (RunNotebook, Put)) else None


def wants_file(text: str, addressing: Addressing, direct: bool) -> bool:
    """Whether C{text} would take a file sent with it (L{file_command})."""
    return file_command(text, addressing, direct) is not None


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


def _parse_code_command(spec: CommandSpec, word: str, after: str, prefix: str) -> Run:
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
    if kernel is not None:
        _check_name(kernel)
    return Run(code, kernel)


def _with_arguments(spec: CommandSpec, args: list[str], usage: str) -> Command:
    """The command C{spec} names, with C{args} (the words after it) checked and typed."""
    match spec.name:
        case "specs" | "kernels" if args:
            raise UsageError(usage)
        case "specs":
            return Specs()
        case "kernels":
            return Kernels()
        case "help" if len(args) > 1:
            raise UsageError(usage)
        case "help":
            return Help(args[0] if args else None)
        case "use" if len(args) != 1:
            raise UsageError(usage)
        case "use":
            return Use(_check_name(args[0]))
        case "interrupt" | "restart" | "stop" if len(args) > 1:
            raise UsageError(usage)
        case "interrupt" | "restart" | "stop":
            return _KERNEL_ACTIONS[spec.name](_check_name(args[0]) if args else None)
        case "start":
            return _parse_start(args, usage)
        case "notebook" if len(args) > 1 or (args and not _is_count(args[0])):
            raise UsageError(usage)
        case "notebook":
            return Notebook(int(args[0]) if args else None)
        case "forget" if args:
            raise UsageError(usage)
        case "forget":
            return Forget()
    raise AssertionError(f"no argument rules for {spec.name}")


def _is_count(word: str) -> bool:
    return word.isascii() and word.isdigit() and 0 < int(word) <= 100_000


def _check_name(name: str) -> str:
    if not _KERNEL_NAME.match(name):
        raise UsageError(_bad_name(name))
    return name


def _parse_start(args: list[str], usage: str) -> Start:
    name = None
    if len(args) >= 2 and args[-2].casefold() == "as":
        name = _check_name(args[-1])
        args = args[:-2]
    if len(args) > 1:
        raise UsageError(usage)
    kernelspec = args[0] if args else None
    if kernelspec is not None and (
        kernelspec.casefold() == "as" or not _KERNEL_NAME.match(kernelspec)
    ):
        raise UsageError(usage)
    return Start(kernelspec, name)


def _bad_name(name: str) -> str:
    shown = name if len(name) <= 40 else name[:40] + "…"
    return (
        f"'{shown}' is not a kernel name: use up to 32 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit."
    )

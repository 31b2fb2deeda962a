"""The commands the bot knows, with the usage and help texts people see."""

from __future__ import annotations

from dataclasses import dataclass

from .conversation import CodeBlock, Paragraph, Reply

__all__ = ["COMMANDS", "CommandSpec", "help_text", "lookup", "usage_line"]


@dataclass(frozen=True)
class CommandSpec:
    name: str
    arguments: str  # the usage after the command name, e.g. "[kernelspec] [as NAME]"
    summary: str
    example: str  # after the prefix, e.g. "run print('hello')"
    aliases: tuple[str, ...] = ()
    takes_code: bool = False


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("help", "[command]", "list the commands, or explain one", "help run"),
    CommandSpec("specs", "", "list the kernel types you can start", "specs"),
    CommandSpec(
        "start",
        "[kernelspec] [as NAME]",
        "start a kernel in this room; it becomes the current one",
        "start python3 as calc",
        aliases=("startkernel",),
    ),
    CommandSpec("kernels", "", "list this room's kernels", "kernels"),
    CommandSpec("use", "NAME", "make another of this room's kernels the current one", "use calc"),
    CommandSpec(
        "run",
        "CODE",
        "run code in the current kernel (starting one if needed); "
        "code may follow on the next lines or in a ``` block",
        "run print('hello')",
        aliases=("exec", "executekernel"),
        takes_code=True,
    ),
    CommandSpec(
        "notebook",
        "[N]",
        "send the current kernel's runs since it started (or the last N) as a Jupyter notebook "
        "file; send a .ipynb file with 'run' (or 'run --all', not stopping at errors) to run it",
        "notebook 10",
    ),
    CommandSpec(
        "forget",
        "",
        "drop this room's runs kept for 'notebook' (in memory and on disk), now",
        "forget",
    ),
    CommandSpec(
        "put",
        "[NAME]",
        "send a file with it (or reply to a file with it): the file is written into the "
        "kernel's folder, as NAME if given, so open('data.csv') reads it",
        "put data.csv",
    ),
    CommandSpec("get", "PATH", "send a file from the kernel's folder to this room", "get plot.png"),
    CommandSpec("interrupt", "[NAME]", "interrupt what the kernel is running", "interrupt"),
    CommandSpec("restart", "[NAME]", "restart a kernel, losing its variables", "restart"),
    CommandSpec("stop", "[NAME]", "stop a kernel", "stop calc"),
)

_BY_NAME: dict[str, CommandSpec] = {}
for _spec in COMMANDS:
    _BY_NAME[_spec.name] = _spec
    for _alias in _spec.aliases:
        _BY_NAME[_alias] = _spec


def lookup(word: str) -> CommandSpec | None:
    """The command named C{word} (case-insensitive, aliases included), or None."""
    return _BY_NAME.get(word.lower())


def usage_line(spec: CommandSpec, prefix: str) -> str:
    lead = f"{prefix} " if prefix else ""
    arguments = f" {spec.arguments}" if spec.arguments else ""
    return f"Usage: {lead}{spec.name}{arguments}  (example: {lead}{spec.example})"


def help_text(prefix: str, direct: bool, admin_only: frozenset[str]) -> Reply:
    """Every command with an example; C{prefix} is how commands are addressed here."""
    lead = f"{prefix} " if prefix else ""
    lines = []
    for spec in COMMANDS:
        arguments = f" {spec.arguments}" if spec.arguments else ""
        admin = " (admins only)" if spec.name in admin_only and not direct else ""
        lines.append(f"{lead}{spec.name}{arguments}: {spec.summary}{admin}")
    example = "\n".join(
        [
            f"{lead}run 6 * 7",
            f"{lead}run",
            "```python",
            "name = input('Your name? ')",
            "print('Hello', name)",
            "```",
        ]
    )
    notes = []
    if direct:
        notes.append("In this direct chat no prefix is needed: just write 'run 1+1'.")
    notes.append(
        "When code asks for input, your next message here is the answer; "
        "password prompts are asked in a direct message."
    )
    return Reply(
        (
            Paragraph("Commands:"),
            CodeBlock("\n".join(lines)),
            Paragraph("Examples:"),
            CodeBlock(example),
            Paragraph(" ".join(notes)),
        )
    )


def command_help(spec: CommandSpec, prefix: str) -> str:
    aliases = f" Also: {', '.join(spec.aliases)}." if spec.aliases else ""
    return f"{spec.name}: {spec.summary}.{aliases}\n{usage_line(spec, prefix)}"

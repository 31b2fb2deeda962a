"""`programs:` (the demo catalogue) and `terminal:` (session limits). Owned by the terminal part."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader


@dataclass(frozen=True)
class ProgramConfig:
    name: str
    title: str
    description: str
    argv: tuple[str, ...]

    @classmethod
    def read(cls, r: Reader) -> ProgramConfig:
        name = r.string("name", "")
        if not name:
            r.error("name", "expected a program name")
        argv = tuple(r.string_list("argv"))
        if not argv:
            r.error("argv", "expected a non-empty list such as ['python3', '-i']")
        title = r.string("title", name)
        description = r.string("description", "")
        r.finish()
        return cls(name=name, title=title, description=description, argv=argv)


def read_programs(r: Reader) -> tuple[ProgramConfig, ...]:
    programs = tuple(ProgramConfig.read(item) for item in r.sequence("programs"))
    seen: set[str] = set()
    for index, program in enumerate(programs):
        if program.name in seen:
            r.error(f"programs[{index}].name", f"duplicate program name {program.name!r}")
        seen.add(program.name)
    return programs


@dataclass(frozen=True)
class TerminalConfig:
    enabled: bool

    @classmethod
    def read(cls, r: Reader) -> TerminalConfig:
        enabled = r.boolean("enabled", True)
        r.finish()
        return cls(enabled=enabled)

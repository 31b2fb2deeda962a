"""jupybot's modules import one another without a circle (issue 26).

A circle between two modules means one holds a back-reference to the other (a conversation
holding the whole bot, a delivery reading its part): the narrow protocols of
docs/architecture.md are what break them. Imports under C{if TYPE_CHECKING:} count too: they
are how such a back-reference hides from the interpreter, not from the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jupybot

ROOT = Path(jupybot.__file__).parent


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package at C{root} by dotted name (a package by its own name)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports. C{from P import m} names module P.m when
    there is one (importing a sibling is not importing its package's C{__init__} for its
    names), else P itself."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    imported.add(submodule if submodule in modules else target)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm), each
    sorted: every module of a group reaches every other by imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_jupybot_imports_without_a_circle() -> None:
    graph = import_graph(ROOT)
    assert "jupybot.matrix.conversation" in graph  # the walk found the package's modules
    found = circles(graph)
    described = [
        " -> ".join(f"{m} (imports {sorted(graph[m] & set(group))})" for m in group)
        for group in found
    ]
    assert found == [], "import circles:\n" + "\n".join(described)


def test_a_circle_is_found_even_behind_type_checking(tmp_path: Path) -> None:
    """The check itself: the shape the Matrix part had (a conversation importing the bot for
    its type, the bot importing the conversation) is reported."""
    package = tmp_path / "chat"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bot.py").write_text("from .conversation import Conversation\n")
    (package / "conversation.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .bot import Bot\n"
    )
    (package / "delivery.py").write_text("from . import bot\n")
    assert circles(import_graph(package)) == [["chat.bot", "chat.conversation"]]

"""A room's notebook on disk (storage.path/<network>-notebooks/): private, bounded, read back
by a restarted bot while the kernel lives, dropped with the kernel and by `forget`."""

from __future__ import annotations

import stat
from pathlib import Path

import nbformat
import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from jupybot.commands import (
    AccessPolicy,
    Addressing,
    ChatCommands,
    ChatLimits,
    ChatNetwork,
    ChatRules,
    ChatStores,
)
from jupybot.commands._history_store import NotebookStore
from jupybot.commands.notebook import NotebookLimits
from jupybot.config import ConfigError, Secret, parse_config
from jupybot.kernels import ExecutionResult, Stream
from jupybot.rendering import RenderOptions

from .fakes import FakeConversation, FakeKernels, simple_render
from .test_bot import say

SECRET = "hunter2-hunter2-hunter2"


def _bot(kernels: FakeKernels, folder: Path, limits: NotebookLimits | None = None) -> ChatCommands:
    network = ChatNetwork(
        AccessPolicy.build(["*:example.org"], ["@root:example.org"], []),
        Addressing(prefixes=("!jupybot",)),
        RenderOptions(),
        simple_render,
    )
    rules = ChatRules(
        ChatLimits(commands_per_minute=0), limits or NotebookLimits(), secrets=(Secret(SECRET),)
    )
    return ChatCommands(
        kernels, network, Clock(), rules=rules, stores=ChatStores(notebook_folder=folder)
    )


def _run(bot: ChatCommands, kernels: FakeKernels, room: FakeConversation, code: str) -> None:
    say(bot, room, f"!jupybot run {code}")
    run = kernels.executions[-1]
    run.listener.on_output(Stream("stdout", f"ran {code}\n"))
    run.result.callback(ExecutionResult("ok", len(kernels.executions), 0.01))


def _exported_sources(room: FakeConversation) -> list[str]:
    notebook = nbformat.reads(room.files[-1].data.decode(), as_version=4)
    return [c.source for c in notebook.cells if c.cell_type == "code"]


def _recover(bot: ChatCommands) -> None:
    bot.recover(lambda key: succeed(None))


def test_kept_private_on_disk_and_read_back_while_the_kernel_lives(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "matrix-notebooks"
    kernels = FakeKernels()
    bot = _bot(kernels, folder)
    room = FakeConversation(key="matrix:!abc:example.org")
    say(bot, room, "!jupybot start")
    _run(bot, kernels, room, "a = 1")
    _run(bot, kernels, room, f"print('{SECRET}')")
    [log] = list(folder.iterdir())
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert SECRET not in log.read_text()  # outputs are written redacted

    # jupybot restarts; the kernel core still has the room's kernel.
    again = _bot(kernels, folder)
    _recover(again)
    say(again, room, "!jupybot notebook")
    assert _exported_sources(room) == ["a = 1", "print('[redacted]')"]
    outputs = nbformat.reads(room.files[-1].data.decode(), as_version=4).cells[2].outputs
    assert outputs[0].text == "ran print('[redacted]')\n"
    _run(again, kernels, room, "a + 1")
    say(again, room, "!jupybot notebook")
    assert _exported_sources(room) == ["a = 1", "print('[redacted]')", "a + 1"]


def test_a_kernel_that_did_not_outlive_the_restart_takes_its_notebook(tmp_path: Path) -> None:
    kernels = FakeKernels()
    bot = _bot(kernels, tmp_path)
    room = FakeConversation(key="matrix:!abc:example.org")
    _ = say(bot, room, "!jupybot start")
    _run(bot, kernels, room, "a = 1")
    assert list(tmp_path.iterdir())
    restarted = _bot(FakeKernels(), tmp_path)  # a new kernel core: no kernels
    _recover(restarted)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["restart", "stop", "forget"])
def test_restart_stop_and_forget_drop_it_from_disk_at_once(tmp_path: Path, command: str) -> None:
    kernels = FakeKernels()
    bot = _bot(kernels, tmp_path)
    room = FakeConversation(key="discord:123")
    other = FakeConversation(key="discord:456")
    for conversation in (room, other):
        say(bot, conversation, "!jupybot start")
        _run(bot, kernels, conversation, "a = 1")
    assert len(list(tmp_path.iterdir())) == 2
    say(bot, room, f"!jupybot {command}", sender="@root:example.org")
    assert len(list(tmp_path.iterdir())) == 1  # the other room keeps its own
    if command == "forget":
        assert room.texts()[-1] == (
            "🧹 Forgot this room's notebook (1 run), here and on disk. "
            "'notebook' starts again from the next run."
        )
        say(bot, room, "!jupybot forget")
        assert room.texts()[-1] == "🧹 This room keeps no runs: there was nothing to forget."
        say(bot, room, "!jupybot notebook")
        assert "nothing to export" in room.texts()[-1]
    again = _bot(kernels, tmp_path)
    _recover(again)
    say(again, other, "!jupybot notebook")
    assert _exported_sources(other) == ["a = 1"]


def test_bounded_per_room_on_disk_too(tmp_path: Path) -> None:
    kernels = FakeKernels()
    limits = NotebookLimits(cells_per_room=5)
    bot = _bot(kernels, tmp_path, limits)
    room = FakeConversation(key="matrix:!busy:example.org")
    say(bot, room, "!jupybot start")
    for n in range(400):
        _run(bot, kernels, room, f"x = {n}  # " + "a fairly long line of code " * 4)
    [log] = list(tmp_path.iterdir())
    one_cell = len(
        NotebookStore(tmp_path)._line(("cell", bot._notebooks.history.cells(room.key, "id0")[0]))
    )
    # Rewritten whenever it doubles: about twice what the room keeps, plus the slack.
    assert log.stat().st_size < 2 * 6 * one_cell + 256 * 1024
    again = _bot(kernels, tmp_path, limits)
    say(again, room, "!jupybot notebook")
    assert [s.split(" ")[2] for s in _exported_sources(room)] == ["395", "396", "397", "398", "399"]
    notebook = nbformat.reads(room.files[-1].data.decode(), as_version=4)
    assert "The first 395 runs of this kernel are not here" in notebook.cells[0].source


def test_a_torn_last_line_is_skipped_and_the_log_rewritten(tmp_path: Path) -> None:
    kernels = FakeKernels()
    bot = _bot(kernels, tmp_path)
    room = FakeConversation(key="matrix:!abc:example.org")
    say(bot, room, "!jupybot start")
    _run(bot, kernels, room, "a = 1")
    _run(bot, kernels, room, "b = 2")
    [log] = list(tmp_path.iterdir())
    log.write_bytes(log.read_bytes()[:-20])  # a crash in the middle of the last write
    again = _bot(kernels, tmp_path)
    _run(again, kernels, room, "c = 3")
    say(again, room, "!jupybot notebook")
    assert _exported_sources(room) == ["a = 1", "c = 3"]
    third = _bot(kernels, tmp_path)
    say(third, room, "!jupybot notebook")
    assert _exported_sources(room) == ["a = 1", "c = 3"]


def test_the_notebooks_section_of_config_yml() -> None:
    default = parse_config("{}", environ={}).notebooks
    limits = NotebookLimits.from_config(default)
    assert limits == NotebookLimits()
    config = parse_config(
        "notebooks:\n  cells_per_room: 50\n  output_mb_per_room: 2\n  file_mb: 20\n"
        "  notebook_mb: 1\n  notebook_code_cells: 30\n",
        environ={},
    ).notebooks
    limits = NotebookLimits.from_config(config)
    assert (limits.cells_per_room, limits.output_bytes_per_room) == (50, 2 * 1024 * 1024)
    assert (limits.transfer_bytes, limits.file_bytes, limits.code_cells) == (
        20 * 1024 * 1024,
        1024 * 1024,
        30,
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(
            "notebooks:\n  cells_per_room: 0\n  file_mb: lots\n  cells_total: 10\n"
            "  keep_forever: true\n",
            environ={},
        )
    message = "\n".join(raised.value.errors)
    for key in ("notebooks.cells_per_room", "notebooks.file_mb", "notebooks.keep_forever"):
        assert key in message

"""A room's runs exported as a notebook, and a notebook sent to a room run cell by cell."""

from __future__ import annotations

import json

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from twisted.internet.task import Clock

from jupybot.commands import (
    ChatCommands,
    ChatNetwork,
    ChatRules,
    IncomingAttachment,
    IncomingMessage,
    IncomingReaction,
)
from jupybot.commands.notebook import NotebookLimits, RecordedCell, RunHistory
from jupybot.config import Secret
from jupybot.kernels import (
    ClearOutput,
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    ExecutionResult,
    Stream,
    UpdateDisplayData,
)

from .fakes import FakeConversation, FakeKernels
from .test_bot import ALICE, NO_RATE_LIMIT, make_bot, say


def _bot(limits: NotebookLimits | None = None) -> tuple[ChatCommands, FakeKernels, Clock]:
    bot, kernels, clock = make_bot()
    if limits is not None:
        bot = ChatCommands(
            kernels,
            ChatNetwork(bot.access, bot.addressing),
            clock,
            rules=ChatRules(NO_RATE_LIMIT, limits, secrets=(Secret("hunter2-hunter2"),)),
        )
    return bot, kernels, clock


def _exported(room: FakeConversation) -> nbformat.NotebookNode:
    attachment = room.files[-1]
    assert attachment.filename.endswith(".ipynb")
    assert attachment.mimetype == "application/x-ipynb+json"
    notebook: nbformat.NotebookNode = nbformat.reads(attachment.data.decode(), as_version=4)
    nbformat.validate(notebook)
    return notebook


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in notebook.cells if c.cell_type == "code"]


def test_notebook_holds_each_run_with_every_kind_of_output_in_order() -> None:
    bot, kernels, _ = _bot()
    room = FakeConversation(key="matrix:!abc:example.org")
    say(bot, room, "!jupybot start")
    say(bot, room, "!jupybot run print('hi')")
    run = kernels.executions[-1]
    run.listener.on_output(Stream("stdout", "h"))
    run.listener.on_output(Stream("stdout", "i\n"))
    run.listener.on_output(Stream("stderr", "careful\n"))
    run.result.callback(ExecutionResult("ok", 1, 0.01))
    say(bot, room, "!jupybot run plot()")
    run = kernels.executions[-1]
    run.listener.on_output(
        DisplayData({"image/png": b"\x89PNG", "text/plain": "<Figure>"}, {"image/png": {}}, "d1")
    )
    run.listener.on_output(
        UpdateDisplayData({"text/html": "<b>new</b>", "text/plain": "new"}, {}, "d1")
    )
    run.listener.on_output(
        ExecuteResult({"text/latex": "$x^2$", "application/json": {"a": [1]}}, {}, 2)
    )
    run.result.callback(ExecutionResult("ok", 2, 0.01))
    say(bot, room, "!jupybot run 1/0")
    run = kernels.executions[-1]
    run.listener.on_output(
        ErrorOutput("ZeroDivisionError", "division by zero", ("\x1b[31mTraceback\x1b[0m", "1/0"))
    )
    run.result.callback(ExecutionResult("error", 3, 0.01))

    say(bot, room, "!jupybot notebook")
    notebook = _exported(room)
    assert room.files[-1].filename.startswith("matrix-abc-example-org-")
    assert notebook.metadata.kernelspec.name == "python3"
    assert notebook.metadata.language_info.name == "python"
    cells = _code_cells(notebook)
    assert [c.source for c in cells] == ["print('hi')", "plot()", "1/0"]
    assert [c.execution_count for c in cells] == [1, 2, 3]
    assert [(o.name, o.text) for o in cells[0].outputs] == [
        ("stdout", "hi\n"),
        ("stderr", "careful\n"),
    ]
    display, result = cells[1].outputs
    assert display.output_type == "display_data"
    assert display.data == {"text/html": "<b>new</b>", "text/plain": "new"}  # updated
    assert result.output_type == "execute_result"
    assert result.data == {"text/latex": "$x^2$", "application/json": {"a": [1]}}
    assert result.execution_count == 2
    (error,) = cells[2].outputs
    assert (error.output_type, error.ename) == ("error", "ZeroDivisionError")
    assert error.traceback == ["\x1b[31mTraceback\x1b[0m", "1/0"]
    assert notebook.cells[0].cell_type == "markdown"

    say(bot, room, "!jupybot notebook 2")
    assert [c.source for c in _code_cells(_exported(room))] == ["plot()", "1/0"]
    assert "The first 1 runs of this kernel are not here" in _exported(room).cells[0].source


def test_a_rerun_replaces_its_cell_and_clear_output_clears() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot start")
    bot.handle(IncomingMessage("$a", ALICE, "!jupybot run 1", room))
    kernels.executions[-1].listener.on_output(Stream("stdout", "one\n"))
    kernels.executions[-1].result.callback(ExecutionResult("ok", 1, 0.01))
    bot.handle(IncomingMessage("$b", ALICE, "!jupybot run 2", room))
    kernels.executions[-1].result.callback(ExecutionResult("ok", 2, 0.01))
    bot.handle(IncomingMessage("$a2", ALICE, "!jupybot run 10", room, edit_of="$a"))
    kernels.executions[-1].listener.on_output(Stream("stdout", "old\n"))
    kernels.executions[-1].listener.on_output(ClearOutput(wait=True))
    kernels.executions[-1].listener.on_output(Stream("stdout", "ten\n"))
    kernels.executions[-1].result.callback(ExecutionResult("ok", 3, 0.01))
    reply_id = room.sent[-1][0]
    bot.handle_reaction(IncomingReaction(reply_id, ALICE, "🔁", room))
    kernels.executions[-1].result.callback(ExecutionResult("ok", 4, 0.01))
    say(bot, room, "!jupybot notebook")
    cells = _code_cells(_exported(room))
    assert [(c.source, c.execution_count) for c in cells] == [("10", 3), ("2", 4)]
    assert cells[0].outputs[0].text == "ten\n"


def test_restart_starts_a_new_notebook_and_nothing_to_export_is_said() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot notebook")
    assert room.texts()[-1] == "There is no kernel here yet: nothing to export."
    say(bot, room, "!jupybot start")
    say(bot, room, "!jupybot run 1")
    kernels.executions[-1].result.callback(ExecutionResult("ok", 1, 0.01))
    say(bot, room, "!jupybot restart")
    say(bot, room, "!jupybot notebook")
    assert room.texts()[-1] == (
        "Nothing has run in kernel 'k1' since it started (or since 'forget'): nothing to export."
    )
    assert room.files == []
    say(bot, room, "!jupybot notebook 0")
    assert room.texts()[-1].startswith("Usage: !jupybot notebook [N]")


def test_limits_hold_cells_output_and_secrets() -> None:
    bot, kernels, _ = _bot(NotebookLimits(cells_per_room=3, output_bytes_per_cell=1000))
    room = FakeConversation()
    say(bot, room, "!jupybot start")
    for i in range(5):
        say(bot, room, f"!jupybot run {i}")
        run = kernels.executions[-1]
        for _ in range(30):
            run.listener.on_output(Stream("stdout", "x" * 99 + "\n"))
        run.listener.on_output(Stream("stdout", "the secret is hunter2-hunter2\n"))
        run.result.callback(ExecutionResult("ok", i + 1, 0.01))
    say(bot, room, "!jupybot notebook")
    notebook = _exported(room)
    cells = _code_cells(notebook)
    assert [c.source for c in cells] == ["2", "3", "4"]
    assert "The first 2 runs of this kernel are not here" in notebook.cells[0].source
    assert "Some output was cut" in notebook.cells[0].source
    kept, note = cells[0].outputs
    assert len(kept.text) == 1000
    assert note.name == "stderr" and note.text.startswith("[jupybot: output cut here: 2030 more")
    assert "hunter2-hunter2" not in room.files[-1].data.decode()


def _notebook_file(*sources: str, markdown: bool = True) -> IncomingAttachment:
    cells = [new_markdown_cell("# A study")] if markdown else []
    cells += [new_code_cell(s) for s in sources]
    data = nbformat.writes(new_notebook(cells=cells)).encode()
    return IncomingAttachment("my study.ipynb", "application/x-ipynb+json", data)


def _send(
    bot: ChatCommands, room: FakeConversation, text: str, attachment: IncomingAttachment
) -> None:
    bot.handle(IncomingMessage("$nb", ALICE, text, room, attachments=(attachment,)))


def test_a_sent_notebook_runs_cell_by_cell_and_stops_at_the_first_error() -> None:
    bot, kernels, clock = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot start")
    _send(bot, room, "!jupybot run", _notebook_file("a = 1", "print(a)", "1/0", "print('never')"))
    assert room.texts()[-1] == "📓 my_study.ipynb: ⏳ cell 1/4…"
    assert [e.code for e in kernels.executions] == ["a = 1"]
    kernels.executions[-1].result.callback(ExecutionResult("ok", 1, 0.01))
    kernels.executions[-1].listener.on_output(Stream("stdout", "1\n"))
    kernels.executions[-1].result.callback(ExecutionResult("ok", 2, 0.01))
    clock.advance(1.0)
    assert room.last_text() == "📓 my_study.ipynb: ⏳ cell 3/4…"
    kernels.executions[-1].listener.on_output(ErrorOutput("ZeroDivisionError", "division by zero"))
    kernels.executions[-1].result.callback(ExecutionResult("error", 3, 0.01))
    assert [e.code for e in kernels.executions] == ["a = 1", "print(a)", "1/0"]
    assert room.last_text() == (
        "📓 my_study.ipynb: ❌ stopped at cell 3/4: ZeroDivisionError: division by zero · 1.0 s"
    )
    executed = _exported(room)
    assert room.files[-1].filename == "my_study.ipynb"
    assert executed.cells[0].cell_type == "markdown"
    cells = _code_cells(executed)
    assert [c.execution_count for c in cells] == [1, 2, 3, None]
    assert cells[1].outputs[0].text == "1\n"
    assert cells[2].outputs[0].ename == "ZeroDivisionError"
    assert cells[3].outputs == []
    # The cells that ran are the room's runs too.
    say(bot, room, "!jupybot notebook")
    assert [c.source for c in _code_cells(_exported(room))] == ["a = 1", "print(a)", "1/0"]


def test_run_all_goes_on_after_an_error() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    _send(bot, room, "!jupybot run --all", _notebook_file("1/0", "2", markdown=False))
    kernels.executions[-1].listener.on_output(ErrorOutput("ZeroDivisionError", "division by zero"))
    kernels.executions[-1].result.callback(ExecutionResult("error", 1, 0.01))
    kernels.executions[-1].result.callback(ExecutionResult("ok", 2, 0.01))
    assert [e.code for e in kernels.executions] == ["1/0", "2"]
    assert room.last_text().startswith(
        "📓 my_study.ipynb: ⚠ ran 2/2 cells, 1 with errors: cell 1: ZeroDivisionError"
    )
    assert [c.execution_count for c in _code_cells(_exported(room))] == [1, 2]


def test_what_is_not_a_runnable_notebook_is_refused_plainly() -> None:
    bot, kernels, _ = _bot(NotebookLimits(file_bytes=10_000, code_cells=3))
    room = FakeConversation()
    csv = IncomingAttachment("data.csv", "text/csv", b"a,b\n1,2\n")
    _send(bot, room, "!jupybot run", csv)
    assert room.texts()[-1] == "❌ That file is not a Jupyter notebook: it is not JSON."
    not_nb = json.dumps({"cells": "no"}).encode()
    _send(bot, room, "!jupybot run", IncomingAttachment("x.ipynb", "", not_nb))
    assert room.texts()[-1].startswith("❌ That file is not a ")
    _send(bot, room, "!jupybot run", _notebook_file("1", "2", "3", "4"))
    assert room.texts()[-1] == ("❌ That notebook has 4 code cells: I run notebooks of up to 3.")
    big = _notebook_file("x = '" + "y" * 20_000 + "'")
    _send(bot, room, "!jupybot run", big)
    assert room.texts()[-1].startswith("❌ That notebook is ")
    assert room.texts()[-1].endswith(" KiB: I run notebooks of up to 9.8 KiB.")
    _send(bot, room, "!jupybot run", _notebook_file(markdown=True))
    assert room.texts()[-1] == "❌ That notebook has no code cells: there is nothing to run."
    assert kernels.executions == []
    # Code with a file runs the code, as always.
    _send(bot, room, "!jupybot run 1+1", csv)
    assert [e.code for e in kernels.executions] == ["1+1"]


def test_an_interrupt_stops_a_notebook_even_with_all() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot start")
    _send(bot, room, "!jupybot run --all", _notebook_file("while True: pass", "2", "3"))
    say(bot, room, "!jupybot interrupt")
    kernels.executions[-1].listener.on_output(ErrorOutput("KeyboardInterrupt", ""))
    kernels.executions[-1].result.callback(ExecutionResult("error", 1, 5.0))
    assert [e.code for e in kernels.executions] == ["while True: pass"]
    assert "❌ stopped at cell 1/3: KeyboardInterrupt" in room.last_text(room.sent[1][0])
    assert room.files[-1].filename == "my_study.ipynb"


def test_a_file_too_big_to_download_is_refused_by_its_size() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    too_big = IncomingAttachment("big.ipynb", "application/json", b"", 50 * 1024 * 1024)
    _send(bot, room, "!jupybot run", too_big)
    assert room.texts() == ["❌ That notebook is 50.0 MiB: I run notebooks of up to 5.0 MiB."]
    assert kernels.executions == []
    say(bot, room, "!jupybot help notebook")
    assert room.texts()[-1].startswith("notebook: send the current kernel's runs")


def test_a_kernel_that_died_or_went_starts_a_new_notebook() -> None:
    bot, kernels, _ = make_bot()
    room = FakeConversation()
    say(bot, room, "!jupybot start")
    say(bot, room, "!jupybot run a = 1")
    kernels.executions[-1].result.callback(ExecutionResult("ok", 1, 0.01))
    say(bot, room, "!jupybot run crash()")
    kernels.executions[-1].result.callback(ExecutionResult("died", None, 0.01, "restarted"))
    say(bot, room, "!jupybot run b = 2")
    kernels.executions[-1].result.callback(ExecutionResult("ok", 1, 0.01))
    say(bot, room, "!jupybot notebook")
    assert [c.source for c in _code_cells(_exported(room))] == ["b = 2"]
    # A run the time limit ended by restarting the kernel: its variables went, so did its cells.
    say(bot, room, "!jupybot run while True: pass")
    kernels.executions[-1].result.callback(
        ExecutionResult("timeout", None, 300.0, "the kernel was restarted", restarted=True)
    )
    say(bot, room, "!jupybot run b = 3")
    kernels.executions[-1].result.callback(ExecutionResult("ok", 1, 0.01))
    say(bot, room, "!jupybot notebook")
    assert [c.source for c in _code_cells(_exported(room))] == ["b = 3"]
    # Shut down while idle (the gateway's culling): its cells go when the room is next seen.
    say(bot, room, "!jupybot start as other")
    kernels.handles[room.key] = kernels.handles[room.key][1:]
    say(bot, room, "!jupybot run c = 3")
    kernels.executions[-1].result.callback(ExecutionResult("ok", 1, 0.01))
    assert bot._notebooks.history.size[0] == 1


def test_the_whole_server_keeps_a_bounded_history_least_active_rooms_first() -> None:
    history = RunHistory(NotebookLimits(cells_total=4, output_bytes_total=10_000))
    for i in range(3):
        history.record("quiet", RecordedCell(f"q{i}", "k", f"q{i}", i, [], 10))
    for i in range(3):
        history.record("busy", RecordedCell(f"b{i}", "k", f"b{i}", i, [], 10))
    assert [c.source for c in history.cells("quiet", "k")] == ["q2"]
    assert [c.source for c in history.cells("busy", "k")] == ["b0", "b1", "b2"]
    assert history.dropped("quiet", "k") == 2
    history.record("busy", RecordedCell("big", "k", "big", 9, [], 9_995))
    assert history.cells("quiet", "k") == []
    assert [c.source for c in history.cells("busy", "k")] == ["big"]
    assert history.size == (1, 9_995)

"""A room's notebook against a real Kernel Gateway: runs exported, executed again by nbclient,
and a notebook sent to the room run in its kernel."""

from __future__ import annotations

import importlib.util
from typing import Any

import nbformat
import pytest
import pytest_twisted
from nbformat.v4 import new_code_cell, new_notebook
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from jupybot.commands import (
    IncomingAttachment,
    IncomingMessage,
)
from tests.peers.kernel_gateway import KernelGateway

from .fakes import FakeConversation
from .real import bot_on

pytestmark = pytest.mark.peers

ALICE = "@alice:example.org"


def _timeboxed(d: Deferred[Any], seconds: float = 30) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


def _execute_again(data: bytes) -> nbformat.NotebookNode:
    """The notebook executed by nbclient in a fresh local kernel (in a thread: it blocks)."""
    from nbclient import NotebookClient

    notebook: nbformat.NotebookNode = nbformat.reads(data.decode(), as_version=4)
    NotebookClient(notebook, timeout=30, allow_errors=True).execute()
    return notebook


def _outputs(notebook: nbformat.NotebookNode) -> list[list[tuple[str, Any]]]:
    """Each code cell's outputs, as what a person would compare: type and text or value."""
    shown = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            if output.output_type == "stream":
                outputs.append((output.name, output.text))
            elif output.output_type == "error":
                outputs.append(("error", output.ename))
            else:
                outputs.append((output.output_type, output.data.get("text/plain")))
        shown.append(outputs)
    return shown


@pytest_twisted.ensureDeferred
async def test_runs_exported_execute_the_same_and_a_sent_notebook_runs(
    kernel_gateway: KernelGateway,
) -> None:
    kernels, bot = bot_on(kernel_gateway)
    room = FakeConversation(key="matrix:!study:example.org")
    ids = iter(range(100))

    def say(text: str, *attachments: IncomingAttachment) -> Deferred[None]:
        message = IncomingMessage(f"$c{next(ids)}", ALICE, text, room, attachments=attachments)
        return _timeboxed(bot.handle(message))

    try:
        await say("!jupybot run\n```\nxs = [1, 2, 3]\nprint('sum', sum(xs))\n```")
        await say(
            "!jupybot run\n```\nfrom IPython.display import HTML\ndisplay(HTML('<b>hi</b>'))\nlen(xs) * 2\n```"
        )
        await say("!jupybot notebook")
        exported = nbformat.reads(room.files[-1].data.decode(), as_version=4)
        nbformat.validate(exported)
        assert exported.metadata.kernelspec.name == "python3"
        assert exported.metadata.language_info.name == "python"
        code = [c for c in exported.cells if c.cell_type == "code"]
        assert [c.execution_count for c in code] == [1, 2]
        assert _outputs(exported) == [
            [("stdout", "sum 6\n")],
            [("display_data", "<IPython.core.display.HTML object>"), ("execute_result", "6")],
        ]
        assert code[1].outputs[0].data["text/html"] == "<b>hi</b>"
        if importlib.util.find_spec("nbclient") is not None:
            again = await deferToThread(_execute_again, room.files[-1].data)
            assert _outputs(again) == _outputs(exported)

        sent = new_notebook(
            cells=[new_code_cell("ys = [4, 5]"), new_code_cell("ys[9]"), new_code_cell("print(ys)")]
        )
        attachment = IncomingAttachment(
            "homework.ipynb", "application/x-ipynb+json", nbformat.writes(sent).encode()
        )
        await say("!jupybot run", attachment)
        assert room.last_text().startswith(
            "📓 homework.ipynb: ❌ stopped at cell 2/3: IndexError: list index out of range"
        )
        executed = nbformat.reads(room.files[-1].data.decode(), as_version=4)
        nbformat.validate(executed)
        assert _outputs(executed) == [[], [("error", "IndexError")], []]
        await say("!jupybot run --all", attachment)
        executed = nbformat.reads(room.files[-1].data.decode(), as_version=4)
        assert _outputs(executed) == [[], [("error", "IndexError")], [("stdout", "[4, 5]\n")]]
        # The room's kernel ran them: its variables are there, and so are they in its notebook.
        await say("!jupybot notebook 1")
        last = nbformat.reads(room.files[-1].data.decode(), as_version=4)
        assert [c.source for c in last.cells if c.cell_type == "code"] == ["print(ys)"]
    finally:
        await kernels.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_an_output_a_chat_cannot_show_is_said_and_kept_whole_in_the_notebook(
    kernel_gateway: KernelGateway,
) -> None:
    kernels, bot = bot_on(kernel_gateway)
    room = FakeConversation(key="matrix:!charts:example.org")
    widget = {"version_major": 2, "version_minor": 0, "model_id": "abc123"}
    code = (
        "from IPython.display import display\n"
        "display({'application/vnd.jupyter.widget-view+json': "
        f"{widget!r}, 'text/plain': 'IntSlider(value=3)'}}, raw=True)"
    )
    try:
        await _timeboxed(
            bot.handle(IncomingMessage("$w", ALICE, f"!jupybot run\n```\n{code}\n```", room))
        )
        assert room.last_text().startswith(
            "```\nIntSlider(value=3)\nAn interactive widget cannot be shown here: the full "
            "output is in the notebook ('notebook' sends it).\n```"
        )
        await _timeboxed(bot.handle(IncomingMessage("$n", ALICE, "!jupybot notebook", room)))
        exported = nbformat.reads(room.files[-1].data.decode(), as_version=4)
        [output] = next(c for c in exported.cells if c.cell_type == "code").outputs
        assert output.data["application/vnd.jupyter.widget-view+json"] == widget
    finally:
        await kernels.shutdown_all()

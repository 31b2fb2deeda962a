"""The Matrix bot end to end: a person's client, real Synapse, the bot, a real Kernel Gateway."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from jupybot.kernels import KernelManager
from jupybot.rendering import render_outputs
from tests.peers.synapse import MatrixUser, Synapse

from .conftest import BotRunner
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


@pytest.fixture
def kernels(gateway_kernels: KernelManager) -> KernelManager:
    return gateway_kernels


@asyncio_test
async def test_code_output_plots_errors_and_input_from_a_room(
    bot: BotRunner, alice_client: UserClient
) -> None:
    bot.render = render_outputs
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))

    run_id = await alice_client.send(room, "!bot run\n```python\nprint('hello')\n6 * 7\n```")
    answer = (await alice_client.answer(room, run_id, "✅ done"))["content"]
    assert "hello\n42" in answer["body"]

    plot = (
        "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
    )
    plot_id = await alice_client.send(room, f"!bot run\n```\n{plot}\n```")
    _, image = await alice_client.wait_for(
        lambda r, e: r == room and e["content"].get("msgtype") == "m.image"
    )
    assert image["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == plot_id
    info = image["content"]["info"]
    assert info["mimetype"] == "image/png" and info["w"] > 100 and info["h"] > 100
    assert (await alice_client.download(image["content"]["url"])).startswith(b"\x89PNG")

    fail_id = await alice_client.send(room, "!bot run 1/0")
    failed = (await alice_client.answer(room, fail_id, "❌ error"))["content"]
    assert failed["body"].startswith("ZeroDivisionError: division by zero")
    assert "\x1b" not in failed["body"]

    ask_id = await alice_client.send(room, "!bot run print('hi', input('name? '))")
    await alice_client.answer(room, ask_id, "name?")
    await alice_client.send(room, "Ada")
    greeted = (await alice_client.answer(room, ask_id, "✅ done"))["content"]
    assert "hi Ada" in greeted["body"]


async def _notebook_round_trip(
    bot: BotRunner, person: UserClient, room: str, encrypted: bool
) -> None:
    """A notebook sent to the room, `run` as a reply to it: it comes back executed; then the
    room's runs come back as a notebook with `notebook`."""
    sent = new_notebook(
        cells=[new_markdown_cell("# Homework"), new_code_cell("n = 6"), new_code_cell("n * 7")]
    )
    data = nbformat.writes(sent).encode()
    file_id = await person.send_file(
        room, "homework.ipynb", data, "application/x-ipynb+json", encrypt=encrypted
    )
    run_id = await person.send(room, "!bot run", reply_to=file_id)
    await person.answer(room, run_id, "✅ ran 2/2 cells")
    executed = await person.wait_until(
        lambda: next(
            (
                r["content"]
                for r in person.replies_to(room, run_id)
                if r["content"].get("msgtype") == "m.file"
            ),
            None,
        )
    )
    assert executed["filename"] == "homework.ipynb"
    assert ("file" in executed) is encrypted
    back = nbformat.reads((await person.file_data(executed)).decode(), as_version=4)
    nbformat.validate(back)
    assert back.cells[2].outputs[0].data["text/plain"] == "42"

    export_id = await person.send(room, "!bot notebook")
    exported = await person.wait_until(
        lambda: next(
            (
                r["content"]
                for r in person.replies_to(room, export_id)
                if r["content"].get("msgtype") == "m.file"
            ),
            None,
        )
    )
    assert exported["filename"].endswith(".ipynb")
    notebook = nbformat.reads((await person.file_data(exported)).decode(), as_version=4)
    nbformat.validate(notebook)
    assert [c.source for c in notebook.cells if c.cell_type == "code"] == ["n = 6", "n * 7"]


@asyncio_test
async def test_a_notebook_replied_to_with_run_comes_back_executed(
    bot: BotRunner, alice_client: UserClient
) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    await _notebook_round_trip(bot, alice_client, room, encrypted=False)


@asyncio_test
async def test_a_notebook_in_an_encrypted_room(
    bot: BotRunner, synapse: Synapse, alice: MatrixUser, tmp_path: Path
) -> None:
    (tmp_path / "alice-store").mkdir()
    person = UserClient(synapse, alice, store=tmp_path / "alice-store")
    await person.start()
    try:
        await bot.start(encryption=True)
        room = await person.create_room(invite=[bot.user_id], encrypted=True)
        await person.wait_until(lambda: person.joined(room, bot.user_id))
        await _notebook_round_trip(bot, person, room, encrypted=True)
    finally:
        await person.stop()

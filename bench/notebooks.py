"""A room as a notebook: a 50-cell notebook run through a room against nbclient, and the export
of a room's 500 runs against nbformat writing the same notebook, in one run.

Run: ``.venv/bin/python -m bench.notebooks [--rounds N] [--exports N]``

- ``nbclient_p50_ms``: nbclient (``NotebookClient.async_execute_cell`` for each cell, the
  kernel already started) executing the notebook through the gateway, with jupyter_server's
  gateway client as its kernel manager: what Jupyter itself does with a remote kernel.
- ``notebook_run_p50_ms``: the same notebook sent to a room with ``run`` (``ChatCommands`` with
  a recording conversation, ``GatewayKernelManager`` on the same gateway), from the message to
  the executed notebook sent back, the room's kernel already started.
- ``notebook_run_vs_nbclient``: the ratio of those p50s (target: at most 1.3).
- ``export_p50_ms``: ``notebook`` in that room once it holds 500 runs (the notebook runs above:
  ``--rounds`` x 50 cells, 500 at the default 10 rounds), from the command to the file sent:
  the kernelspec asked of the gateway, the notebook built, validated and written;
  ``writes_p50_ms``: ``nbformat.writes`` of the same notebook built directly with nbformat.v4;
  ``export_vs_writes``: their ratio.

Both clients talk to one Kernel Gateway (the test peer, jupyter_kernel_gateway with ipykernel on
loopback), each with a kernel of its own. It runs without a token: jupyter_server's gateway
client, which nbclient drives here, does not send one on its websocket (the handshake is
refused with 401). A run that fails says why and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from bench._report import percentile
from jupybot.reactor import install_asyncio_reactor

CELLS = 50
TARGET = 1.3


def fifty_cells() -> nbformat.NotebookNode:
    """A notebook of 50 code cells of the usual kinds: assignments, prints, results."""
    kinds = [
        "x{i} = {i} * 2",
        "print('cell', {i}, x{j})",
        "sum(range({i} * 100))",
        "[n * n for n in range({i} % 7 + 3)]",
        "import math\nmath.sqrt({i}) + x{j}",
    ]
    cells = [new_markdown_cell("# Fifty cells")]
    for i in range(CELLS):
        j = i - i % 5  # the x assigned earlier in the same group of five
        cells.append(new_code_cell(kinds[i % 5].format(i=i, j=j)))
    notebook: nbformat.NotebookNode = new_notebook(cells=cells)
    return notebook


def milliseconds(samples: list[float]) -> tuple[float, float]:
    return round(statistics.median(samples), 1), round(percentile(samples, 0.99), 1)


def measure_nbclient(url: str, rounds: int) -> list[float]:
    """Before the reactor runs: nbclient through jupyter_server's gateway client."""
    from jupyter_server.gateway.gateway_client import GatewayClient
    from jupyter_server.gateway.managers import GatewayKernelManager
    from nbclient import NotebookClient

    GatewayClient.instance().url = url

    async def rounds_of() -> list[float]:
        notebook = fifty_cells()
        client = NotebookClient(
            notebook, km=GatewayKernelManager(kernel_name="python3"), timeout=60
        )
        samples = []
        async with client.async_setup_kernel():
            await client.async_execute_cell(new_code_cell("pass"), 0)  # warm
            for _ in range(rounds):
                started = time.perf_counter()
                for index, cell in enumerate(notebook.cells):
                    await client.async_execute_cell(cell, index)
                samples.append((time.perf_counter() - started) * 1000)
                errors = [
                    o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
                    if o.output_type == "error"
                ]  # fmt: skip
                if errors:
                    raise BenchFailed(f"nbclient: a cell failed: {errors[0].ename}")
        return samples

    return asyncio.run(rounds_of())


class BenchFailed(Exception):
    """The run cannot give its figures; the message says why."""


async def measure_room(url: str, rounds: int, exports: int) -> dict[str, Any]:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from jupybot.aio import await_deferred
    from jupybot.commands import (
        AccessPolicy,
        Addressing,
        ChatCommands,
        ChatLimits,
        ChatNetwork,
        ChatRules,
        IncomingAttachment,
        IncomingMessage,
    )
    from jupybot.commands.notebook import NotebookLimits
    from jupybot.config.kernels import GatewayConfig
    from jupybot.kernels import GatewayKernelManager
    from tests.commands.fakes import FakeConversation

    kernels = GatewayKernelManager(reactor, GatewayConfig(url=None, token=None, prestart=0))
    kernels.connect(url, None)
    runs = rounds * CELLS
    bot = ChatCommands(
        kernels,
        ChatNetwork(
            AccessPolicy.build(["*:bench.example"], [], []), Addressing(prefixes=("!jupybot",))
        ),
        reactor,
        rules=ChatRules(
            ChatLimits(commands_per_minute=0),
            NotebookLimits(cells_per_room=max(runs, 1), cells_total=max(runs, 5000)),
        ),
    )
    room = FakeConversation(key="matrix:!bench:bench.example")
    ids = iter(range(1_000_000))
    data = nbformat.writes(fifty_cells()).encode()
    attachment = IncomingAttachment("fifty.ipynb", "application/x-ipynb+json", data)

    async def say(text: str, *attachments: IncomingAttachment) -> None:
        message = IncomingMessage(
            f"$b{next(ids)}", "@bench:bench.example", text, room, attachments=attachments
        )
        await await_deferred(bot.handle(message).addTimeout(300, reactor))

    figures: dict[str, Any] = {}
    try:
        await say("!jupybot run pass")  # the room's kernel, started and warm
        samples = []
        for _ in range(rounds):
            files = len(room.files)
            started = time.perf_counter()
            await say("!jupybot run", attachment)
            samples.append((time.perf_counter() - started) * 1000)
            if len(room.files) != files + 1 or "✅ ran 50/50 cells" not in room.last_text():
                raise BenchFailed(f"the room's notebook run did not end well: {room.last_text()}")
        figures["notebook_run_p50_ms"], figures["notebook_run_p99_ms"] = milliseconds(samples)

        export = []
        for _ in range(exports):
            started = time.perf_counter()
            await say("!jupybot notebook")
            export.append((time.perf_counter() - started) * 1000)
        exported = nbformat.reads(room.files[-1].data.decode(), as_version=4)
        kept = [c for c in exported.cells if c.cell_type == "code"]
        if len(kept) != runs:
            raise BenchFailed(f"the export holds {len(kept)} runs, not {runs}")
        figures["export_p50_ms"], figures["export_p99_ms"] = milliseconds(export)
        figures["export_runs"] = len(kept)
        figures["export_bytes"] = len(room.files[-1].data)

        # The same notebook built directly, then written.
        direct = new_notebook(metadata=exported.metadata)
        direct.cells = [
            new_code_cell(c.source, execution_count=c.execution_count, outputs=c.outputs)
            for c in kept
        ]
        writes = []
        for _ in range(exports):
            started = time.perf_counter()
            nbformat.writes(direct)
            writes.append((time.perf_counter() - started) * 1000)
        figures["writes_p50_ms"], figures["writes_p99_ms"] = milliseconds(writes)
    finally:
        await await_deferred(Deferred.fromCoroutine(kernels.shutdown_all()))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="notebook runs each way")
    parser.add_argument("--exports", type=int, default=20, help="exports (and writes) timed")
    arguments = parser.parse_args()

    from tests.peers.kernel_gateway import KernelGateway

    gateway = KernelGateway(Path(tempfile.mkdtemp(prefix="jupybot-bench-notebooks-")))
    gateway.token = ""  # see the module's docstring
    gateway.start()
    figures: dict[str, Any] = {}
    try:
        nbclient = measure_nbclient(gateway.url, arguments.rounds)
        figures["nbclient_p50_ms"], figures["nbclient_p99_ms"] = milliseconds(nbclient)

        install_asyncio_reactor()
        from twisted.internet import defer, task

        from bench._report import report
        from jupybot.aio import deferred_from_coroutine

        failed: list[str] = []

        async def run(_reactor: object) -> None:
            try:
                figures.update(
                    await deferred_from_coroutine(
                        measure_room(gateway.url, arguments.rounds, arguments.exports)
                    )
                )
            except Exception as error:
                traceback.print_exc()
                print(f"bench.notebooks failed: {type(error).__name__}: {error}", file=sys.stderr)
                raise SystemExit(1) from None
            ratio = round(figures["notebook_run_p50_ms"] / figures["nbclient_p50_ms"], 2)
            figures["notebook_run_vs_nbclient"] = ratio
            figures["export_vs_writes"] = round(
                figures["export_p50_ms"] / figures["writes_p50_ms"], 2
            )
            figures["cells"] = CELLS
            figures["rounds"] = arguments.rounds
            if ratio > TARGET:
                failed.append(f"notebook_run_vs_nbclient {ratio} > {TARGET}")
            for key, value in sorted(figures.items()):
                print(f"{key}: {value}")
            report(figures)
            if failed:
                print(f"bench.notebooks failed: {'; '.join(failed)}", file=sys.stderr)
                raise SystemExit(1)

        task.react(lambda r: defer.ensureDeferred(run(r)))
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()

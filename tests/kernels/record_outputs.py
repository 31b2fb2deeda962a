"""Re-record tests/kernels/recorded/*.json: the iopub outputs real cells produce on a real kernel.

    .venv/bin/python -m tests.kernels.record_outputs

Starts a Kernel Gateway, runs each cell of L{CELLS} in a fresh python3 kernel through jupybot's
own client and stores the typed output events it reports. The renderer tests replay
them, so they test against what kernels really send without starting one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import GatewayKernelManager
from jupybot.kernels.api import OutputEvent
from tests.peers.kernel_gateway import KernelGateway

RECORDED = Path(__file__).parent / "recorded"

CELLS: dict[str, str] = {
    "stream_and_result": "print('hello')\n1 + 1",
    "progress": (
        "import sys\n"
        "for i in range(0, 101, 25):\n"
        "    sys.stdout.write(f'\\r{i}%')\n"
        "    sys.stdout.flush()\n"
        "print()"
    ),
    "ansi_error": "1 / 0",
    "html_and_markdown": (
        "from IPython.display import HTML, Markdown, display\n"
        "display(HTML('<b>bold</b><script>alert(1)</script>'))\n"
        "display(Markdown('# Title\\n\\n*emphasis* and `code`'))"
    ),
    "latex_and_json": (
        "from IPython.display import JSON, Latex, display\n"
        "display(Latex(r'$\\frac{a}{b}$'))\n"
        "display(JSON({'a': [1, 2], 'b': {'c': None}}))"
    ),
    "update_display": (
        "from IPython.display import display, update_display\n"
        "display('one', display_id='d')\n"
        "update_display('two', display_id='d')"
    ),
    "clear_output": (
        "from IPython.display import clear_output\n"
        "print('before')\n"
        "clear_output(wait=True)\n"
        "print('after')"
    ),
    "matplotlib_png": (
        "import matplotlib\n"
        "matplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\n"
        "plt.show()"
    ),
    "svg": (
        "from IPython.display import SVG, display\n"
        'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
        '<rect width="40" height="20" fill="red"/></svg>\'))'
    ),
    "pandas_table": (
        "import pandas as pd\npd.DataFrame({'name': ['a', 'b'], 'value': [1.5, 2.25]})"
    ),
    "long_output": "for i in range(2000):\n    print('line', i)",
}


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def on_output(self, event: OutputEvent) -> None:
        self.events.append({"type": type(event).__name__, "fields": _fields(event)})

    def on_input_request(self, prompt: str, password: bool) -> defer.Deferred[str]:
        return defer.succeed("")


def _fields(event: OutputEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


async def record(reactor: Any) -> None:
    gateway = KernelGateway(Path("/tmp/jupybot-record"))
    gateway.start()
    manager = GatewayKernelManager(reactor, GatewayConfig(url=None, token=None))
    manager.connect(gateway.url, gateway.token)
    RECORDED.mkdir(exist_ok=True)
    try:
        for name, code in CELLS.items():
            recorder = Recorder()
            await manager.execute(name, code, recorder)
            path = RECORDED / f"{name}.json"
            path.write_text(json.dumps({"code": code, "events": recorder.events}, indent=1) + "\n")
            print(f"{path}: {len(recorder.events)} events")
    finally:
        await manager.shutdown_all()
        gateway.stop()


def main(reactor: Any) -> defer.Deferred[None]:
    return defer.Deferred.fromCoroutine(record(reactor))


if __name__ == "__main__":
    task.react(main)

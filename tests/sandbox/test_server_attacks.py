"""A stranger on the public page: the shipped `python` demo, driven through the line-mode API of
a real `twistd jupybot`, tries what a visitor did to version one. Each attack must be refused;
with `sandbox.mode: none` the same attacks work (the control below), so the test fails when the
protection is switched off."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.harness import JupybotProcess, jupybot_config
from tests.matrix.user import asyncio_test

SECRET = "jupybot-e2e-secret-9d2b7c41"
PROGRAMS = """
programs:
  - name: python
    title: Python
    argv: ["python3", "-q"]
"""


def start(workdir: Path, mode: str) -> JupybotProcess:
    workdir.chmod(0o755)  # as a checkout usually is: readable by every local user
    # config.yml holds a credential, as a real one holds the bot tokens.
    extra = f"sandbox:\n  mode: {mode}\n" + PROGRAMS + f"# discord token: {SECRET}\n"
    server = JupybotProcess(
        jupybot_config(workdir, extra),
        workdir,
        extra_env={"JUPYBOT_MATRIX_PASSWORD": SECRET},
    )
    server.wait_listening()
    server.wait_for("terminal: running")
    return server


@pytest.fixture(scope="module")
def contained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupybotProcess]:
    server = start(tmp_path_factory.mktemp("contained"), "bubblewrap")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupybotProcess]:
    server = start(tmp_path_factory.mktemp("exposed"), "none")
    yield server
    server.stop()


def attacks(server: JupybotProcess) -> dict[str, str]:
    """One Python line per attack; each prints a verdict line `NAME=yes|no`."""
    config = Path(server.argv[server.argv.index("--config") + 1])
    return {
        # Reading jupybot's environment (its secrets) from /proc.
        "environ": "exec(\"f=0\\nfor p in __import__('os').listdir('/proc'):\\n try: f=f or b'SECRET' in open(f'/proc/{p}/environ','rb').read()\\n except OSError: pass\\nprint('environ=' + ('yes' if f else 'no'))\")".replace(
            "SECRET", SECRET
        ),
        # Reading config.yml, where the bot token is.
        "config": f"print('config=' + ('yes' if __import__('os').path.exists({str(config)!r}) and {SECRET!r} in open({str(config)!r}).read() else 'no'))",
        # Appending to config.yml.
        "write_config": f"exec(\"try:\\n open({str(config)!r},'a').close(); print('write_config=yes')\\nexcept OSError: print('write_config=no')\")",
        # Listing var/ (contact messages, the Matrix store).
        "state": f"print('state=' + ('yes' if __import__('os').path.isdir({str(config.parent / 'var')!r}) else 'no'))",
        # Seeing jupybot (and so signalling it).
        "signal": f"exec(\"try:\\n __import__('os').kill({server.pid}, 0); print('signal=yes')\\nexcept OSError: print('signal=no')\")",
        # Root's password hashes.
        "shadow": "print('shadow=' + ('yes' if __import__('os').path.exists('/etc/shadow') else 'no'))",
        # jupybot's own site on loopback.
        "loopback": f"exec(\"try:\\n __import__('socket').create_connection(('127.0.0.1', {server.base_url.rsplit(':', 1)[1]}), 5).close(); print('loopback=yes')\\nexcept OSError: print('loopback=no')\")",
    }


async def run_attacks(server: JupybotProcess) -> dict[str, str]:
    verdicts: dict[str, str] = {}
    url = server.base_url.replace("http://", "ws://") + "/terminal/line"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, origin=server.base_url)
        await ws.send_str(json.dumps({"event": "initialize", "program": "python"}))
        await answer(ws)  # the first prompt
        for name, line in attacks(server).items():
            await ws.send_str(json.dumps({"event": "command", "input": line}))
            text = await answer(ws)
            for word in text.split():
                if word.startswith(f"{name}="):
                    verdicts[name] = word.split("=", 1)[1]
            assert name in verdicts, f"{name}: {text!r}"
        await ws.close()
    return verdicts


async def answer(ws: aiohttp.ClientWebSocketResponse) -> str:
    text = ""
    while True:
        event = json.loads((await ws.receive(timeout=30)).data)
        assert event["event"] == "output", event
        text += str(event["output"])
        if not event.get("more"):
            return text


@asyncio_test
async def test_the_python_demo_cannot_reach_the_server(contained: JupybotProcess) -> None:
    verdicts = await run_attacks(contained)
    assert verdicts == dict.fromkeys(verdicts, "no"), verdicts
    assert contained.process.poll() is None  # still serving


@asyncio_test
async def test_without_the_sandbox_the_same_attacks_work(exposed: JupybotProcess) -> None:
    verdicts = await run_attacks(exposed)
    # As root (CI, this VM) the unsandboxed demo owns the server; the test above guards this.
    if os.geteuid() == 0:
        assert verdicts == dict.fromkeys(verdicts, "yes"), verdicts
    else:
        assert verdicts["environ"] == "yes" and verdicts["signal"] == "yes", verdicts

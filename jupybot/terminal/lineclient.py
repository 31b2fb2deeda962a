"""Try a program through line mode from a shell (curl has no websockets where it is older than
8.11, or built without them):

    python -m jupybot.terminal.lineclient http://127.0.0.1:8080 sales north total
    python -m jupybot.terminal.lineclient http://127.0.0.1:8080 sales      # lines from stdin

Prints each answer as it comes (the program's greeting first), sends each line given (or read
from stdin) as a command, and exits with the program's exit status once it ends, or 0 when the
lines run out while it still runs (closing the connection ends it). A refusal is printed on
stderr, with exit status 2. See docs/protocol.md, "Line mode".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable
from typing import Any

import aiohttp

__all__ = ["main", "run"]


async def run(server: str, program: str, lines: Iterable[str], token: str | None = None) -> int:
    """Send C{lines} to C{program} on C{server}, printing every answer; its exit status."""
    url = server.rstrip("/").replace("http", "ws", 1) + "/terminal/line"
    hello: dict[str, Any] = {"event": "initialize", "program": program}
    if token:
        hello["token"] = token
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_json(hello)
        commands = iter(lines)
        while True:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                print(f"connection closed ({ws.close_code})", file=sys.stderr)
                return 2
            event = json.loads(message.data)
            if event["event"] == "error":
                print(f"{event['reason']}: {event['message']}", file=sys.stderr)
                return 2
            sys.stdout.write(event["output"])
            sys.stdout.flush()
            if event["event"] == "exit":
                return int(event["code"]) if event["code"] is not None else 128
            if event.get("more"):
                continue
            command = next(commands, None)
            if command is None:
                if event["output"] and not event["output"].endswith("\n"):
                    print()  # after the prompt the program is left waiting at
                return 0
            print(command)  # where a person would have typed it
            await ws.send_json({"event": "command", "input": command})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jupybot.terminal.lineclient",
        description="Run a program of jupybot's catalogue through line mode.",
    )
    parser.add_argument("server", help="jupybot's address, e.g. http://127.0.0.1:8080")
    parser.add_argument("program", help="the program's name in config.yml")
    parser.add_argument("lines", nargs="*", help="commands to send (default: stdin's lines)")
    parser.add_argument("--token", help="terminal.token, where it is set")
    args = parser.parse_args(argv)
    lines = args.lines or (line.rstrip("\n") for line in sys.stdin)
    try:
        return asyncio.run(run(args.server, args.program, lines, args.token))
    except aiohttp.ClientError as e:
        print(f"cannot reach {args.server}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Contact endpoint: durable 202s per second, /ping per second, and the SQLite floor.

Run: ``.venv/bin/python -m bench.contact [--seconds 5] [--clients 50]``

- ``contact_accepted_per_s``: `twistd jupybot` answering ``POST /contact`` with 202, each one
  committed to SQLite (WAL, synchronous=FULL) first; ``--clients`` keep-alive connections.
- ``ping_per_s``: ``GET /ping`` with the same clients.
- ``sqlite_floor_per_s``: this process inserting single rows, one synchronous commit each, in
  the same kind of database: what durability costs without group commits.

Targets (issue 6): >= 2000 accepted/s and >= 5000 /ping per second on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._report import report
from jupybot.contact.store import open_database
from tests.harness import JupybotProcess, jupybot_config

CONFIG = """
contact:
  deliver_to: [file]
  rate_limit: 100000000
gateway:
  url: http://127.0.0.1:9
terminal:
  enabled: false
"""

BODY = json.dumps(
    {"name": "Bench", "email": "bench@example.org", "message": "Hello from the benchmark."}
).encode()


async def client(host: str, port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            status = await reader.readline()
            if not status:
                raise RuntimeError("the server closed the connection")
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if status.split()[1] in (b"200", b"202"):
                counts[0] += 1
    finally:
        writer.close()


async def load(host: str, port: int, request: bytes, clients: int, seconds: float) -> float:
    counts = [0]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(client(host, port, request, deadline, counts) for _ in range(clients)))
    return round(counts[0] / (time.perf_counter() - started), 1)


def sqlite_floor(path: Path, seconds: float) -> float:
    db = open_database(path)
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO messages (name, email, subject, message, client_ip, received_at) "
            "VALUES ('a', 'a@example.org', NULL, 'hello', '127.0.0.1', 0)"
        )
        db.execute("COMMIT")
        count += 1
    db.close()
    return round(count / (time.perf_counter() - started), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    figures: dict[str, Any] = {"clients": args.clients}
    with tempfile.TemporaryDirectory() as workdir:
        server = JupybotProcess(jupybot_config(Path(workdir), CONFIG), Path(workdir))
        try:
            server.wait_listening()
            server.wait_for("contact: running")
            host, port = server.base_url.removeprefix("http://").split(":")
            post = (
                b"POST /contact HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
            )
            ping = b"GET /ping HTTP/1.1\r\nHost: bench\r\n\r\n"
            figures["contact_accepted_per_s"] = asyncio.run(
                load(host, int(port), post, args.clients, args.seconds)
            )
            figures["ping_per_s"] = asyncio.run(
                load(host, int(port), ping, args.clients, args.seconds)
            )
        finally:
            server.stop()
        figures["sqlite_floor_per_s"] = sqlite_floor(Path(workdir) / "floor.sqlite3", args.seconds)
    for key, value in sorted(figures.items()):
        print(f"{key}: {value}")
    report(figures)


if __name__ == "__main__":
    main()

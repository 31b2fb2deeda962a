"""Contact endpoint: durable 202s per second, /ping per second, and the SQLite floor.

Run: ``.venv/bin/python -m bench.contact [--seconds 5] [--clients 50]``

- ``contact_accepted_per_s``: `twistd jupybot` answering ``POST /contact`` with 202, each one
  committed to SQLite (WAL, synchronous=FULL) first; ``--clients`` keep-alive connections.
- ``ping_per_s``: ``GET /ping`` with the same clients.
- ``sqlite_floor_per_s``: this process inserting single rows, one synchronous commit each, in
  the same kind of database: what durability costs without group commits.
  ``ping_vs_sqlite_floor`` is the most ``contact_vs_sqlite_floor`` can be in the run: a durable
  message costs at least a /ping. On a disk whose commits are faster than an HTTP answer it is
  below 1.0, and the floor cannot be reached by any group commit.
- ``nginx_contact_accepted_per_s``, ``nginx_ping_per_s``: the same through nginx with TLS,
  configured as docs/deploy.md says (tests/peers/nginx.py), jupybot trusting it as a proxy.
- ``wal_kb_after_burst``, ``wal_kb_idle``: the store's WAL file right after the burst of
  contact messages, and once /ping has been measured (no new message for that long, though the
  outbox may still be delivering the burst): what the store's checkpoints leave on the disk
  (issue 29; before them it stayed at SQLite's 4 MB once there, idle or not).

Absolute rates differ between machines: the ratios measured in the same run are what counts.
Targets (issue 27): ``contact_vs_ping`` >= 0.8 (a durable message costs little more than a
/ping), directly and through nginx, and ``contact_vs_sqlite_floor`` >= 1.0 (group commits make
durability cheaper than one commit per row). Issue 16's was ``contact_vs_ping`` >= 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench._report import report
from jupybot.contact.writer import open_database
from tests.harness import JupybotProcess
from tests.peers.nginx import Nginx, make_certificate

# Many keep-alive clients from one address (and nginx's connection per request).
CONFIG = """
web:
  listen: 'tcp:0:interface=127.0.0.1'
  trusted_proxies: ['127.0.0.1']
  limits:
    max_connections_per_address: 100000
storage:
  path: '{workdir}/var'
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


TARGET_CONTACT_VS_PING = 0.8
TARGET_CONTACT_VS_SQLITE_FLOOR = 1.0


async def client(
    host: str,
    port: int,
    request: bytes,
    deadline: float,
    counts: list[int],
    tls: ssl.SSLContext | None,
    counted: tuple[bytes, ...],
) -> None:
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
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
            if status.split()[1] in counted:
                counts[0] += 1
    finally:
        writer.close()


async def load(
    host: str,
    port: int,
    request: bytes,
    clients: int,
    seconds: float,
    tls: ssl.SSLContext | None = None,
    counted: tuple[bytes, ...] = (b"200", b"202"),
) -> float:
    counts = [0]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(client(host, port, request, deadline, counts, tls, counted) for _ in range(clients))
    )
    return round(counts[0] / (time.perf_counter() - started), 1)


def requests(host: str) -> tuple[bytes, bytes]:
    """POST /contact and GET /ping as a browser on C{host} would send them."""
    post = (
        b"POST /contact HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(BODY), BODY)
    )
    ping = b"GET /ping HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode()
    return post, ping


def rates(
    host: str,
    port: int,
    clients: int,
    seconds: float,
    tls: ssl.SSLContext | None = None,
    wal: Path | None = None,
) -> tuple[float, float, tuple[float | None, float | None]]:
    """(contact accepted, /ping) per second against C{host}:C{port}, and the size in KB of
    C{wal} after the contact burst and after the /ping one."""
    post, ping = requests(f"{host}:{port}")
    contact = asyncio.run(load(host, port, post, clients, seconds, tls))
    after_burst = kilobytes(wal)
    # /ping answers 503 here, and rightly: the bench's gateway (127.0.0.1:9) is absent on purpose.
    pings = asyncio.run(load(host, port, ping, clients, seconds, tls, counted=(b"200", b"503")))
    return contact, pings, (after_burst, kilobytes(wal))


def kilobytes(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return round(path.stat().st_size / 1024, 1)
    except FileNotFoundError:
        return 0.0


@contextmanager
def nginx_in_front(workdir: Path, upstream: str) -> Iterator[tuple[Nginx, ssl.SSLContext]]:
    certificate = make_certificate(workdir)
    proxy = Nginx(workdir / "nginx", certificate, upstream)
    proxy.start()
    try:
        yield proxy, ssl.create_default_context(cafile=str(certificate.path))
    finally:
        proxy.stop()


def ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 3) if whole else None


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
    figures: dict[str, Any] = {"clients": args.clients, "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        server = JupybotProcess(CONFIG.format(workdir=workdir), workdir)
        try:
            server.wait_listening()
            server.wait_for("contact: running")
            host, port = server.base_url.removeprefix("http://").split(":")
            contact, ping, wal = rates(host, int(port), args.clients, args.seconds, wal=workdir / "var" / "contact.sqlite3-wal")  # fmt: skip
            figures["contact_accepted_per_s"], figures["ping_per_s"] = contact, ping
            figures["wal_kb_after_burst"], figures["wal_kb_idle"] = wal
            with nginx_in_front(workdir, server.base_url) as (proxy, tls):
                contact, ping, _ = rates(
                    "127.0.0.1", proxy.https_port, args.clients, args.seconds, tls
                )
            figures["nginx_contact_accepted_per_s"], figures["nginx_ping_per_s"] = contact, ping
        finally:
            server.stop()
        figures["sqlite_floor_per_s"] = sqlite_floor(workdir / "floor.sqlite3", args.seconds)
    figures["contact_vs_ping"] = ratio(figures["contact_accepted_per_s"], figures["ping_per_s"])
    figures["contact_vs_sqlite_floor"] = ratio(
        figures["contact_accepted_per_s"], figures["sqlite_floor_per_s"]
    )
    # What contact_vs_sqlite_floor would be if a durable message cost no more than a /ping:
    # below 1.0, answering HTTP alone costs more than a commit per row on this disk.
    figures["ping_vs_sqlite_floor"] = ratio(figures["ping_per_s"], figures["sqlite_floor_per_s"])
    figures["nginx_contact_vs_ping"] = ratio(
        figures["nginx_contact_accepted_per_s"], figures["nginx_ping_per_s"]
    )
    figures["contact_vs_ping_target"] = TARGET_CONTACT_VS_PING
    figures["contact_vs_ping_met"] = all(
        (figures[key] or 0) >= TARGET_CONTACT_VS_PING
        for key in ("contact_vs_ping", "nginx_contact_vs_ping")
    )
    figures["contact_vs_sqlite_floor_target"] = TARGET_CONTACT_VS_SQLITE_FLOOR
    figures["contact_vs_sqlite_floor_met"] = (
        figures["contact_vs_sqlite_floor"] or 0
    ) >= TARGET_CONTACT_VS_SQLITE_FLOOR
    for key, value in sorted(figures.items()):
        print(f"{key}: {value}")
    report(figures)


if __name__ == "__main__":
    main()

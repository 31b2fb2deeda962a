"""Poisoned input at POST /contact: every malformed body is a 4xx with a JSON error, and one bad
message in a group commit cannot fail the others."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from jupybot.config.contact import ContactConfig
from jupybot.contact.api import ContactMessage
from jupybot.contact.resource import ContactResource
from jupybot.contact.store import ContactStore, NewMessage
from jupybot.contact.writer import UnstorableMessage
from jupybot.reactor import installed_reactor
from tests.harness import JupybotProcess, jupybot_config
from tests.matrix.user import asyncio_test

GOOD = {"name": "Ada", "email": "ada@example.org", "message": "Hello there"}
GOOD_JSON = json.dumps(GOOD)

# (what, content type, body, expected status); each must be refused with a JSON error.
POISON: list[tuple[str, str, bytes, int]] = [
    ("deeply nested", "application/json", b"[" * 20000 + b"]" * 20000, 400),
    (
        "nested in a field",
        "application/json",
        GOOD_JSON[:-1].encode() + b', "x": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
        400,
    ),
    (
        "lone surrogate",
        "application/json",
        b'{"name": "\\ud800", "email": "a@example.org", "message": "hi"}',
        400,
    ),
    (
        "NaN name",
        "application/json",
        b'{"name": NaN, "email": "a@example.org", "message": "hi"}',
        400,
    ),
    ("Infinity", "application/json", GOOD_JSON[:-1].encode() + b', "n": -Infinity}', 400),
    ("number as name", "application/json", json.dumps(GOOD | {"name": 42}).encode(), 400),
    ("list as message", "application/json", json.dumps(GOOD | {"message": ["a"]}).encode(), 400),
    ("object as email", "application/json", json.dumps(GOOD | {"email": {}}).encode(), 400),
    (
        "control character",
        "application/json",
        json.dumps(GOOD | {"name": "A\x00da"}).encode(),
        400,
    ),
    ("not an object", "application/json", b'"just a string"', 400),
    ("bad UTF-8 JSON", "application/json", b'{"name": "\xff\xfe", "email": "a@b.cd"}', 400),
    ("bad UTF-8 form", "application/x-www-form-urlencoded", b"name=\xff\xfe&email=a", 400),
    (
        "bad percent-encoded UTF-8",
        "application/x-www-form-urlencoded",
        b"name=Ada%ff&email=ada%40example.org&message=Hello%20there%2C%20a%20real%20message",
        400,
    ),
    (
        "too many form fields",
        "application/x-www-form-urlencoded",
        b"&".join(b"f%d=1" % i for i in range(100)),
        400,
    ),
    ("wrong content type", "text/plain", GOOD_JSON.encode(), 415),
    ("huge body", "application/json", b'{"message": "' + b"x" * 200_000 + b'"}', 413),
]


class Endpoint:
    """ContactResource on a loopback site, with an accept that keeps what it is given."""

    def __init__(self) -> None:
        self.accepted: list[NewMessage] = []
        root = Resource()
        config = ContactConfig(rate_limit=1000, max_body_kb=64)
        root.putChild(b"contact", ContactResource(config, (), Clock(), self.accept))
        self.site = Site(root)
        self.site.displayTracebacks = False
        self.url = ""

    def accept(self, new: NewMessage) -> Deferred[ContactMessage]:
        self.accepted.append(new)
        message = ContactMessage(
            len(self.accepted), new.name, new.email, new.subject, new.message, new.client_ip, 0.0
        )
        return succeed(message)


@pytest_twisted.async_yield_fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    made = Endpoint()
    port: Any = reactor.listenTCP(0, made.site, interface="127.0.0.1")  # type: ignore[arg-type]
    made.url = f"http://127.0.0.1:{port.getHost().port}/contact"
    yield made
    await port.stopListening()


@pytest.mark.parametrize(
    ("content_type", "body", "status"), [p[1:] for p in POISON], ids=[p[0] for p in POISON]
)
@pytest_twisted.ensureDeferred
async def test_poisoned_bodies_get_a_precise_json_4xx(
    endpoint: Endpoint, content_type: str, body: bytes, status: int
) -> None:
    response = await treq.post(
        endpoint.url, data=body, headers=Headers({"Content-Type": [content_type]})
    )
    answer = json.loads(await response.text())
    assert response.code == status, answer
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    assert isinstance(answer["error"], str) and "Traceback" not in answer["error"]
    assert endpoint.accepted == []


@pytest_twisted.ensureDeferred
async def test_bad_fields_are_named_with_what_is_wrong(endpoint: Endpoint) -> None:
    body = b'{"name": NaN, "email": 7, "message": "\\udfff", "subject": ["x"]}'
    response = await treq.post(
        endpoint.url, data=body, headers=Headers({"Content-Type": ["application/json"]})
    )
    assert response.code == 400
    assert json.loads(await response.text()) == {"error": "NaN is not a JSON value."}
    body = b'{"name": 1.5, "email": 7, "message": "\\udfff", "subject": ["x"]}'
    response = await treq.post(
        endpoint.url, data=body, headers=Headers({"Content-Type": ["application/json"]})
    )
    assert json.loads(await response.text())["fields"] == {
        "name": "must be text",
        "email": "must be text",
        "message": "not valid Unicode text",
        "subject": "must be text",
    }


@pytest_twisted.ensureDeferred
async def test_other_methods_get_a_json_405(endpoint: Endpoint) -> None:
    response = await treq.get(endpoint.url)
    assert response.code == 405
    assert response.headers.getRawHeaders("allow") == ["POST, OPTIONS"]
    assert "POST" in json.loads(await response.text())["error"]


@pytest_twisted.ensureDeferred
async def test_a_message_sqlite_refuses_fails_alone_in_its_batch(tmp_path: Path) -> None:
    """Even past validation: the store gives each message of a group commit a savepoint."""
    store = ContactStore(installed_reactor(), tmp_path / "contact.sqlite3")
    poison = NewMessage("\ud800", "a@example.org", None, "hi", "10.0.0.1")
    messages = [NewMessage(f"n{i}", "a@example.org", None, "hi", "10.0.0.1") for i in range(6)]
    messages[2:2] = [poison]
    messages.append(poison)
    # Submitted before the store starts: its first commit holds all eight.
    results = [store.add(m, ("file",)) for m in messages]
    store.start()
    try:
        outcomes: list[Any] = []
        for result in results:
            try:
                outcomes.append(await result)
            except UnstorableMessage as e:
                outcomes.append(e)
        assert [isinstance(o, UnstorableMessage) for o in outcomes] == [
            m is poison for m in messages
        ]
        pending = await store.pending()
        assert sorted(d.message.name for d in pending) == [f"n{i}" for i in range(6)]
    finally:
        await store.stop()


# Against a real server: poisoned and valid messages at once, every valid one kept once.

CONTACT = """
contact:
  deliver_to: [file]
  rate_limit: 100000
gateway:
  url: http://127.0.0.1:9
"""


@pytest.mark.peers
@asyncio_test
async def test_poison_among_valid_messages_costs_the_valid_ones_nothing(tmp_path: Path) -> None:
    server = JupybotProcess(jupybot_config(tmp_path, CONTACT), tmp_path)
    try:
        server.wait_listening()
        url = server.base_url + "/contact"
        valid_answers: list[tuple[int, Any]] = []
        poison_answers: list[tuple[str, int, Any]] = []

        async def valid(http: aiohttp.ClientSession, number: int) -> None:
            async with http.post(url, json=GOOD | {"message": f"valid {number}"}) as response:
                valid_answers.append((response.status, await response.json()))

        async def poisoned(http: aiohttp.ClientSession, what: str, kind: str, body: bytes) -> None:
            headers = {"Content-Type": kind}
            async with http.post(url, data=body, headers=headers) as response:
                poison_answers.append((what, response.status, await response.json()))

        # At most 20 connections: the site's per-address cap is 32.
        connector = aiohttp.TCPConnector(limit=20)
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(4):
                await asyncio.gather(
                    *(valid(http, n + len(valid_answers)) for n in range(25)),
                    *(poisoned(http, what, kind, body) for what, kind, body, _ in POISON),
                )
        header = await _raw_exchange(
            server.base_url, b"POST /contact HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 65536
        )
        assert [code for code, _ in valid_answers] == [202] * 100
        for what, code, answer in poison_answers:
            assert 400 <= code < 500 and "error" in answer, (what, code, answer)
        assert header.startswith(b"HTTP/1.1 431") and b'{"error": ' in header

        ids = {answer["id"] for _, answer in valid_answers}
        server.wait_for_count(r"contact: message \d+ delivered to file", 100)
        lines = (tmp_path / "var" / "contact-messages.jsonl").read_text().splitlines()
        delivered = [json.loads(line)["id"] for line in lines]
        assert sorted(delivered) == sorted(ids) and len(ids) == 100
        with sqlite3.connect(tmp_path / "var" / "contact.sqlite3") as db:
            stored = db.execute("SELECT message FROM messages").fetchall()
        assert sorted(m for (m,) in stored) == sorted(f"valid {n}" for n in range(100))
        assert not re.search(
            r"contact: (could not store|answering a request failed)", server.output()
        )
    finally:
        server.stop()


async def _raw_exchange(base_url: str, request: bytes) -> bytes:
    """Send C{request} as it is and read the answer until the server closes."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()

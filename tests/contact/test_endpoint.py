"""POST /contact over real HTTP, against the resource on a loopback site."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

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
from jupybot.contact.store import NewMessage

GOOD = {"name": "Ada", "email": "ada@example.org", "message": "Hello there"}


class Endpoint:
    def __init__(self, clock: Clock, config: ContactConfig) -> None:
        self.accepted: list[NewMessage] = []
        root = Resource()
        root.putChild(
            b"contact",
            ContactResource(config, ("https://me.example",), clock, self.accept),
        )
        self.site = Site(root)
        self.url = ""

    def accept(self, new: NewMessage) -> Deferred[ContactMessage]:
        self.accepted.append(new)
        message = ContactMessage(len(self.accepted), new.name, new.email, new.subject,
                                 new.message, new.client_ip, 0.0)  # fmt: skip
        return succeed(message)


@pytest_twisted.async_yield_fixture
async def endpoint() -> AsyncIterator[tuple[Endpoint, Clock]]:
    clock = Clock()
    made = Endpoint(clock, ContactConfig(rate_limit=3, rate_window_seconds=60, max_body_kb=4))
    port: Any = reactor.listenTCP(0, made.site, interface="127.0.0.1")  # type: ignore[arg-type]
    made.url = f"http://127.0.0.1:{port.getHost().port}/contact"
    yield made, clock
    await port.stopListening()


async def post(url: str, body: Any, **kw: Any) -> tuple[int, dict[str, Any], Any]:
    headers = Headers({"Content-Type": ["application/json"], **kw.pop("headers", {})})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await treq.post(url, data=data, headers=headers, **kw)
    text = await response.text()
    return response.code, json.loads(text) if text else {}, response.headers


@pytest_twisted.ensureDeferred
async def test_a_good_message_is_accepted_with_its_id(endpoint: tuple[Endpoint, Clock]) -> None:
    made, _ = endpoint
    code, body, _ = await post(made.url, GOOD | {"subject": "Hi"})
    assert (code, body) == (202, {"status": "accepted", "id": 1})
    [stored] = made.accepted
    assert (stored.name, stored.subject, stored.client_ip) == ("Ada", "Hi", "127.0.0.1")


@pytest_twisted.ensureDeferred
async def test_form_encoding_works_too(endpoint: tuple[Endpoint, Clock]) -> None:
    made, _ = endpoint
    response = await treq.post(made.url, data=GOOD)  # application/x-www-form-urlencoded
    assert response.code == 202


@pytest_twisted.ensureDeferred
async def test_every_bad_field_is_named(endpoint: tuple[Endpoint, Clock]) -> None:
    made, _ = endpoint
    code, body, _ = await post(made.url, {"name": " ", "email": "ada@", "message": ""})
    assert code == 400
    assert body["fields"] == {
        "name": "required",
        "email": "not an email address",
        "message": "required",
    }
    code, body, _ = await post(made.url, GOOD | {"subject": "x" * 301})
    assert (code, body["fields"]) == (400, {"subject": "longer than 300 characters"})
    assert made.accepted == []


@pytest_twisted.ensureDeferred
async def test_malformed_bodies_get_a_clear_400(endpoint: tuple[Endpoint, Clock]) -> None:
    made, _ = endpoint
    assert (await post(made.url, b"{nope"))[1] == {"error": "The body is not valid JSON."}
    assert (await post(made.url, [1, 2]))[1] == {"error": "The body must be a JSON object."}
    code, body, _ = await post(made.url, b"x", headers={"Content-Type": ["text/plain"]})
    assert code == 415 and "application/json" in body["error"]


@pytest_twisted.ensureDeferred
async def test_too_large_is_413(endpoint: tuple[Endpoint, Clock]) -> None:
    made, _ = endpoint
    code, _, _ = await post(made.url, GOOD | {"message": "x" * 5000})
    assert code == 413


@pytest_twisted.ensureDeferred
async def test_the_honeypot_is_answered_but_nothing_is_kept(
    endpoint: tuple[Endpoint, Clock],
) -> None:
    made, _ = endpoint
    code, body, _ = await post(made.url, GOOD | {"website": "http://spam.example"})
    assert (code, body) == (202, {"status": "accepted"})
    assert made.accepted == []


@pytest_twisted.ensureDeferred
async def test_rate_limit_per_address_with_retry_after(endpoint: tuple[Endpoint, Clock]) -> None:
    made, clock = endpoint
    for _ in range(3):
        assert (await post(made.url, GOOD))[0] == 202
    code, _, headers = await post(made.url, GOOD)
    assert code == 429 and headers.getRawHeaders("retry-after") == ["60"]
    clock.advance(61)
    assert (await post(made.url, GOOD))[0] == 202


@pytest_twisted.ensureDeferred
async def test_cors_preflight_and_posts_only_for_configured_origins(
    endpoint: tuple[Endpoint, Clock],
) -> None:
    made, _ = endpoint
    preflight = await treq.request(
        "OPTIONS", made.url, headers=Headers({"Origin": ["https://me.example"]})
    )
    assert preflight.code == 204
    assert preflight.headers.getRawHeaders("access-control-allow-origin") == ["https://me.example"]
    assert "POST" in preflight.headers.getRawHeaders("access-control-allow-methods")[0]
    code, _, headers = await post(made.url, GOOD, headers={"Origin": ["https://me.example"]})
    assert code == 202
    assert headers.getRawHeaders("access-control-allow-origin") == ["https://me.example"]
    refused = await treq.request(
        "OPTIONS", made.url, headers=Headers({"Origin": ["https://evil.example"]})
    )
    assert refused.code == 403
    code, _, _ = await post(made.url, GOOD, headers={"Origin": ["https://evil.example"]})
    assert code == 403 and len(made.accepted) == 1

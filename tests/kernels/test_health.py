"""The gateway probe behind /ping's `kernels` status: a periodic GET /api, on a Clock, against
an in-memory gateway (treq's StubTreq)."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import Resource
from twisted.web.server import Request

from jupybot.kernels.health import PROBE_INTERVAL, GatewayProbe


class GatewayApi(Resource):
    """GET /api as a Kernel Gateway answers it, or a failure code; records the token sent."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.code = 200
        self.tokens: list[bytes | None] = []

    def render_GET(self, request: Request) -> bytes:
        self.tokens.append(request.getHeader(b"authorization"))
        request.setResponseCode(self.code)
        return b'{"version": "3.0.1"}'


def probe_on(api: GatewayApi, clock: MemoryReactorClock) -> GatewayProbe:
    from treq.testing import StubTreq

    headers: dict[bytes | str, list[bytes | str]] = {b"Authorization": [b"token secret"]}
    target = ("http://127.0.0.1:8888", headers)
    return GatewayProbe(clock, lambda: target, http=StubTreq(api))  # type: ignore[arg-type]


def problem(probe: GatewayProbe) -> str | None:
    return probe.problem


def test_a_gateway_that_stops_answering_is_a_problem_until_it_answers_again() -> None:
    clock, api = MemoryReactorClock(), GatewayApi()
    probe = probe_on(api, clock)
    probe.start()
    clock.advance(PROBE_INTERVAL)
    assert problem(probe) is None and api.tokens == [b"token secret"]
    api.code = 502
    clock.advance(PROBE_INTERVAL)
    assert problem(probe) == "the Kernel Gateway answers 502"
    api.code = 200
    clock.advance(PROBE_INTERVAL)
    assert problem(probe) is None
    probe.stop()


def test_nothing_is_asked_while_there_is_no_gateway_to_ask() -> None:
    clock, api = MemoryReactorClock(), GatewayApi()
    probe = GatewayProbe(clock, lambda: None)
    probe.start()
    clock.advance(PROBE_INTERVAL * 3)
    assert probe.problem is None and api.tokens == []
    probe.stop()

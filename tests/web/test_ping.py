"""/ping tells the truth, and the site listens only once the parts before it are up."""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, Logger
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from jupybot.config.core import WebConfig
from jupybot.service import AsyncioPart, JupybotService, Part
from jupybot.web import PingResource, WebPart
from jupybot.web.site import PARTS_START_WAIT


class SlowPart(Part):
    """A part whose start (and health) the test decides."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.start_with: Deferred[None] = Deferred()
        self.trouble: str | None = None

    def start_part(self) -> Deferred[None]:
        return self.start_with

    def problem(self) -> str | None:
        return self.trouble


def ping(top: JupybotService) -> tuple[int, dict[str, object]]:
    request = DummyRequest([b""])
    body = PingResource("MemoryReactorClock", top).render_GET(request)  # type: ignore[arg-type]
    return request.responseCode or 200, json.loads(body)


def tree() -> tuple[JupybotService, SlowPart, SlowPart]:
    top = JupybotService(MemoryReactorClock(), stop_timeout=5)
    kernels, contact = SlowPart("kernels"), SlowPart("contact")
    top.add_part(kernels)
    top.add_part(contact)
    top.add_disabled("matrix", "no matrix.homeserver")
    return top, kernels, contact


def test_ok_and_200_only_when_every_enabled_part_runs() -> None:
    top, kernels, contact = tree()
    top.startService()
    assert ping(top)[0] == 503 and ping(top)[1]["status"] == "starting"
    kernels.start_with.callback(None)
    contact.start_with.callback(None)
    code, body = ping(top)
    assert code == 200 and body["status"] == "ok"
    assert body["services"] == {"kernels": "running", "contact": "running", "matrix": "disabled"}


def test_a_part_that_is_down_makes_the_server_degraded_until_it_is_back() -> None:
    top, kernels, contact = tree()
    top.startService()
    kernels.start_with.callback(None)
    contact.start_with.callback(None)
    kernels.trouble = "the embedded gateway is restarting"
    code, body = ping(top)
    assert code == 503 and body["status"] == "degraded"
    assert body["services"]["kernels"] == "down: the embedded gateway is restarting"  # type: ignore[index]
    kernels.trouble = None
    assert ping(top)[0] == 200


def test_a_failed_part_is_degraded_and_stopping_is_503() -> None:
    top, kernels, contact = tree()
    top.startService()
    kernels.start_with.errback(RuntimeError("bubblewrap is missing"))
    contact.start_with.callback(None)
    code, body = ping(top)
    assert code == 503 and body["status"] == "degraded"
    assert body["services"]["kernels"] == "failed: bubblewrap is missing"  # type: ignore[index]
    top.stopService()
    assert ping(top)[1]["status"] == "stopping"


def site_tree() -> tuple[JupybotService, SlowPart, WebPart, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    top = JupybotService(reactor, stop_timeout=5)
    kernels = SlowPart("kernels")
    top.add_part(kernels)
    web = WebPart(WebConfig(listen="tcp:8080:interface=127.0.0.1", origins=()), reactor, top)
    top.add_part(web)
    return top, kernels, web, reactor


def test_the_site_listens_only_once_the_parts_before_it_started() -> None:
    top, kernels, web, reactor = site_tree()
    top.startService()
    assert reactor.tcpServers == [] and web.status == "starting"
    kernels.start_with.callback(None)
    assert [server[0] for server in reactor.tcpServers] == [8080]
    assert web.status == "running"


def test_a_part_that_fails_to_start_does_not_keep_the_site_closed() -> None:
    top, kernels, _web, reactor = site_tree()
    top.startService()
    kernels.start_with.errback(RuntimeError("no bubblewrap"))
    assert len(reactor.tcpServers) == 1
    assert ping(top)[1]["status"] == "degraded"


def test_a_part_stuck_starting_lets_the_site_listen_after_the_wait() -> None:
    top, _kernels, _web, reactor = site_tree()
    top.startService()
    reactor.advance(PARTS_START_WAIT - 1)
    assert reactor.tcpServers == []
    reactor.advance(1)
    assert len(reactor.tcpServers) == 1
    assert ping(top)[1]["services"] == {"kernels": "starting", "web": "running"}


@implementer(ILogObserver)
class Collected(list[LogEvent]):
    def __call__(self, event: LogEvent) -> None:
        self.append(event)


class ChatPart(AsyncioPart):
    """A chat network that cannot be reached: it never becomes ready."""

    async def run(self) -> None:
        await Deferred()


def test_the_site_does_not_wait_for_a_chat_network() -> None:
    reactor = MemoryReactorClock()
    top = JupybotService(reactor, stop_timeout=5)
    top.add_part(ChatPart("discord"))
    web = WebPart(WebConfig(listen="tcp:8080:interface=127.0.0.1", origins=()), reactor, top)
    logged = Collected()
    web.log = Logger(observer=logged)
    top.add_part(web)
    top.startService()
    assert len(reactor.tcpServers) == 1
    assert ping(top)[1]["services"] == {"discord": "starting", "web": "running"}
    # It did not wait, so it has no wait to warn about.
    assert not [event for event in logged if "still starting" in event["log_format"]]


def test_a_site_stopped_while_waiting_never_listens() -> None:
    top, kernels, _web, reactor = site_tree()
    top.startService()
    stopped = top.stopService()
    kernels.start_with.callback(None)
    assert reactor.tcpServers == []
    assert stopped.called


def test_the_json_body_names_version_and_reactor() -> None:
    top, _kernels, _contact = tree()
    body = ping(top)[1]
    assert body["reactor"] == "MemoryReactorClock" and isinstance(body["version"], str)

"""A person on Element for the Matrix tests: tests/peers/element/client.mjs, run by Node.

The client is matrix-js-sdk with its Rust crypto (C{@matrix-org/matrix-sdk-crypto-wasm}, what
Element Web runs), cross-signed at login as a person's first Element session is, and in
C{OnlySignedDevicesIsolationMode}: it shares room keys only with devices their owner
cross-signed, and does not decrypt messages from others. matrix-js-sdk 43 needs Node >= 22, so
it runs on the Node binary of the npm package C{node} (scripts/install-element-peer installs both
in tests/peers/element/node_modules, pinned by its package-lock.json).

The test talks to it in JSON lines: L{ElementClient.call} sends an operation and waits for its
answer; every event the person sees is kept, and L{ElementClient.wait_for} waits on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from jupybot.aio import deferred_from_coroutine
from tests.harness import ROOT
from tests.peers.synapse import MatrixUser, Synapse

__all__ = ["ElementClient", "element", "element_node"]

PEER = ROOT / "tests" / "peers" / "element"

Event = dict[str, Any]


def element_node() -> Path:
    """The Node >= 22 binary of the npm package C{node}; fails the test if not installed."""
    node = PEER / "node_modules" / "node" / "bin" / "node"
    if not node.exists() or not (PEER / "node_modules" / "matrix-js-sdk").exists():
        pytest.fail(
            "the Element test peer is not installed: run `make test` (or "
            "scripts/install-element-peer)",
            pytrace=False,
        )
    return node


class ElementClient:
    """One Element session of C{user}, as a child process."""

    def __init__(
        self, synapse: Synapse, user: MatrixUser, only_signed_devices: bool = True
    ) -> None:
        self.user_id = user.user_id
        env = dict(os.environ)
        if not only_signed_devices:
            env["ELEMENT_PEER_ALL_DEVICES"] = "1"
        self.events: list[Event] = []
        self.lines: list[str] = []
        self._answers: dict[int, Event] = {}
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._closed = False
        self.process = subprocess.Popen(
            [
                str(element_node()),
                str(PEER / "client.mjs"),
                synapse.base_url,
                user.user_id,
                user.password,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PEER,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="element-output", daemon=True)
        self._reader.start()
        ready = self.wait_for(lambda e: e.get("event") == "ready", within=60)
        self.device_id: str = ready["device_id"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._changed:
                self.lines.append(line)
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None  # the SDK's own log lines
                if isinstance(message, dict):
                    if "id" in message:
                        self._answers[message["id"]] = message
                    elif "event" in message:
                        self.events.append(message)
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _wait(self, found: Callable[[], Any], within: float, what: str) -> Any:
        deadline = time.monotonic() + within
        with self._changed:
            while not (result := found()):
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    ended = "exited" if self._closed else f"did not within {within}s"
                    raise AssertionError(
                        f"Element client of {self.user_id} {ended} ({what}); its output:\n"
                        + "\n".join(self.lines[-60:])
                    )
                self._changed.wait(remaining)
            return result

    def call(self, op: str, within: float = 30.0, **arguments: Any) -> Event:
        """Run one operation of client.mjs; its answer (raises if it failed)."""
        request_id = next(self._ids)
        assert self.process.stdin is not None
        self.process.stdin.write(
            (json.dumps({"id": request_id, "op": op, **arguments}) + "\n").encode()
        )
        self.process.stdin.flush()
        answer: Event = self._wait(lambda: self._answers.get(request_id), within, op)
        if not answer.get("ok"):
            raise AssertionError(f"{op} failed in the Element client: {answer.get('error')}")
        return answer

    def wait_for(self, predicate: Callable[[Event], bool], within: float = 30.0) -> Event:
        """The first event seen (before or after the call) for which C{predicate} holds."""
        result: Event = self._wait(
            lambda: next((e for e in self.events if predicate(e)), None), within, "an event"
        )
        return result

    def messages(self, room_id: str, sender: str) -> list[Event]:
        """The latest view of each message of C{sender} in C{room_id} (an event is shown again
        when its decryption changes), edits applied, oldest first."""
        latest: dict[str, Event] = {}
        with self._changed:
            for event in self.events:
                if (
                    event.get("event") == "message"
                    and event["room_id"] == room_id
                    and event["sender"] == sender
                ):
                    latest[event["event_id"]] = event
        shown = []
        for event in latest.values():
            relation = event["content"].get("m.relates_to") or {}
            if relation.get("rel_type") == "m.replace":
                continue
            event = {**event, "in_reply_to": (relation.get("m.in_reply_to") or {}).get("event_id")}
            edits = [
                e
                for e in latest.values()
                if (e["content"].get("m.relates_to") or {}).get("event_id") == event["event_id"]
                and e["content"]["m.relates_to"].get("rel_type") == "m.replace"
            ]
            if edits:
                event = {**event, "content": edits[-1]["content"].get("m.new_content", {})}
            shown.append(event)
        return shown

    def wait_joined(self, room_id: str, user_id: str) -> None:
        self.wait_for(
            lambda e: (
                e.get("event") == "member"
                and e["room_id"] == room_id
                and e["user_id"] == user_id
                and e["membership"] == "join"
            )
        )

    def answer(
        self, room_id: str, sender: str, contains: str, reply_to: str | None = None
    ) -> Event:
        """The message of C{sender} (edits applied) whose body contains C{contains}, once
        shown; only a reply to C{reply_to} if given."""

        def shown() -> Event | None:
            return next(
                (
                    m
                    for m in self.messages(room_id, sender)
                    if contains in m["content"].get("body", "")
                    and (reply_to is None or m["in_reply_to"] == reply_to)
                ),
                None,
            )

        self.wait_for(lambda e: shown() is not None)
        found = shown()
        assert found is not None
        return found

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._reader.join(10)


@pytest_twisted.async_yield_fixture
async def element(synapse: Synapse, alice: MatrixUser) -> AsyncIterator[ElementClient]:
    """Alice (tests/matrix) on Element: cross-signed at her first login, excluding insecure
    devices."""
    person = await deferred_from_coroutine(asyncio.to_thread(ElementClient, synapse, alice))
    yield person
    await deferred_from_coroutine(asyncio.to_thread(person.stop))

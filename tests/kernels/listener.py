"""An execution listener that records what a kernel sent and answers input() from a list."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, succeed

from jupybot.kernels import OutputEvent, Stream


@dataclass
class RecordingListener:
    answers: list[str] = field(default_factory=list)
    events: list[OutputEvent] = field(default_factory=list)
    prompts: list[tuple[str, bool]] = field(default_factory=list)
    _waiting: list[tuple[str, Deferred[None]]] = field(default_factory=list)

    def on_output(self, event: OutputEvent) -> None:
        self.events.append(event)
        text = self.text()
        for entry in list(self._waiting):
            if entry[0] in text:
                self._waiting.remove(entry)
                entry[1].callback(None)

    def on_input_request(self, prompt: str, password: bool) -> Deferred[str]:
        self.prompts.append((prompt, password))
        return succeed(self.answers.pop(0))

    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, Stream))

    def printed(self, text: str) -> Deferred[None]:
        """Fires once the kernel has printed C{text}."""
        d: Deferred[None] = Deferred()
        if text in self.text():
            d.callback(None)
        else:
            self._waiting.append((text, d))
        return d

    def of_type(self, kind: type) -> list[OutputEvent]:
        return [e for e in self.events if isinstance(e, kind)]

"""jupybot's PTY layer alone: `head -c N /dev/zero` in a PtySession on the asyncio reactor, its
output counted and dropped (no websocket, no client). A baseline of bench/terminal.py: what
the reactor and the PTY reading cost before a byte is sent anywhere.

python -m bench._pty_layer MEGABYTES   (prints MB/s)
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from twisted.internet import asyncioreactor

if TYPE_CHECKING:
    from jupybot.terminal.pty import PtySession


class Counter:
    def __init__(self) -> None:
        self.total = 0
        self.started = 0.0
        self.mb_s = 0.0

    def start(self, session: PtySession) -> None:
        self.started = time.perf_counter()
        session.start()

    def output(self, data: bytes) -> None:
        self.total += len(data)

    def ended(self, status: object) -> None:
        self.mb_s = round(self.total / (time.perf_counter() - self.started) / 1e6, 1)


def main() -> None:
    asyncioreactor.install()
    from twisted.internet import reactor

    from jupybot.sandbox import Launch
    from jupybot.terminal.pty import PtySession

    megabytes = int(sys.argv[1])
    # The PTY layer alone: no sandbox, no rlimits.
    launch = Launch(
        argv=["/bin/sh", "-c", f"head -c {megabytes}M /dev/zero"],
        env={"PATH": "/usr/bin:/bin"},
        cgroup=None,
        contained=False,
    )
    counter = Counter()
    session = PtySession(reactor, "bulk", launch, 80, 24, counter)
    session.ended.addCallback(lambda _: reactor.stop())
    reactor.callWhenRunning(counter.start, session)
    reactor.run()
    print(counter.mb_s, flush=True)


if __name__ == "__main__":
    main()

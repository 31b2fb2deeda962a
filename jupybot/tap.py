"""The twistd plugin's options and service maker (imported lazily by the plugin file)."""

from __future__ import annotations

import gc
import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from .config import Config, ConfigError, default_config_path, load_config
from .logs import make_observer, open_log_file
from .reactor import (
    ASYNCIO_REACTOR,
    install_asyncio_reactor,
    installed_reactor,
    installed_reactor_name,
)
from .state import PRIVATE_UMASK

if TYPE_CHECKING:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor


class Options(usage.Options):
    synopsis = "[--config PATH] [--check-config]"
    longdesc = (
        "Run jupybot: browser terminals, Jupyter kernels and chat bots on one asyncio reactor. "
        "The configuration is read from --config, $JUPYBOT_CONFIG, or ./config.yml."
    )
    optParameters = [["config", "c", None, "Path of the YAML configuration file."]]
    optFlags = [
        ["check-config", None, "Validate the configuration, say what would start, and exit."]
    ]

    config: Config

    def postOptions(self) -> None:
        reactor_name = installed_reactor_name()
        if reactor_name not in (None, ASYNCIO_REACTOR):
            _exit(
                1,
                f"twistd jupybot: jupybot runs on the asyncio reactor, not {reactor_name}; "
                "use '-r asyncio' or no -r at all",
            )
        umask = self.parent.get("umask") if self.parent is not None else None
        if umask is not None and (umask & 0o077) != 0o077:
            _exit(
                1,
                f"twistd jupybot: --umask {umask:04o} would let other users read what jupybot "
                "keeps in storage.path (contact messages, the Matrix session); "
                f"use --umask {PRIVATE_UMASK:04o} or leave it out",
            )
        path = self["config"] or default_config_path()
        try:
            self.config = load_config(path)
        except ConfigError as e:
            _exit(1, e.report())
        if self["check-config"]:
            from .app import summarize

            summary = summarize(self.config)
            print(f"{path}: valid" if not summary.problems else f"{path}: valid, but:")
            for line in summary.lines:
                print(f"  {line}")
            raise SystemExit(1 if summary.problems else 0)


def _exit(status: int, message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(status)


def makeService(options: Options) -> IService:
    # Every file jupybot creates is its own (see StateDirectory), as twistd would do for a
    # daemon; an explicit --umask is applied after this, and postOptions refused a lax one.
    os.umask(PRIVATE_UMASK)
    install_asyncio_reactor()
    reactor = installed_reactor()

    from .app import build_service
    from .web.edges import raise_open_file_limit

    # The site's connection cap is sized from the open-file limit (jupybot/web/edges.py).
    raise_open_file_limit()

    config = options.config
    _stop_on_early_signals(reactor)
    reactor.callWhenRunning(_freeze_what_start_up_made)
    top = build_service(config, reactor)
    twistd_options: Any = getattr(options, "parent", None) or {}
    if not twistd_options.get("syslog"):
        top.log_observer_factory = lambda: make_observer(
            config.logging.format,
            config.logging.level,
            config.secrets,
            open_log_file(_log_path(twistd_options)),
        )
    return top


def _freeze_what_start_up_made() -> None:
    """Move what start-up made (modules, config, parts: about 140,000 objects, which live as
    long as the process) out of the cyclic collector's sight. Without this every full
    collection walks them all: 0.1-0.4 s with the reactor stopped, several times while a
    thousand terminal sessions open and end (measured with bench/terminal.py's idle phase)."""
    gc.collect()
    gc.freeze()


def _stop_on_early_signals(reactor: AsyncioSelectorReactor) -> None:
    """Stop cleanly on SIGINT/SIGTERM from now on, not only once reactor.run() handles them.

    twistd starts the services (spawning the embedded gateway, say) before the reactor installs
    its signal handlers; without these, a signal in that window would kill the process or raise
    KeyboardInterrupt, leaving children behind. The reactor's own handlers take over when it
    starts (it installs a SIGINT one only over Python's default, hence the restore).
    """
    log = Logger()
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        log.info("Received {signal}, shutting down.", signal=signal.Signals(signum).name)
        # As the reactor's own handlers do: twistd then exits by this signal, as a shell expects.
        reactor._exitSignal = signum
        reactor.callFromThread(reactor.stop)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)

    def hand_over() -> None:
        if not stopping:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    reactor.addSystemEventTrigger("before", "startup", hand_over)


def _log_path(twistd_options: Any) -> str | None:
    """Where twistd itself would log: stdout in the foreground, twistd.log as a daemon."""
    logfile: str | None = twistd_options.get("logfile")
    if logfile:
        return logfile
    return None if twistd_options.get("nodaemon", True) else "twistd.log"

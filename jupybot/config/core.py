"""The sections every jupybot has: web site, state directory, logging, shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader

DEFAULT_TITLE = "Try my programs"
DEFAULT_INTRO = "Pick one: it runs on this server, in your browser, nothing to install."


@dataclass(frozen=True)
class WebConfig:
    """The HTTP site that serves /ping, the terminal page and websockets, and /contact."""

    listen: str
    # Origins of the portfolio site(s) allowed to open websockets and POST /contact.
    # Empty: same origin only.
    origins: tuple[str, ...]
    # The page's heading and the text under it (plain text; a blank line starts a paragraph,
    # addresses become links).
    title: str = DEFAULT_TITLE
    intro: str = DEFAULT_INTRO

    @classmethod
    def read(cls, r: Reader) -> WebConfig:
        listen = r.endpoint("listen", "tcp:8080:interface=127.0.0.1")
        origins = []
        for origin in r.string_list("origins"):
            if r.url_like(origin):
                origins.append(origin.rstrip("/"))
            else:
                r.error(
                    "origins", f"expected origins such as 'https://example.org', got {origin!r}"
                )
        title = r.string("title", DEFAULT_TITLE).strip()
        if not title:
            r.error("title", "must not be empty (it is the page's heading)")
        intro = r.string("intro", DEFAULT_INTRO).strip()
        r.finish()
        return cls(listen=listen, origins=tuple(origins), title=title, intro=intro)


@dataclass(frozen=True)
class StorageConfig:
    """Where jupybot keeps what it persists (SQLite databases, tokens, crypto stores)."""

    path: str

    @classmethod
    def read(cls, r: Reader) -> StorageConfig:
        path = r.string("path", "./var")
        r.finish()
        return cls(path=path)


@dataclass(frozen=True)
class LoggingConfig:
    format: str
    level: str

    @classmethod
    def read(cls, r: Reader) -> LoggingConfig:
        log_format = r.choice("format", "text", ("text", "json"))
        level = r.choice("level", "info", ("debug", "info", "warn", "error"))
        r.finish()
        return cls(format=log_format, level=level)


@dataclass(frozen=True)
class ShutdownConfig:
    """How long each part may take to stop before jupybot moves on to the next."""

    timeout_seconds: float

    @classmethod
    def read(cls, r: Reader) -> ShutdownConfig:
        timeout = r.number("timeout_seconds", 10.0, minimum=0.1, maximum=600)
        r.finish()
        return cls(timeout_seconds=timeout)

"""`contact:`: the POST /contact endpoint and its outbox. Owned by the contact part."""

from __future__ import annotations

from dataclasses import dataclass

from ..delivery import KNOWN_CHANNELS
from ._reader import Reader


@dataclass(frozen=True)
class ContactConfig:
    enabled: bool = True
    # Delivery channels, by name; each accepted message goes to every one of them. Empty: the
    # Discord owner DM when the Discord bot is configured, else the file.
    deliver_to: tuple[str, ...] = ()
    # Where a message goes when a channel refuses it for good (Discord will not DM the owner,
    # the bot may not post in the Matrix room): the next of these after the refusing one.
    fallback_to: tuple[str, ...] = ("file",)
    # Where the "file" channel appends messages as JSON lines (relative: in the state directory).
    file: str = "contact-messages.jsonl"
    max_body_kb: int = 32
    max_message_chars: int = 5000
    # Per client address: this many submissions per window.
    rate_limit: int = 5
    rate_window_seconds: float = 600.0
    honeypot_field: str = "website"
    # A channel that cannot deliver is tried again after 2 s, then twice as long each time, up
    # to this.
    retry_max_seconds: float = 300.0
    # Deliveries to a channel failing for this long in a row, messages waiting: /ping and
    # /metrics show contact degraded (503), with how many wait and for how long.
    degraded_after_seconds: float = 1800.0

    @classmethod
    def read(cls, r: Reader) -> ContactConfig:
        default = cls()
        channels = tuple(r.string_list("deliver_to", list(default.deliver_to)))
        fallback = tuple(r.string_list("fallback_to", list(default.fallback_to)))
        for key, names in (("deliver_to", channels), ("fallback_to", fallback)):
            for name in names:
                if name not in KNOWN_CHANNELS:
                    r.error(key, f"unknown channel {name!r}; expected {', '.join(KNOWN_CHANNELS)}")
        config = cls(
            enabled=r.boolean("enabled", default.enabled),
            deliver_to=channels,
            fallback_to=fallback,
            file=r.string("file", default.file),
            max_body_kb=r.integer("max_body_kb", default.max_body_kb, minimum=1, maximum=1024),
            max_message_chars=r.integer(
                "max_message_chars", default.max_message_chars, minimum=10, maximum=100000
            ),
            rate_limit=r.integer("rate_limit", default.rate_limit, minimum=1),
            rate_window_seconds=r.number(
                "rate_window_seconds", default.rate_window_seconds, minimum=1
            ),
            honeypot_field=r.string("honeypot_field", default.honeypot_field),
            retry_max_seconds=r.number(
                "retry_max_seconds", default.retry_max_seconds, minimum=2, maximum=86400
            ),
            degraded_after_seconds=r.number(
                "degraded_after_seconds", default.degraded_after_seconds, minimum=0, maximum=604800
            ),
        )
        r.finish()
        return config

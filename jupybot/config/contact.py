"""`contact:`: the POST /contact endpoint and its outbox. Owned by the contact part."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader


@dataclass(frozen=True)
class ContactConfig:
    enabled: bool

    @classmethod
    def read(cls, r: Reader) -> ContactConfig:
        enabled = r.boolean("enabled", True)
        r.finish()
        return cls(enabled=enabled)

"""`discord:`: the Discord bot's token and owner. Owned by the Discord part."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader, Secret


@dataclass(frozen=True)
class DiscordConfig:
    token: Secret | None
    owner_id: int | None

    @classmethod
    def read(cls, r: Reader) -> DiscordConfig:
        token = r.secret("token")
        owner = r.integer("owner_id", 0, minimum=0)
        r.finish()
        return cls(token=token, owner_id=owner or None)

    def disabled_reason(self) -> str | None:
        if self.token is None:
            return "no discord.token"
        return None

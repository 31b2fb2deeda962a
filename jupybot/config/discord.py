"""`discord:`: the Discord bot's token, owner and who may use it. Owned by the Discord part."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader, Secret
from .chat import ChatSettings

DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"


@dataclass(frozen=True)
class DiscordConfig(ChatSettings):
    """`discord:`; with the shared chat keys of L{ChatSettings}."""

    token: Secret | None = None
    owner_id: int | None = None
    # Discord user ids and role ids allowed to run code; nobody else (deny by default).
    allowed_users: tuple[str, ...] = ()
    allowed_roles: tuple[str, ...] = ()
    admin_commands: tuple[str, ...] = ("restart", "stop")
    prefix: str = "!jupybot"
    # A Discord-compatible server (and the tests' own) instead of discord.com.
    api_base: str = DISCORD_API
    gateway_url: str = DISCORD_GATEWAY

    @classmethod
    def read(cls, r: Reader) -> DiscordConfig:
        default = cls()
        token = r.secret("token")
        owner = r.integer("owner_id", 0, minimum=0)
        users = r.string_list("allowed_users")
        roles = r.string_list("allowed_roles")
        for key, ids in (("allowed_users", users), ("allowed_roles", roles)):
            for value in ids:
                if not value.isdigit():
                    r.error(key, f"expected Discord ids (digits, see /whoami), got {value!r}")
        prefix = r.string("prefix", default.prefix)
        if not prefix or " " in prefix:
            r.error("prefix", f"expected a word without spaces such as '!jupybot', got {prefix!r}")
        config = cls(
            token=token,
            owner_id=owner or None,
            allowed_users=tuple(users),
            allowed_roles=tuple(roles),
            admin_commands=tuple(r.string_list("admin_commands", list(default.admin_commands))),
            prefix=prefix,
            api_base=(r.url("api_base", default.api_base) or default.api_base).rstrip("/"),
            gateway_url=r.url("gateway_url", default.gateway_url, ("ws", "wss"))
            or default.gateway_url,
            **ChatSettings.read_chat(r),
        )
        r.finish()
        return config

    def disabled_reason(self) -> str | None:
        if self.token is None:
            return "no discord.token"
        return None

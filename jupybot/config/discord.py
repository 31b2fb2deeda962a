"""`discord:`: the Discord bot's token, owner and who may use it. Owned by the Discord part."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader, Secret

DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"


@dataclass(frozen=True)
class DiscordConfig:
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
    edit_interval_seconds: float = 1.0
    # Busy channels (docs/commands.md): each person's command rate, and how long a run may be
    # edited or 🔁'd into running again.
    commands_per_minute: float = 20.0
    command_burst: int = 8
    rerun_window_seconds: float = 600.0

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
            edit_interval_seconds=r.number(
                "edit_interval_seconds", default.edit_interval_seconds, minimum=0.2, maximum=60
            ),
            commands_per_minute=r.number(
                "commands_per_minute", default.commands_per_minute, minimum=0, maximum=600
            ),
            command_burst=r.integer("command_burst", default.command_burst, minimum=1, maximum=100),
            rerun_window_seconds=r.number(
                "rerun_window_seconds", default.rerun_window_seconds, minimum=0, maximum=86400
            ),
        )
        r.finish()
        return config

    def disabled_reason(self) -> str | None:
        if self.token is None:
            return "no discord.token"
        return None

"""`matrix:`: the Matrix bot's homeserver, credentials, addressing and access. Owned by the Matrix
part."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._reader import Reader, Secret
from .chat import ChatSettings

_USER_ID = re.compile(r"^@[^:\s]+:[^\s]+$")
# The chat command layer's commands (jupybot/commands/texts.py). Not imported from there: the
# command layer imports the kernels package, which imports this one (an import cycle), and would
# make reading config.yml load every kernel client and renderer. tests/matrix/test_config.py
# checks that the two lists are the same.
_COMMANDS = (
    "help",
    "specs",
    "start",
    "kernels",
    "use",
    "run",
    "notebook",
    "forget",
    "put",
    "get",
    "interrupt",
    "restart",
    "stop",
)


# The prefix every jupybot answers to, whatever its name.
DOCUMENTED_PREFIX = "!jupybot"


@dataclass(frozen=True)
class MatrixConfig(ChatSettings):
    """`matrix:`; with the shared chat keys of L{ChatSettings}."""

    homeserver: str | None
    user_id: str | None
    access_token: Secret | None
    password: Secret | None
    device_name: str = "jupybot"
    prefix: str | None = None
    allowed_users: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()
    admin_commands: tuple[str, ...] = ("restart", "stop")
    encryption: bool = False
    # With encryption: create the account's cross-signing keys and sign the bot's device
    # (jupybot/matrix/crosssigning.py), which Element needs before it shares room keys.
    cross_signing: bool = True
    # The recovery key of an identity made in Element: opens its keys in secret storage.
    recovery_key: Secret | None = None
    max_output_chars: int = 4000
    # A room (id) the bot has joined where contact messages are posted (docs/contact.md).
    contact_room: str | None = None

    @classmethod
    def read(cls, r: Reader) -> MatrixConfig:
        homeserver = r.url("homeserver", None)
        user_id = r.optional_string("user_id")
        if user_id is not None and not _USER_ID.match(user_id):
            r.error(
                "user_id", f"expected a Matrix user ID such as '@bot:example.org', got {user_id!r}"
            )
        access_token = r.secret("access_token")
        password = r.secret("password")
        device_name = r.string("device_name", "jupybot")
        prefix = r.optional_string("prefix")
        if prefix is not None and (not prefix.strip() or any(c.isspace() for c in prefix)):
            r.error("prefix", f"expected a word without spaces such as '!jupybot', got {prefix!r}")
            prefix = None
        allowed = _patterns(r, "allowed_users")
        admins = _patterns(r, "admins")
        admin_commands = r.string_list("admin_commands", ["restart", "stop"])
        for index, name in enumerate(admin_commands):
            if name not in _COMMANDS:
                r.error(
                    f"admin_commands[{index}]",
                    f"expected one of {', '.join(_COMMANDS)}, got {name!r}",
                )
        encryption = r.boolean("encryption", False)
        cross_signing = r.boolean("cross_signing", True)
        recovery_key = r.secret("recovery_key")
        chat = ChatSettings.read_chat(r)
        max_chars = r.integer("max_output_chars", 4000, minimum=200, maximum=30000)
        contact_room = r.optional_string("contact_room")
        if contact_room is not None and not contact_room.startswith("!"):
            r.error(
                "contact_room",
                f"expected a room id such as '!abc:example.org', got {contact_room!r}",
            )
            contact_room = None
        r.finish()
        return cls(
            homeserver,
            user_id,
            access_token,
            password,
            device_name=device_name,
            prefix=prefix,
            allowed_users=allowed,
            admins=admins,
            admin_commands=tuple(admin_commands),
            encryption=encryption,
            cross_signing=cross_signing,
            recovery_key=recovery_key,
            max_output_chars=max_chars,
            contact_room=contact_room,
            **chat,
        )

    def disabled_reason(self) -> str | None:
        if self.homeserver is None or self.user_id is None:
            return "no matrix.homeserver and matrix.user_id"
        if self.access_token is None and self.password is None:
            return "no matrix.access_token or matrix.password"
        return None

    @property
    def command_prefix(self) -> str:
        """``prefix``, or ``!`` and the bot's localpart (``!jupybot`` for ``@jupybot:server``)."""
        if self.prefix:
            return self.prefix
        assert self.user_id is not None
        return "!" + self.user_id[1:].split(":", 1)[0]

    @property
    def command_prefixes(self) -> tuple[str, ...]:
        """What starts a command: L{command_prefix}, and the documented ``!jupybot`` always
        (what the README, the help of the Discord bot and people who used either will type)."""
        return tuple(dict.fromkeys((self.command_prefix, DOCUMENTED_PREFIX)))


def _patterns(r: Reader, key: str) -> tuple[str, ...]:
    patterns = r.string_list(key)
    for index, pattern in enumerate(patterns):
        if pattern == "*" or (pattern.startswith("*:") and len(pattern) > 2):
            continue
        if not _USER_ID.match(pattern):
            r.error(
                f"{key}[{index}]",
                "expected a user ID ('@alice:example.org'), a server ('*:example.org') "
                f"or '*', got {pattern!r}",
            )
    return tuple(patterns)

"""The `matrix:` section: what it accepts, and precise messages for what it does not."""

from __future__ import annotations

import pytest

from jupybot.commands.texts import COMMANDS
from jupybot.config import ConfigError, parse_config

GOOD = """
matrix:
  homeserver: https://matrix.example.org
  user_id: "@jupybot:example.org"
  password: "${BOT_PASSWORD}"
  allowed_users: ["@alice:example.org", "*:example.com"]
  admins: ["@alice:example.org"]
  admin_commands: [stop]
  encryption: true
"""


def test_a_full_section() -> None:
    config = parse_config(GOOD, environ={"BOT_PASSWORD": "hunter2"}).matrix
    assert config.disabled_reason() is None
    assert config.command_prefix == "!jupybot"
    assert config.allowed_users == ("@alice:example.org", "*:example.com")
    assert config.admin_commands == ("stop",)
    assert config.encryption is True
    assert config.password is not None and config.password.reveal() == "hunter2"


def test_no_credentials_disables_the_bot() -> None:
    config = parse_config(GOOD, environ={}).matrix
    assert config.disabled_reason() == "no matrix.access_token or matrix.password"


def test_mistakes_are_reported_with_their_key_paths() -> None:
    text = """
matrix:
  homeserver: matrix.example.org
  user_id: jupybot
  prefix: "! bot"
  allowed_users: ["alice", "*:"]
  admin_commands: [reboot]
  edit_interval_seconds: 0
  colour: blue
"""
    with pytest.raises(ConfigError) as raised:
        parse_config(text, environ={})
    errors = raised.value.errors
    assert "matrix.homeserver: expected an http(s) URL, got 'matrix.example.org'" in errors
    assert (
        "matrix.user_id: expected a Matrix user ID such as '@bot:example.org', got 'jupybot'"
        in errors
    )
    assert "matrix.prefix: expected a word without spaces such as '!jupybot', got '! bot'" in errors
    assert any(e.startswith("matrix.allowed_users[0]: expected a user ID") for e in errors)
    assert any(e.startswith("matrix.allowed_users[1]: expected a user ID") for e in errors)
    assert any(e.startswith("matrix.admin_commands[0]: expected one of help, ") for e in errors)
    assert "matrix.edit_interval_seconds: expected at least 0.2, got 0.0" in errors
    assert any(e.startswith("matrix.colour: unknown key") for e in errors)


def test_admin_commands_are_exactly_the_commands_of_the_command_layer() -> None:
    names = [spec.name for spec in COMMANDS]
    text = f"matrix:\n  admin_commands: [{', '.join(names)}, reboot]\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text, environ={})
    assert raised.value.errors == [
        f"matrix.admin_commands[{len(names)}]: expected one of {', '.join(names)}, got 'reboot'"
    ]


def test_cross_signing_is_on_by_default_and_the_recovery_key_is_a_secret() -> None:
    config = parse_config(GOOD, environ={"BOT_PASSWORD": "hunter2"})
    assert config.matrix.cross_signing is True and config.matrix.recovery_key is None
    text = GOOD + '  cross_signing: false\n  recovery_key: "${RECOVERY}"\n'
    config = parse_config(text, environ={"BOT_PASSWORD": "p", "RECOVERY": "EsTc 5rr1"})
    assert config.matrix.cross_signing is False
    assert config.matrix.recovery_key is not None
    assert config.matrix.recovery_key.reveal() == "EsTc 5rr1"
    assert "EsTc" not in repr(config.matrix)
    assert config.matrix.recovery_key in config.secrets
    with pytest.raises(ConfigError) as raised:
        parse_config(GOOD + "  cross_signing: sometimes\n", environ={})
    assert any(e.startswith("matrix.cross_signing: expected") for e in raised.value.errors)

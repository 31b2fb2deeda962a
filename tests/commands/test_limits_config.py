"""The busy-room keys of the `matrix:` and `discord:` sections: defaults, values, mistakes."""

from __future__ import annotations

import pytest

from jupybot.commands import ChatLimits
from jupybot.config import ConfigError, parse_config


def test_defaults_are_the_command_layers() -> None:
    config = parse_config("matrix: {}\ndiscord: {}\n", environ={})
    limits = ChatLimits()
    for section in (config.matrix, config.discord):
        assert section.commands_per_minute == limits.commands_per_minute
        assert section.command_burst == limits.command_burst
        assert section.rerun_window_seconds == limits.rerun_window_seconds


def test_values_and_mistakes_with_their_key_paths() -> None:
    good = parse_config(
        "discord:\n  commands_per_minute: 0\n  command_burst: 3\n  rerun_window_seconds: 60\n",
        environ={},
    ).discord
    assert (good.commands_per_minute, good.command_burst, good.rerun_window_seconds) == (0, 3, 60)
    with pytest.raises(ConfigError) as raised:
        parse_config(
            "matrix:\n  commands_per_minute: -1\n  command_burst: 0\n"
            "discord:\n  rerun_window_seconds: forever\n",
            environ={},
        )
    message = "\n".join(raised.value.errors)
    for key in (
        "matrix.commands_per_minute",
        "matrix.command_burst",
        "discord.rerun_window_seconds",
    ):
        assert key in message

"""The composition root: which parts are built, in which order, and what each is handed."""

from __future__ import annotations

from pathlib import Path

from jupybot.app import build_service, summarize
from jupybot.config import Config, parse_config
from jupybot.discord import DiscordPart
from jupybot.kernels import KernelsPart
from jupybot.matrix import MatrixPart
from jupybot.reactor import installed_reactor

CHAT = """
matrix:
  homeserver: "http://127.0.0.1:1"
  user_id: "@jupybot:example.org"
  access_token: "matrix-token-for-tests"
  contact_room: "!contact:example.org"
discord:
  token: "discord-token-for-tests"
  owner_id: 42
"""


def config_in(tmp_path: Path, text: str = "") -> Config:
    storage = f"storage: {{path: {str(tmp_path / 'var')!r}}}\n"
    return parse_config(storage + "gateway: {url: 'http://127.0.0.1:1'}\n" + text, environ={})


def test_parts_are_built_in_start_order_and_unconfigured_ones_are_disabled(
    tmp_path: Path,
) -> None:
    top = build_service(config_in(tmp_path), installed_reactor())
    assert top.statuses() == {
        "sandbox": "starting",
        "kernels": "starting",
        "terminal": "starting",
        "contact": "starting",
        "matrix": "disabled",
        "discord": "disabled",
        "metrics": "disabled",
        "web": "starting",
    }


def test_both_chat_bots_run_code_on_the_kernels_part(tmp_path: Path) -> None:
    top = build_service(config_in(tmp_path, CHAT), installed_reactor())
    kernels = top.getServiceNamed("kernels")
    matrix = top.getServiceNamed("matrix")
    discord = top.getServiceNamed("discord")
    assert isinstance(kernels, KernelsPart)
    assert isinstance(matrix, MatrixPart) and isinstance(discord, DiscordPart)
    assert matrix.kernels is kernels.manager
    assert discord.commands.kernels is kernels.manager


def test_contact_messages_go_to_every_configured_chat_else_to_the_file(tmp_path: Path) -> None:
    assert "contact: POST /contact, delivered to file" in summarize(config_in(tmp_path)).lines
    assert "contact: POST /contact, delivered to discord, matrix" in (
        summarize(config_in(tmp_path, CHAT)).lines
    )
    chosen = CHAT + "contact: {deliver_to: [matrix]}\n"
    assert (
        "contact: POST /contact, delivered to matrix"
        in summarize(config_in(tmp_path, chosen)).lines
    )

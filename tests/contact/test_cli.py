"""`python -m jupybot.contact list|retry`: the owner's view of what the store holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytest_twisted

from jupybot.contact.cli import main
from jupybot.contact.part import database_path
from jupybot.contact.store import ContactStore, NewMessage
from jupybot.state import StateDirectory
from tests.contact.stores import running_store
from tests.harness import jupybot_config


@pytest_twisted.ensureDeferred
async def test_list_shows_what_waits_and_retry_puts_failures_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(jupybot_config(tmp_path))
    assert main(["list", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "No contact messages yet.\n"

    state = StateDirectory(tmp_path / "var")
    state.ensure()
    async with running_store(database_path(state), ContactStore) as store:
        first = await store.add(
            NewMessage("Ada", "ada@x.org", "Hi", "one", "10.0.0.1"), ("discord",)
        )
        second = await store.add(
            NewMessage("Bob", "bob@x.org", None, "two", "10.0.0.2"), ("discord", "matrix")
        )
        await store.delivered(first.id, "discord")
        await store.attempt_failed(second.id, "discord", "the owner refuses DMs", final=True)
        await store.attempt_failed(second.id, "matrix", "not connected", final=False)

    assert main(["list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    when = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    assert len(lines) == 4
    assert re.fullmatch(rf"#2 {when} Bob <bob@x\.org>", lines[0])
    assert lines[1] == "    discord: failed after 1 attempt(s): the owner refuses DMs"
    assert re.fullmatch(rf"#2 {when} Bob <bob@x\.org>", lines[2])
    assert lines[3] == "    matrix: pending after 1 attempt(s): not connected"

    assert main(["retry", "--config", str(config)]) == 0
    assert capsys.readouterr().out == (
        "1 failed delivery(ies) will be tried again at the next start.\n"
    )
    assert main(["list", "--config", str(config)]) == 0
    assert "discord: pending after 1 attempt(s)" in capsys.readouterr().out

"""`twistd jupybot` with a `matrix:` section: the bot runs in the real server process."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.harness import JupybotProcess, jupybot_config
from tests.peers.synapse import MatrixUser, Synapse

from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


@asyncio_test
async def test_twistd_runs_the_matrix_bot(
    synapse: Synapse, alice: MatrixUser, alice_client: UserClient, tmp_path: Path
) -> None:
    account = synapse.register(synapse.unique_localpart("twistdbot"))
    config = jupybot_config(
        tmp_path,
        "matrix:\n"
        f"  homeserver: {synapse.base_url}\n"
        f'  user_id: "{account.user_id}"\n'
        '  password: "${TEST_BOT_PASSWORD}"\n'
        f'  allowed_users: ["{alice.user_id}"]\n',
    )
    process = JupybotProcess(config, tmp_path, extra_env={"TEST_BOT_PASSWORD": account.password})
    try:
        await asyncio.to_thread(process.wait_for, r"matrix: logged in as", 60)
        room = await alice_client.create_room(invite=[account.user_id])
        await alice_client.wait_until(lambda: alice_client.joined(room, account.user_id))
        prefix = "!" + account.localpart
        help_id = await alice_client.send(room, f"{prefix} help")
        await alice_client.answer(room, help_id, f"{prefix} run CODE")
    finally:
        status = await asyncio.to_thread(process.stop)
    # twistd ends with the signal it was stopped by, after a clean shutdown.
    assert status == -signal.SIGTERM, process.output()
    assert "did not stop cleanly" not in process.output()
    assert "matrix: running" in process.output()
    assert account.password not in process.output()
    session = (tmp_path / "var" / "matrix-session.json").stat()
    assert session.st_mode & 0o077 == 0

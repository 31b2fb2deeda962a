"""Files in and out of a room's kernel through Matrix: a real Synapse, the bot, a real Kernel
Gateway, in a plain and an encrypted room.

`!bot put` replying to an m.file writes it into the kernel's folder (downloaded through
authenticated media, decrypted in an encrypted room), where pandas reads it; `!bot get PATH`
sends a file the kernel wrote back as an m.file (encrypted in an encrypted room); each refusal
is said in the room: a file too big (not downloaded), a file that is not a notebook,
``../../etc/passwd`` and a link planted out of the kernel's folder.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from jupybot.config.commands import NotebooksConfig
from jupybot.kernels import KernelManager
from tests.peers.synapse import MatrixUser, Synapse

from .conftest import BotRunner
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers

SCORES = b"name,score\nada,3\nbob,4\n"


@pytest.fixture
def kernels(gateway_kernels: KernelManager) -> KernelManager:
    return gateway_kernels


async def _file_reply(person: UserClient, room: str, command_id: str) -> dict[str, Any]:
    content: dict[str, Any] = await person.wait_until(
        lambda: next(
            (
                r["content"]
                for r in person.replies_to(room, command_id)
                if r["content"].get("msgtype") == "m.file"
            ),
            None,
        ),
        within=60,
    )
    return content


async def _files_in_and_out(person: UserClient, room: str, encrypted: bool) -> None:
    file_id = await person.send_file(room, "scores.csv", SCORES, "text/csv", encrypt=encrypted)
    put_id = await person.send(room, "!bot put", reply_to=file_id)
    saved = await person.answer(room, put_id, "📥 Saved", within=60)
    # (the kernels of both rooms work in one folder: the second replaces the first's file)
    assert "/scores.csv (23 bytes)" in saved["content"]["body"]
    run_id = await person.send(
        room,
        "!bot run\n```\nimport pandas as pd\nprint(pd.read_csv('scores.csv').score.sum())\n```",
    )
    ran = await person.answer(room, run_id, "✅ done", within=60)
    assert ran["content"]["body"].startswith("```\n7\n```")

    name = f"report-{uuid.uuid4().hex[:8]}.txt"
    wrote_id = await person.send(room, f"!bot run open('{name}', 'w').write('kernel wrote this')")
    await person.answer(room, wrote_id, "✅ done")
    get_id = await person.send(room, f"!bot get {name}")
    sent = await _file_reply(person, room, get_id)
    assert sent["filename"] == name
    assert ("file" in sent) is encrypted
    assert await person.file_data(sent) == b"kernel wrote this"

    # Refusals, each said in the room.
    refused_id = await person.send(room, "!bot get ../../etc/passwd")
    refused = await person.answer(room, refused_id, "❌")
    assert refused["content"]["body"].startswith("❌ '..' is not allowed in a path")
    link = f"passwd-{uuid.uuid4().hex[:8]}"
    plant_id = await person.send(
        room, f"!bot run __import__('os').symlink('/etc/passwd', '{link}')"
    )
    await person.answer(room, plant_id, "✅ done")
    link_id = await person.send(room, f"!bot get {link}")
    refused = await person.answer(room, link_id, "❌")
    assert refused["content"]["body"].startswith(f"❌ {link} is a symbolic link")
    assert not [
        r for r in person.replies_to(room, link_id) if r["content"].get("msgtype") == "m.file"
    ]
    big_id = await person.send_file(
        room, "big.csv", b"x" * (1024 * 1024 + 1), "text/csv", encrypt=encrypted
    )
    too_big_id = await person.send(room, "!bot put", reply_to=big_id)
    too_big = await person.answer(room, too_big_id, "❌")
    assert too_big["content"]["body"] == (
        "❌ That file is 1,048,577 bytes: 'put' takes files of up to 1,048,576 bytes."
    )
    not_notebook_id = await person.send(room, "!bot run", reply_to=file_id)
    not_notebook = await person.answer(room, not_notebook_id, "❌")
    assert not_notebook["content"]["body"] == (
        "❌ That file is not a Jupyter notebook: it is not JSON."
    )


@asyncio_test
async def test_put_and_get_in_a_plain_room(bot: BotRunner, alice_client: UserClient) -> None:
    bot.notebooks = NotebooksConfig(file_mb=1)
    await bot.start(commands_per_minute=0)
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    await _files_in_and_out(alice_client, room, encrypted=False)


@asyncio_test
async def test_put_and_get_in_an_encrypted_room(
    bot: BotRunner, synapse: Synapse, alice: MatrixUser, tmp_path: Path
) -> None:
    (tmp_path / "alice-store").mkdir()
    person = UserClient(synapse, alice, store=tmp_path / "alice-store")
    await person.start()
    try:
        bot.notebooks = NotebooksConfig(file_mb=1)
        await bot.start(encryption=True, commands_per_minute=0)
        room = await person.create_room(invite=[bot.user_id], encrypted=True)
        await person.wait_until(lambda: person.joined(room, bot.user_id))
        await _files_in_and_out(person, room, encrypted=True)
    finally:
        await person.stop()

"""The Matrix bot against a real Synapse, with a real matrix-nio client as the person."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers.synapse import MatrixUser, Synapse

from .conftest import BotRunner
from .kernels_double import CannedKernels
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


@asyncio_test
async def test_invite_join_help_and_run(bot: BotRunner, alice_client: UserClient) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    help_id = await alice_client.send(room, "!bot help")
    reply = await alice_client.answer(room, help_id, "Commands:")
    content = reply["content"]
    assert content["msgtype"] == "m.notice"
    assert "!bot run CODE" in content["body"]
    assert content["format"] == "org.matrix.custom.html"
    assert content["m.mentions"] == {}
    run_id = await alice_client.send(room, "!bot run 1+1")
    answer = await alice_client.answer(room, run_id, "✅ done")
    assert "echo: 1+1" in answer["content"]["body"]
    assert "<pre><code>echo: 1+1</code></pre>" in answer["content"]["formatted_body"]


@asyncio_test
async def test_the_documented_prefix_works_beside_the_bots_own(
    bot: BotRunner, alice_client: UserClient
) -> None:
    """The README says `!jupybot`; the bot's own prefix (`!` + its localpart unless set) too."""
    await bot.start(prefix=None)
    assert bot.account.localpart.startswith("bot")
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    documented = await alice_client.send(room, "!jupybot run 2+2")
    await alice_client.answer(room, documented, "echo: 2+2")
    own = await alice_client.send(room, f"!{bot.account.localpart} run 3+3")
    await alice_client.answer(room, own, "echo: 3+3")


@asyncio_test
async def test_direct_chat_needs_no_prefix(bot: BotRunner, alice_client: UserClient) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id], direct=True)
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    run_id = await alice_client.send(room, "run 6*7")
    await alice_client.answer(room, run_id, "echo: 6*7")
    hello_id = await alice_client.send(room, "hello")
    await alice_client.answer(room, hello_id, "Unknown command 'hello'. Try 'help'")


@asyncio_test
async def test_invites_from_strangers_are_declined_and_refusals_rate_limited(
    bot: BotRunner, alice_client: UserClient, mallory_client: UserClient
) -> None:
    await bot.start()
    theirs = await mallory_client.create_room(invite=[bot.user_id])
    ours = await alice_client.create_room(invite=[bot.user_id, mallory_client.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(ours, bot.user_id))
    await mallory_client.join(ours)
    await alice_client.wait_until(lambda: alice_client.joined(ours, mallory_client.user_id))
    first = await mallory_client.send(ours, "!bot run 1")
    second = await mallory_client.send(ours, "!bot run 2")
    await alice_client.answer(ours, first, "is not allowed to use this bot")
    # Alice's command after Mallory's second one: once it is answered, the second was seen.
    mine = await alice_client.send(ours, "!bot run 3")
    await alice_client.answer(ours, mine, "echo: 3")
    assert alice_client.replies_to(ours, second) == []
    assert ("execute", f"matrix:{ours}", "1") not in bot.kernels.calls  # type: ignore[attr-defined]
    # The stranger's room: the bot left (declined) instead of joining.
    await mallory_client.wait_for(
        lambda room, e: (
            room == theirs
            and e.get("state_key") == bot.user_id
            and e["content"].get("membership") == "leave"
        )
    )
    assert not mallory_client.joined(theirs, bot.user_id)


@asyncio_test
async def test_streaming_output_edits_one_reply(bot: BotRunner, alice_client: UserClient) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    assert isinstance(bot.kernels, CannedKernels)
    run_id = await alice_client.send(room, "!bot run stream 3")
    # Each line is printed once the one before is shown: line 0 in the reply posted after a
    # second, line 1 in an edit a second later (one edit a second at most), line 2 at the end.
    for shown in ("line 0", "line 1"):
        await alice_client.answer(room, run_id, shown)
        bot.kernels.print_next_line()
    final = await alice_client.answer(room, run_id, "✅ done")
    assert "line 0\nline 1\nline 2" in final["content"]["body"]
    replies = alice_client.replies_to(room, run_id)
    assert len(replies) == 1
    edits = alice_client.edits_of(room, replies[0]["event_id"])
    assert [e["content"]["m.new_content"]["body"].split("```")[1] for e in edits] == [
        "\nline 0\nline 1\n",
        "\nline 0\nline 1\nline 2\n",
    ]
    assert all(e["content"]["body"].startswith("* ") for e in edits)
    assert "⏳ running…" in edits[0]["content"]["m.new_content"]["body"]
    assert "✅ done" in edits[1]["content"]["m.new_content"]["body"]


@asyncio_test
async def test_input_answered_by_the_next_message(bot: BotRunner, alice_client: UserClient) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    run_id = await alice_client.send(room, "!bot run ask Your name?")
    await alice_client.answer(room, run_id, "for input")
    await alice_client.send(room, "Alice")
    final = await alice_client.answer(room, run_id, "✅ done")
    assert "got Alice" in final["content"]["body"]


@asyncio_test
async def test_images_errors_and_long_output(bot: BotRunner, alice_client: UserClient) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    image_id = await alice_client.send(room, "!bot run image")
    _, image = await alice_client.wait_for(
        lambda r, e: r == room and e["content"].get("msgtype") == "m.image"
    )
    assert image["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == image_id
    assert image["content"]["info"]["mimetype"] == "image/png"
    assert (image["content"]["info"]["w"], image["content"]["info"]["h"]) == (1, 1)
    from .kernels_double import tiny_png

    assert await alice_client.download(image["content"]["url"]) == tiny_png()

    fail_id = await alice_client.send(room, "!bot run fail")
    failed = await alice_client.answer(room, fail_id, "❌ error")
    assert failed["content"]["body"].startswith("ValueError: bad\n")
    assert "\x1b" not in failed["content"]["body"]

    long_id = await alice_client.send(room, "!bot run long")
    await alice_client.answer(room, long_id, "the whole output follows as a file")
    _, attachment = await alice_client.wait_for(
        lambda r, e: r == room and e["content"].get("msgtype") == "m.file"
    )
    data = await alice_client.download(attachment["content"]["url"])
    assert data.decode().count("\n") == 2000


@asyncio_test
async def test_restart_neither_reruns_nor_misses(bot: BotRunner, alice_client: UserClient) -> None:
    part = await bot.start()
    assert part.bot is not None
    device = part.bot.client.device_id
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    before = await alice_client.send(room, "!bot run before")
    await alice_client.answer(room, before, "echo: before")
    await bot.stop()

    while_down = await alice_client.send(room, "!bot run while-down")
    part = await bot.start()
    assert part.bot is not None and part.bot.client.device_id == device
    await alice_client.answer(room, while_down, "echo: while-down")
    after = await alice_client.send(room, "!bot run after")
    await alice_client.answer(room, after, "echo: after")
    executed = [c[2] for c in bot.kernels.calls if c[0] == "execute"]  # type: ignore[attr-defined]
    assert executed == ["before", "while-down", "after"]
    assert len(alice_client.replies_to(room, before)) == 1


@asyncio_test
async def test_commands_from_before_the_first_join_never_run(
    bot: BotRunner, alice_client: UserClient
) -> None:
    room = await alice_client.create_room(invite=[])
    await alice_client.send(room, "!bot run too-early")
    await alice_client.invite(room, bot.user_id)
    await bot.start()
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    now = await alice_client.send(room, "!bot run now")
    await alice_client.answer(room, now, "echo: now")
    executed = [c[2] for c in bot.kernels.calls if c[0] == "execute"]  # type: ignore[attr-defined]
    assert executed == ["now"]


@asyncio_test
async def test_encrypted_room_without_encryption_is_told_once(
    bot: BotRunner, alice_client: UserClient
) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id], encrypted=True)
    _, notice = await alice_client.wait_for(
        lambda r, e: r == room and e.get("sender") == bot.user_id and e["type"] == "m.room.message"
    )
    assert "cannot read the messages here" in notice["content"]["body"]
    assert "matrix.encryption: true" in notice["content"]["body"]
    await bot.stop()
    await bot.start()
    probe = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(probe, bot.user_id))
    probe_id = await alice_client.send(probe, "!bot run probe")
    await alice_client.answer(probe, probe_id, "echo: probe")
    told = [
        e
        for r, e in alice_client.events
        if r == room and e.get("sender") == bot.user_id and e["type"] == "m.room.message"
    ]
    assert len(told) == 1


@asyncio_test
async def test_encrypted_room_with_encryption(
    bot: BotRunner, synapse: Synapse, alice: MatrixUser, tmp_path: Path
) -> None:
    (tmp_path / "alice-store").mkdir()
    person = UserClient(synapse, alice, store=tmp_path / "alice-store")
    await person.start()
    try:
        await bot.start(encryption=True)
        room = await person.create_room(invite=[bot.user_id], encrypted=True)
        await person.wait_until(lambda: person.joined(room, bot.user_id))
        run_id = await person.send(room, "!bot run hidden")
        answer = await person.answer(room, run_id, "echo: hidden")
        assert answer["content"]["msgtype"] == "m.notice"
        # It went over the wire encrypted, both ways.
        assert answer["event_id"] in person.decrypted
        # A restart keeps the device and its keys: the bot still reads the room.
        await bot.stop()
        await bot.start()
        again = await person.send(room, "!bot run again")
        await person.answer(room, again, "echo: again")
    finally:
        await person.stop()


@asyncio_test
async def test_password_prompt_is_asked_in_a_direct_chat(
    bot: BotRunner, alice_client: UserClient
) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    run_id = await alice_client.send(room, "!bot run secret Password:")
    await alice_client.answer(room, run_id, "I have asked in a direct message")
    direct = await alice_client.wait_until(
        lambda: next((r for r in alice_client.invites if r != room), None)
    )
    await alice_client.join(direct)
    await alice_client.wait_for(
        lambda r, e: r == direct and "Password:" in e.get("content", {}).get("body", "")
    )
    await alice_client.send(direct, "hunter22")
    final = await alice_client.answer(room, run_id, "✅ done")
    assert "got 8 characters" in final["content"]["body"]
    assert not any(
        "hunter22" in e.get("content", {}).get("body", "")
        for r, e in alice_client.events
        if r == room
    )


@asyncio_test
async def test_shutdown_cancels_running_executions_and_says_so(
    bot: BotRunner, alice_client: UserClient
) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    assert isinstance(bot.kernels, CannedKernels)
    run_id = await alice_client.send(room, "!bot run stream 100")
    for _ in range(2):
        bot.kernels.print_next_line()
    await alice_client.answer(room, run_id, "line 2")
    await bot.stop()
    final = await alice_client.answer(room, run_id, "Cancelled: the bot is stopping.")
    assert "line 2" in final["content"]["body"]


@asyncio_test
async def test_a_long_downtime_gap_is_read_back(bot: BotRunner, alice_client: UserClient) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    await bot.stop()
    first = await alice_client.send(room, "!bot run first")
    for i in range(110):  # more than one sync's timeline (100 events)
        await alice_client.send(room, f"chatter {i}")
    last = await alice_client.send(room, "!bot run last")
    await bot.start()
    await alice_client.answer(room, last, "echo: last")
    await alice_client.answer(room, first, "echo: first")
    executed = [c[2] for c in bot.kernels.calls if c[0] == "execute"]  # type: ignore[attr-defined]
    assert executed == ["first", "last"]


@asyncio_test
async def test_password_prompt_in_an_encrypted_direct_chat(
    bot: BotRunner, synapse: Synapse, alice: MatrixUser, tmp_path: Path
) -> None:
    (tmp_path / "alice-store").mkdir()
    person = UserClient(synapse, alice, store=tmp_path / "alice-store")
    await person.start()
    try:
        await bot.start(encryption=True)
        room = await person.create_room(invite=[bot.user_id], encrypted=True)
        await person.wait_until(lambda: person.joined(room, bot.user_id))
        run_id = await person.send(room, "!bot run secret Password:")
        await person.answer(room, run_id, "I have asked in a direct message")
        direct = await person.wait_until(
            lambda: next((r for r in person.invites if r != room), None)
        )
        await person.join(direct)
        _, prompt = await person.wait_for(
            lambda r, e: r == direct and "Password:" in e.get("content", {}).get("body", "")
        )
        assert prompt["event_id"] in person.decrypted
        await person.send(direct, "hunter22")
        final = await person.answer(room, run_id, "✅ done")
        assert "got 8 characters" in final["content"]["body"]
    finally:
        await person.stop()

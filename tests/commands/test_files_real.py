"""`put` and `get` against a real Kernel Gateway: files in and out of the kernel's folder, every
refusal, and the confinement attacked by a kernel user who plants links.

The gateway works in a folder two levels below / (``/tmp/jupybot-files-…``), so that
``../../etc/passwd`` from the kernel's folder is /etc/passwd itself. Each attack runs twice:
with the protection (it must be refused, and nothing outside the folder read or written) and
with it switched off (a kernel helper that opens paths as given, following links, and no check
of the typed path), where the same attack must succeed: that shows the test fails without the
protection.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from jupybot.commands import (
    ChatCommands,
    IncomingAttachment,
    IncomingMessage,
)
from jupybot.commands import files as files_module
from jupybot.commands.notebook import NotebookLimits
from tests.peers.kernel_gateway import KernelGateway

from .fakes import FakeConversation
from .real import bot_on

pytestmark = pytest.mark.peers

ALICE = "@alice:example.org"
LIMIT = 2 * 1024 * 1024
PASSWD = Path("/etc/passwd")

# The protection switched off: the kernel helper opens the path as given under the kernel's
# folder (following links, '..' and absolute paths included) and checks nothing on the way.
UNPROTECTED_HELPER = (
    files_module.HELPER_SOURCE
    + """

def _names(root, path):
    return [path]


def _folder(root, names, create):
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY)


def _target_kind(folder, name):
    return None


_READ_FLAGS = os.O_RDONLY
"""
)


@pytest.fixture(scope="module")
def shallow_gateway() -> Iterator[KernelGateway]:
    """A Kernel Gateway (and so its kernels) working in /tmp/jupybot-files-…/."""
    workdir = Path(tempfile.mkdtemp(prefix="jupybot-files-"))
    gateway = KernelGateway(workdir)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Room:
    bot: ChatCommands
    conversation: FakeConversation
    folder: Path  # the kernel's folder, as this host sees it
    ids: Any

    def say(self, text: str, *attachments: IncomingAttachment) -> Deferred[None]:
        message = IncomingMessage(
            f"$c{next(self.ids)}", ALICE, text, self.conversation, attachments=attachments
        )
        return self.bot.handle(message).addTimeout(60, reactor)

    def last(self) -> str:
        return self.conversation.texts()[-1]


@pytest_twisted.async_yield_fixture
async def room(shallow_gateway: KernelGateway, tmp_path: Path) -> AsyncIterator[Room]:
    kernels, bot = bot_on(shallow_gateway, NotebookLimits(transfer_bytes=LIMIT))
    conversation = FakeConversation(key=f"matrix:!files-{tmp_path.name}:example.org")
    yield Room(bot, conversation, shallow_gateway.workdir, iter(range(1000)))
    await kernels.shutdown_all()


def unprotected(monkeypatch: pytest.MonkeyPatch, room: Room) -> None:
    """Switch the protection off: no check of typed paths, a helper that follows anything."""
    monkeypatch.setattr(files_module, "typed_path", lambda text: text.strip())
    room.bot._files._helper = UNPROTECTED_HELPER


def csv(name: str, data: bytes) -> IncomingAttachment:
    return IncomingAttachment(name, "text/csv", data)


@pytest_twisted.ensureDeferred
async def test_a_csv_put_is_read_by_pandas_and_a_written_file_comes_back(room: Room) -> None:
    await room.say("!jupybot put", csv("scores.csv", b"name,score\nada,3\nbob,4\n"))
    assert room.last() == f"📥 Saved {room.folder}/scores.csv (23 bytes)."
    await room.say(
        "!jupybot run\n```\nimport pandas as pd\n"
        "frame = pd.read_csv('scores.csv')\nprint(frame.score.sum())\n```"
    )
    assert room.last().startswith("```\n7\n```\n\n✅ done")
    # put NAME, into a folder it makes, and again over the same name.
    await room.say("!jupybot put data/in.csv", csv("whatever.csv", b"a\n1\n"))
    assert room.last() == f"📥 Saved {room.folder}/data/in.csv (4 bytes)."
    await room.say("!jupybot put data/in.csv", csv("whatever.csv", b"a\n2\n"))
    assert room.last().endswith("; it replaced the file that was there.")
    assert (room.folder / "data" / "in.csv").read_bytes() == b"a\n2\n"
    # A name as sent is sanitised: no folders, no hidden file, odd characters replaced.
    await room.say("!jupybot put", csv("../../.secret plan;rm -rf.csv", b"x"))
    assert room.last() == f"📥 Saved {room.folder}/secret plan_rm -rf.csv (1 byte)."
    # The silent transfers left no trace in the kernel: no history, no execution count.
    await room.say("!jupybot run print(len(In), sorted(k for k in globals() if 'jupybot' in k))")
    assert room.last().startswith("```\n3 []\n```\n\n✅ done · [2]")

    await room.say(
        "!jupybot run\n```\nimport os\nos.makedirs('out', exist_ok=True)\n"
        "frame.to_csv('out/report.csv', index=False)\n```"
    )
    await room.say("!jupybot get out/report.csv")
    sent = room.conversation.files[-1]
    assert (sent.filename, sent.mimetype) == ("report.csv", "text/csv")
    assert sent.data == b"name,score\nada,3\nbob,4\n"

    # A file bigger than one piece goes both ways in pieces, byte for byte.
    big = os.urandom(1_300_000)
    await room.say(
        "!jupybot put blob.bin", IncomingAttachment("b", "application/octet-stream", big)
    )
    assert room.last().startswith("📥 Saved")
    await room.say("!jupybot get ./blob.bin")
    assert room.conversation.files[-1].data == big
    assert not [p for p in room.folder.iterdir() if p.name.startswith(".jupybot-put-")]


@pytest_twisted.ensureDeferred
async def test_every_refusal_says_why(room: Room) -> None:
    too_big = IncomingAttachment("huge.csv", "text/csv", b"", size=LIMIT + 1)
    await room.say("!jupybot put", too_big)
    assert room.last() == (
        "❌ That file is 2,097,153 bytes: 'put' takes files of up to 2,097,152 bytes."
    )
    await room.say("!jupybot put")
    assert room.last().startswith("❌ Send a file with 'put'")
    await room.say("!jupybot get nothing-here.txt")
    assert room.last() == "❌ There is no kernel here yet, so no file to get: 'run' starts one."
    await room.say(f"!jupybot run open('big.bin', 'wb').write(b'x' * {LIMIT + 1})")
    await room.say("!jupybot get big.bin")
    assert room.last() == (
        "❌ big.bin is 2,097,153 bytes: 'get' sends files of up to 2,097,152 bytes."
    )
    await room.say("!jupybot get nothing-here.txt")
    assert room.last() == f"❌ There is no nothing-here.txt in the kernel's folder ({room.folder})."
    await room.say("!jupybot get no/such/file.txt")
    assert room.last() == f"❌ There is no no in the kernel's folder ({room.folder})."
    await room.say("!jupybot run import os; os.makedirs('adir', exist_ok=True); os.mkfifo('pipe')")
    await room.say("!jupybot get adir")
    assert room.last() == "❌ adir is a folder: I only send files."
    await room.say("!jupybot get pipe")
    assert room.last().startswith("❌ pipe is not a regular file (a pipe, a socket or a device)")
    await room.say("!jupybot put adir", csv("x.csv", b"1"))
    assert room.last() == "❌ adir is a folder: I only write files."
    await room.say("!jupybot get ../../etc/passwd")
    assert room.last().startswith("❌ '..' is not allowed in a path")
    await room.say("!jupybot get /etc/passwd")
    assert room.last() == (
        f"❌ /etc/passwd is outside the kernel's folder ({room.folder}): "
        "I only send files from there."
    )
    await room.say("!jupybot run open('h1', 'w').write('x'); os.link('h1', 'h2')")
    await room.say("!jupybot get h2")
    assert room.last().startswith("❌ h2 has other names (hard links)")


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("protected", [True, False], ids=["protected", "unprotected"])
async def test_paths_out_of_the_folder_and_planted_links(
    room: Room, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protected: bool
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the kernel's folder\n")
    if not protected:
        unprotected(monkeypatch, room)
    passwd = PASSWD.read_bytes()  # noqa: ASYNC240 (a small file, before anything runs)
    await room.say(
        "!jupybot run\n```\nimport os\n"
        f"for name in ('passwd-link', 'out-{tmp_path.name}'):\n"
        "    if os.path.lexists(name): os.unlink(name)\n"
        "os.symlink('/etc/passwd', 'passwd-link')\n"
        f"os.symlink({str(outside)!r}, 'out-{tmp_path.name}')\n```"
    )
    link = f"out-{tmp_path.name}"
    attacks = [
        ("../../etc/passwd", passwd, "❌ '..' is not allowed in a path"),
        ("passwd-link", passwd, "❌ passwd-link is a symbolic link"),
        (f"{link}/secret.txt", b"outside the kernel's folder\n", f"❌ {link} is a symbolic link"),
    ]
    for path, stolen, refusal in attacks:
        files_before = len(room.conversation.files)
        await room.say(f"!jupybot get {path}")
        got = room.conversation.files[files_before:]
        if protected:
            assert not got, path
            assert room.last().startswith(refusal), room.last()
        else:
            assert [a.data for a in got] == [stolen], path
    await room.say(f"!jupybot put {link}/planted.csv", csv("x.csv", b"written outside\n"))
    assert (outside / "planted.csv").exists() is not protected
    if protected:
        assert room.last() == (
            f"❌ {link} is a symbolic link: I do not follow links, which could lead out of the "
            f"kernel's folder ({room.folder})."
        )
        # A link planted where the file goes is not written through either.
        await room.say("!jupybot put passwd-link", csv("x.csv", b"root::0:0::/:/bin/sh\n"))
        assert room.last().startswith("❌ passwd-link is a symbolic link")
        assert PASSWD.read_bytes() == passwd  # noqa: ASYNC240

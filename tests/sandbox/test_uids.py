"""A host uid of its own per terminal session (``sandbox.uids``, when jupybot runs as root):
what the kernel counts per user is counted per session (issue 24).

One session takes every inotify instance its user may have (fs.inotify.max_user_instances);
another session still makes one. With ``sandbox.uids: none`` every session is ``nobody`` and
the second gets none: the test fails with the protection switched off. The pool itself, and
the check at start, are tested on their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from jupybot.config.sandbox import SandboxConfig, parse_uid_range
from jupybot.config.terminal import TerminalConfig
from jupybot.sandbox import Sandbox, SandboxProfile
from jupybot.sandbox.uids import UidPool, uid_range_problem, uids_in_use
from jupybot.terminal import TerminalSessions
from tests.kernels.test_gateway import timeboxed
from tests.sandbox.test_ptys import Verdict, program


def prepared(uids: str) -> Iterator[Sandbox]:
    sandbox = Sandbox(SandboxConfig(uids=uids))
    sandbox.prepare()
    try:
        yield sandbox
    finally:
        sandbox.close()


async def second_session_after_a_hoarder(uids: str) -> tuple[dict[str, Any], dict[str, Any], set[int | None]]:  # fmt: skip
    """What a session hoarding inotify instances held, what the next one got, and their uids."""
    for sandbox in prepared(uids):
        sessions = TerminalSessions(
            reactor,
            TerminalConfig(),
            {p.name: p for p in (program("hoard_inotify"), program("watch_files"))},
            sandbox,
        )
        try:
            hoarder, visitor = Verdict(), Verdict()
            first = sessions.open("hoard_inotify", 80, 24, "192.0.2.1", hoarder)
            held = await timeboxed(hoarder.said, 60)
            second = sessions.open("watch_files", 80, 24, "192.0.2.2", visitor)
            got = await timeboxed(visitor.said, 60)
            return held, got, {s.pty._launch.uid for s in (first, second)}
        finally:
            await sessions.close_all()
    raise AssertionError("unreachable")


@pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes run as jupybot's own user unless root")
@pytest_twisted.ensureDeferred
async def test_one_session_at_its_inotify_limit_leaves_another_its_own() -> None:
    held, got, uids = await second_session_after_a_hoarder(SandboxConfig().uids)
    assert held["error"] == "EMFILE" and held["held"] > 100, held
    assert got == {"succeeded": True}, got
    assert len(uids) == 2 and None not in uids, uids
    # Every session as nobody: the first took what the user may have.
    held, got, uids = await second_session_after_a_hoarder("none")
    assert got == {"succeeded": False, "error": "EMFILE"}, (held, got)
    assert uids == {None}


def test_a_uid_is_leased_once_and_comes_back_last(tmp_path: Path) -> None:
    ids = range(70000, 70003)
    pool, other = UidPool(ids, tmp_path), UidPool(ids, tmp_path)
    assert [pool.lease(), pool.lease()] == [70000, 70001]
    # Another pool over the same range (another jupybot) skips what this one holds.
    assert other.lease() == 70002
    with pytest.raises(OSError):
        other.lease()
    assert pool.leased_elsewhere(70002) and not pool.leased_elsewhere(70000)
    pool.release(70000)
    pool.release(70000)  # idempotent
    assert other.lease() == 70000
    other.release(70002)
    other.release(70000)
    assert pool.lease() == 70002  # the longest free first
    assert pool.lease() == 70000


def test_a_range_someone_has_is_refused_at_start_and_ids_in_use_left_out(tmp_path: Path) -> None:
    etc, proc = tmp_path / "etc", tmp_path / "proc"
    etc.mkdir()
    (proc / "42").mkdir(parents=True)
    ids = parse_uid_range("70000-70999")
    assert ids is not None and parse_uid_range("100-200") is None
    assert parse_uid_range("nobody") is None
    assert uid_range_problem(ids, etc) is None
    (etc / "subuid").write_text("alice:65536:65536\n")
    assert uid_range_problem(ids, etc) == "/etc/subuid gives alice ids 65536-131071"
    (etc / "subuid").unlink()
    (etc / "passwd").write_text("bob:x:70999:70999::/home/bob:/bin/sh\n")
    assert uid_range_problem(ids, etc) == "user bob has id 70999"
    (etc / "passwd").unlink()
    # In a container that maps 65536 ids: 70000 and above do not exist there.
    (etc / "uid_map").write_text("         0     100000      65536\n")
    (etc / "gid_map").write_text("         0     100000      65536\n")
    assert uid_range_problem(ids, etc, maps=etc) == (
        "id 70000 is not mapped in this user namespace (uid_map: [['0', '100000', '65536']])"
    )

    def in_use() -> dict[int, str]:
        return uids_in_use(ids, lambda uid: uid == 70500, proc)

    assert in_use() == {}
    (proc / "42" / "status").write_text("Name:\tx\nUid:\t70500\t70500\t70500\t70500\n")
    assert in_use() == {}  # a sandbox of another jupybot (it holds the uid's lock)
    (proc / "42" / "status").write_text("Name:\tx\nUid:\t70001\t70001\t70001\t70001\n")
    assert in_use() == {70001: "process 42"}
    (proc / "43").mkdir()
    (proc / "43" / "status").write_text(
        "Name:\tx\nState:\tZ (zombie)\nUid:\t70002\t70002\t70002\t70002\n"
    )
    assert in_use() == {70001: "process 42"}  # a zombie's uid is free to lease
    pool = UidPool(range(70000, 70003), tmp_path / "locks")
    pool.leave_out(in_use())
    assert [pool.lease(), pool.lease()] == [70000, 70002]


@pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes run as jupybot's own user unless root")
def test_a_program_with_writable_paths_keeps_the_sandbox_user(tmp_path: Path) -> None:
    """The owner gave its writable: paths to sandbox.user; a leased uid could not write them."""
    for sandbox in prepared(SandboxConfig().uids):
        launches = [
            sandbox.launch(SandboxProfile(argv=("/bin/true",)), name="own-uid"),
            sandbox.launch(
                SandboxProfile(argv=("/bin/true",), writable=(str(tmp_path),)), name="scores"
            ),
        ]
        assert launches[0].uid is not None and launches[1].uid is None
        assert "--reuid=65534" in launches[1].argv  # nobody
        for launch in launches:
            if launch.cgroup is not None:
                launch.cgroup.remove()
            launch.release()

"""Where session cgroups are made and what limits are written, on a cgroup tree laid out in a
temporary folder as v1 and v2 lay theirs out (the real v1 tree is used by the attack tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupybot.sandbox import CgroupLimits, Cgroups, find_cgroups
from jupybot.sandbox.cgroups import TotalLimits
from tests.harness import ROOT

LIMITS = CgroupLimits(memory_mb=64, processes=32, cpu_percent=50)


def proc_self_cgroup(proc: Path, text: str) -> Path:
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(text)
    return proc


def test_v1_sessions_nest_below_jupybots_own_groups(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    for controller, own in (("memory", "service/a"), ("pids", ""), ("cpu", "")):
        (root / controller / own).mkdir(parents=True, exist_ok=True)
        (root / controller / "tasks").write_text("")
    proc = proc_self_cgroup(tmp_path / "proc", "4:memory:/service/a\n8:pids:/\n1:cpu,cpuacct:/\n")
    (root / "cpuacct").mkdir()
    (root / "cpuacct" / "tasks").write_text("")
    cgroups = find_cgroups(pid=77, root=root, proc=proc)
    assert isinstance(cgroups, Cgroups) and cgroups.version == 1
    session = cgroups.create("python-s1", LIMITS)
    memory = root / "memory/service/a/jupybot-77/python-s1"
    assert (memory / "memory.limit_in_bytes").read_text() == str(64 * 1024 * 1024)
    assert (root / "pids/jupybot-77/python-s1/pids.max").read_text() == "32"
    assert (root / "cpu/jupybot-77/python-s1/cpu.cfs_quota_us").read_text() == "50000"
    assert (root / "cpu/jupybot-77/python-s1/cpu.cfs_period_us").read_text() == "100000"
    assert str(memory / "cgroup.procs") in session.procs_files and len(session.procs_files) == 3


def test_v1_groups_left_by_a_killed_jupybot_are_swept(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    for controller in ("memory", "pids", "cpu"):
        (root / controller / "jupybot-999999999" / "old-session").mkdir(parents=True)
        (root / controller / "jupybot-999999999" / "kernels" / "kernel-1").mkdir(parents=True)
        (root / controller / "tasks").write_text("")
    proc = proc_self_cgroup(tmp_path / "proc", "4:memory:/\n8:pids:/\n1:cpu:/\n")
    find_cgroups(pid=77, root=root, proc=proc)
    assert not (root / "pids" / "jupybot-999999999").exists()


def test_v2_delegated_moves_jupybot_to_a_leaf_and_enables_the_controllers(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    own = root / "system.slice" / "jupybot.service"
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids io\n")
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("")
    (own / "cgroup.procs").write_text("1234\n")
    # (A real cgroupfs makes a new group's files; here, those read before any write.)
    (own / "sandboxes").mkdir()
    (own / "sandboxes" / "cgroup.subtree_control").write_text("")
    proc = proc_self_cgroup(tmp_path / "proc", "0::/system.slice/jupybot.service\n")
    cgroups = find_cgroups(pid=1234, root=root, proc=proc)
    assert isinstance(cgroups, Cgroups) and cgroups.version == 2
    assert (own / "supervisor" / "cgroup.procs").read_text() == "1234"
    assert (own / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    # Every session below one group, which holds the budget of them all.
    assert (own / "sandboxes" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    cgroups.create("s1", LIMITS)
    session = own / "sandboxes" / "session-s1"
    assert (session / "memory.max").read_text() == str(64 * 1024 * 1024)
    assert (session / "pids.max").read_text() == "32"
    assert (session / "cpu.max").read_text() == "50000 100000"
    cgroups.limit_total(TotalLimits(memory_mb=2048, processes=1000))
    assert (own / "sandboxes" / "memory.max").read_text() == str(2048 * 1024 * 1024)
    assert (own / "sandboxes" / "pids.max").read_text() == "1000"
    assert cgroups.total() == TotalLimits(2048, 1000)


def test_a_delegated_group_is_its_owners_but_not_its_limits(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    for controller in ("memory", "pids", "cpu"):
        (root / controller / "jupybot-77" / "kernels").mkdir(parents=True)
        (root / controller / "tasks").write_text("")
        for name in ("cgroup.procs", "tasks", "pids.max"):
            (root / controller / "jupybot-77" / "kernels" / name).write_text("")
    proc = proc_self_cgroup(tmp_path / "proc", "4:memory:/\n8:pids:/\n1:cpu:/\n")
    cgroups = find_cgroups(pid=77, root=root, proc=proc)
    assert isinstance(cgroups, Cgroups)
    uid, gid = os.getuid() + 1, os.getgid() + 1  # someone else (the chown needs root)
    if os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
    delegated = cgroups.delegate("kernels", uid, gid)
    group = root / "pids" / "jupybot-77" / "kernels"
    assert delegated.parents["pids"] == group
    assert group.stat().st_uid == uid and (group / "cgroup.procs").stat().st_uid == uid
    assert (group / "pids.max").stat().st_uid == os.getuid()
    delegated.create("kernel-1", LIMITS)
    assert (group / "kernel-1" / "pids.max").read_text() == "32"


def test_v2_without_delegation_says_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    own = root / "user.slice"
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.controllers").write_text("memory\n")
    proc = proc_self_cgroup(tmp_path / "proc", "0::/user.slice\n")
    reason = find_cgroups(pid=1, root=root, proc=proc)
    assert reason == (f"cgroup v2 at {own} does not offer cpu, pids (delegate them: Delegate=yes)")


HOLD = """
import sys, time
held = bytearray(400 * 1024 * 1024)  # zero-filled: every page touched, charged to the group
print("held", flush=True)
time.sleep(30)
"""

TWO_SESSIONS = """
import json, subprocess, sys, time
from jupybot.config.sandbox import SandboxConfig
from jupybot.sandbox import Limits, Sandbox, SandboxProfile

sandbox = Sandbox(SandboxConfig(uids="none", total_memory_mb=int(sys.argv[1])))
sandbox.prepare()
if sandbox.cgroups is None:
    print(json.dumps({"cgroups": False}))
    sys.exit()
held, processes, launches = 0, [], []
for name in ("first", "second"):
    profile = SandboxProfile(argv=("/usr/bin/python3", "-c", sys.argv[2]),
                             limits=Limits(memory_mb=512))
    launch = sandbox.launch(profile, name=name)
    launches.append(launch)
    process = subprocess.Popen(launch.argv, env=launch.env, stdout=subprocess.PIPE, text=True)
    processes.append(process)
    if process.stdout.readline().strip() == "held":
        held += 1
time.sleep(0.5)
alive = sum(process.poll() is None for process in processes)
for process in processes:
    process.kill()
    process.wait()
for launch in launches:
    launch.cgroup.kill_all()
    while not launch.cgroup.remove():
        time.sleep(0.05)
sandbox.close()
print(json.dumps({"cgroups": True, "held": held, "alive": alive}))
"""


def sessions_holding_400_mb_each(total_memory_mb: int) -> dict[str, object]:
    """Two sandboxes (512 MB each) that each hold 400 MB, under a total budget; run by a child
    Python, whose cgroup parent is its own (jupybot-<its pid>)."""
    result = subprocess.run(
        [sys.executable, "-c", TWO_SESSIONS, str(total_memory_mb), HOLD],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
    )  # fmt: skip
    verdict: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return verdict


def test_the_total_budget_holds_sessions_within_their_own_limits() -> None:
    """Each session within its 512 MB, two together past a 600 MB budget: one is stopped (the
    kernel's OOM killer, in the budget's group); with the default budget both hold theirs."""
    verdict = sessions_holding_400_mb_each(600)
    if not verdict["cgroups"]:
        pytest.skip("no cgroups here: rlimits only, and no total budget (docs/deploy.md)")
    assert verdict["alive"] == 1, verdict
    assert sessions_holding_400_mb_each(0) == {"cgroups": True, "held": 2, "alive": 2}

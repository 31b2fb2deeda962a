"""deploy/jupybot.service in a booted systemd (systemd-nspawn, Debian 12), jupybot installed by
the commands of docs/deploy.md's "systemd" section, in their order: the unit starts, serves,
runs a visitor's program in its sandbox under the unit's hardening, and stops in time."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import aiohttp
import pytest

from ..harness import ROOT
from ..matrix.user import asyncio_test
from .machine import Installation, Machine, prepare, step_one_packages, steps, stop_prepared
from .podman import cgroup_version, commands, host_problem, missing_tools, section

pytestmark = [pytest.mark.peers, pytest.mark.timeout(1800)]

UNIT = "jupybot"


@pytest.fixture(scope="module")
def installed(timings: dict[str, float]) -> Iterator[Installation]:
    """The machine, booted, with jupybot installed by the docs' steps: prepared in a thread
    that overlaps the image build where the container tests run too (conftest.py)."""
    problem = host_problem()
    if problem:
        pytest.skip(problem)
    missing = missing_tools("systemd-nspawn", "debootstrap", "nsenter")
    assert not missing, f"{missing} missing: scripts/install-system-packages installs them"
    yield prepare(timings).result(timeout=1500)
    stop_prepared()


def ping(port: int) -> tuple[int, dict[str, object]]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def wait_for_ping(port: int, timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = ping(port)
            if status == 200:
                return body
            last = body
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"/ping not 200 within {timeout} s: {last}")


def show(machine: Machine, *properties: str) -> dict[str, str]:
    out = machine.run(["systemctl", "show", UNIT, *(f"-p{p}" for p in properties)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_the_docs_check_what_jupybot_needs_of_the_host() -> None:
    """Step 1's check is bubblewrap with what jupybot asks of it (--disable-userns writes
    /proc/sys in the sandbox), and step 1 installs what the later steps and the unit use."""
    (check,) = [c for c in steps() if "bwrap" in c]
    for flag in ("--unshare-user", "--disable-userns", "--hostname", "--proc"):
        assert flag in check, check
    for package in ("curl", "libcairo2", "git", "npm", "python3-venv", "bubblewrap"):
        assert package in step_one_packages()
    assert any(c[:1] == ["curl"] for c in steps())
    listing = [c for c in commands(section("systemd")) if "jupybot.contact" in c]
    assert listing and all("--config" in c for c in listing), listing


def test_the_docs_check_fails_where_jupybot_would(installed: Installation) -> None:
    """Where /proc/sys is read-only (here: a mount namespace of its own in the machine, as a
    container or ProtectKernelTunables= make it), step 1's check fails with a message the
    docs name with its fix."""
    (check,) = [c for c in steps() if "bwrap" in c]
    script = (
        "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
        'exec runuser -u "$0" -- "$@"'
    )
    result = installed.machine.run(
        ["unshare", "--mount", "sh", "-c", script, *check[2:]], check=False
    )
    assert result.returncode != 0, result
    said = result.stderr.strip()
    assert "max_user_namespaces: Read-only file system" in said, said
    assert "`Read-only file system` or `Permission denied` about `max_user_namespaces`" in (
        section("systemd")
    )


def test_the_unit_is_active_and_serves(installed: Installation) -> None:
    machine = installed.machine
    assert machine.run(["systemctl", "is-active", UNIT]).stdout.strip() == "active"
    body = wait_for_ping(installed.port)
    services = body["services"]
    assert isinstance(services, dict)
    assert {v for v in services.values()} == {"running", "disabled"}, body
    uid = machine.run(["id", "-u", "jupybot"]).stdout.strip()
    details = body["details"]
    assert isinstance(details, dict)
    assert str(details["sandbox"]).startswith(f"bubblewrap as uid {uid};"), details


def test_jupybot_runs_with_the_units_hardening(installed: Installation) -> None:
    machine = installed.machine
    props = show(machine, "MainPID", "Delegate", "NoNewPrivileges", "ProtectSystem")
    assert props["Delegate"] == "yes" and props["NoNewPrivileges"] == "yes", props
    pid = props["MainPID"]
    status = machine.run(["cat", f"/proc/{pid}/status"]).stdout
    assert re.search(r"^NoNewPrivs:\t1$", status, re.MULTILINE), status
    assert re.search(r"^CapBnd:\t0{16}$", status, re.MULTILINE), status
    # ProtectSystem=strict: /usr and /etc read-only for jupybot, its state directory not.
    mounts = machine.run(["cat", f"/proc/{pid}/mountinfo"]).stdout
    options = {line.split()[4]: line.split()[5] for line in mounts.splitlines()}

    def mounted(path: str) -> str:
        """The options of the mount that holds C{path} (the last of the deepest)."""
        point = max(
            (p for p in options if path == p or path.startswith(p.rstrip("/") + "/")), key=len
        )
        return options[point].split(",")[0]

    assert [mounted(p) for p in ("/usr", "/etc", "/opt/jupybot")] == ["ro"] * 3, options
    assert mounted("/var/lib/jupybot") == "rw", options


@asyncio_test
async def test_a_visitors_program_runs_in_its_sandbox_under_the_unit(
    installed: Installation,
) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"ws://127.0.0.1:{installed.port}/terminal/line"
        async with http.ws_connect(url) as ws:
            await ws.send_json({"event": "initialize", "program": "python"})
            await ws.receive_json(timeout=60)
            probe = (
                "import socket; s = open('/proc/self/status').read();"
                " print(socket.gethostname(), 'NoNewPrivs:\\t1' in s)"
            )
            await ws.send_json({"event": "command", "input": probe})
            answer = await ws.receive_json(timeout=60)
            assert answer["output"].startswith("sandbox True\n"), answer


def test_sessions_get_cgroups_of_their_own_under_the_unit(installed: Installation) -> None:
    """Delegate=yes: the unit's cgroup is the jupybot user's, and jupybot's sessions get
    groups below it. systemd delegates controllers to an unprivileged unit on cgroup v2 only."""
    machine = installed.machine
    details = wait_for_ping(installed.port)["details"]
    assert isinstance(details, dict)
    sandbox = str(details["sandbox"])
    unified = "/sys/fs/cgroup" if cgroup_version() == 2 else "/sys/fs/cgroup/unified"
    group = f"{unified}/system.slice/jupybot.service"
    owner = machine.run(["stat", "-c", "%U", group]).stdout.strip()
    assert owner == "jupybot", f"{group} belongs to {owner}: Delegate=yes did not hand it over"
    if cgroup_version() == 1:
        assert "limits: rlimits only" in sandbox, sandbox
        pytest.skip(
            "this host is cgroup v1 (hybrid): systemd delegated the unit's cgroup on the v2 "
            "hierarchy (checked), which holds no memory, pids or cpu controller here, and "
            "delegates no v1 controller to a unit with User=; per-session cgroups under the "
            "unit are checked on a cgroup v2 host only"
        )
    assert f"limits: cgroup v2 ({group}/sandboxes)" in sandbox, sandbox


def test_systemd_analyze_security_rates_the_unit_as_the_docs_say(
    installed: Installation, timings: dict[str, float]
) -> None:
    out = installed.machine.run(["systemd-analyze", "security", "--no-pager", UNIT]).stdout
    match = re.search(r"Overall exposure level for jupybot\.service: (\d+\.\d)", out)
    assert match, out[-2000:]
    timings["systemd-analyze security"] = float(match.group(1))
    documented = re.search(r"rates the unit (\d+\.\d)", section("systemd"))
    assert documented and documented.group(1) == match.group(1), match.group(0)


def test_systemctl_stop_is_prompt_and_clean(
    installed: Installation, timings: dict[str, float]
) -> None:
    """Last of the module: it stops the unit."""
    machine = installed.machine
    unit = (ROOT / "deploy" / "jupybot.service").read_text()
    match = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert match is not None
    limit = float(match.group(1))
    start = time.monotonic()
    machine.run(["systemctl", "stop", UNIT], timeout=limit + 30)
    timings["systemctl stop"] = round(time.monotonic() - start, 1)
    assert timings["systemctl stop"] < limit
    props = show(machine, "ActiveState", "Result")
    assert props == {"ActiveState": "inactive", "Result": "success"}, props
    journal = machine.run(["journalctl", "-u", UNIT, "--no-pager", "-o", "cat"]).stdout
    assert "Server Shut Down." in journal, journal[-2000:]

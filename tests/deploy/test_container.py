"""The container image, built from the Dockerfile unchanged and run as docs/deploy.md says
(podman; tests/deploy/conftest.py builds it once a run): every part runs in it, a visitor's
program in its sandbox, a kernel, the health check, a prompt and clean stop, and a contact
message kept across a new container on the same state volume."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from ..harness import ROOT, free_port
from ..matrix.user import asyncio_test
from .conftest import BUILD_SECTION, wait_for_ping, write_env_file
from .podman import (
    LABEL,
    Podman,
    cgroup_version,
    command,
    commands,
    option_values,
    replace_option,
    section,
    unsudo,
)

# A cold cache builds the base images and the image first (minutes), in whichever test
# comes first.
pytestmark = [pytest.mark.peers, pytest.mark.timeout(1800)]

KERNEL_PROBE = Path(__file__).with_name("kernel_probe.py")
PYTHON = "/opt/jupybot/venv/bin/python"
# The status of the jupybot process (tini's child): its ids, capabilities, no_new_privs.
JUPYBOT_STATUS = """
import pathlib, re
for proc in pathlib.Path("/proc").glob("[0-9]*"):
    argv = (proc / "cmdline").read_bytes().split(b"\\0")
    if len(argv) > 1 and argv[1].endswith(b"/twistd"):
        print("".join(l + "\\n" for l in (proc / "status").read_text().splitlines()
                      if re.match("(Uid|CapEff|CapBnd|NoNewPrivs):", l)))
"""


@dataclass
class Container:
    podman: Podman
    argv: list[str]
    name: str
    port: int
    volume: str
    started: float = 0.0
    ping: dict[str, object] = field(default_factory=dict)

    def start(self) -> None:
        self.started = time.monotonic()
        self.podman(*self.argv[1:], timeout=120)
        self.ping = wait_for_ping(self.port)

    def exec(self, *argv: str, input: str | None = None, check: bool = True) -> str:
        return self.podman("exec", "-i", self.name, *argv, input=input, check=check).stdout

    def logs(self) -> str:
        result = self.podman("logs", self.name)
        return result.stdout + result.stderr

    def remove(self) -> None:
        self.podman("rm", "--force", "--time", "0", self.name, check=False)


def docs_run(text: str) -> list[str]:
    """The `podman run` of a docs/deploy.md section, as written there."""
    return command(text, "podman", "run")


def as_this_run(
    podman: Podman, image: str, run: list[str], tmp: Path, name: str, volume: str
) -> Container:
    """The documented command with this run's name, port, volume, env file and image put in,
    and the tests' label added (so that a killed run's container is found and removed)."""
    port = free_port()
    argv = replace_option(run, "--name", name)
    assert option_values(argv, "-p") == ["127.0.0.1:8080:8080"], argv
    argv = replace_option(argv, "-p", f"127.0.0.1:{port}:8080")
    (mount,) = option_values(argv, "-v")
    assert mount == "jupybot-state:/var/lib/jupybot", mount
    argv = replace_option(argv, "-v", f"{volume}:/var/lib/jupybot")
    argv = replace_option(argv, "--env-file", str(write_env_file(tmp / "env")))
    options = option_values(argv, "--security-opt")
    assert "seccomp=deploy/seccomp.json" in options, options
    at = argv.index("seccomp=deploy/seccomp.json")
    argv[at] = f"seccomp={ROOT / 'deploy' / 'seccomp.json'}"
    assert argv[-1] == "jupybot", argv
    argv[-1] = image
    argv[2:2] = ["--label", f"{LABEL}={os.getpid()}"]
    return Container(podman, argv, name, port, volume)


def make_volume(podman: Podman, name: str) -> str:
    podman("volume", "create", "--label", f"{LABEL}={os.getpid()}", name)
    return name


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="jupybot-container-") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def container(
    podman: Podman, image: str, workdir: Path, timings: dict[str, float]
) -> Iterator[Container]:
    """The image run by the command of docs/deploy.md's BUILD_SECTION."""
    tag = f"{os.getpid()}"
    volume = make_volume(podman, f"jupybot-test-state-{tag}")
    box = as_this_run(
        podman, image, docs_run(section(BUILD_SECTION)), workdir, f"jupybot-test-{tag}", volume
    )
    try:
        box.start()
        timings["container start to /ping 200"] = round(time.monotonic() - box.started, 1)
        yield box
    finally:
        box.remove()
        podman("volume", "rm", "--force", volume, check=False)


# -- what the docs say ---------------------------------------------------------------------------


def test_the_docs_make_what_their_run_commands_name() -> None:
    """Every section that runs the image creates the env file it names first, and the Docker
    section runs it with the options the tested podman command has."""
    docker = section("Docker")
    for text in (docker, section(BUILD_SECTION)):
        lines = [unsudo(c) for c in commands(text)]
        runs = [i for i, c in enumerate(lines) if c[1:2] == ["run"] and "--env-file" in c]
        assert runs, "no run command with --env-file"
        made = [
            i for i, c in enumerate(lines) if c[:1] == ["install"] and c[-1] == "/etc/jupybot/env"
        ]
        assert made and made[0] < runs[0], "the env file is named before it is made"
    tested = docs_run(section(BUILD_SECTION))
    (documented,) = [c for c in map(unsudo, commands(docker)) if c[:2] == ["docker", "run"]]
    assert documented[2:] == tested[2:]
    build = command(section(BUILD_SECTION), "podman", "build")
    assert build[build.index("--format") + 1] == "docker", "the OCI format drops HEALTHCHECK"


# -- the running container -----------------------------------------------------------------------


def test_ping_answers_200_with_every_enabled_part_running(container: Container) -> None:
    services = container.ping["services"]
    assert isinstance(services, dict)
    assert {k for k, v in services.items() if v != "disabled"} == {
        "sandbox",
        "kernels",
        "terminal",
        "contact",
        "web",
    }, services
    assert set(services.values()) == {"running", "disabled"}, services
    details = container.ping["details"]
    assert isinstance(details, dict)
    assert str(details["sandbox"]).startswith("bubblewrap as uid 10001;"), details


@asyncio_test
async def test_a_demo_program_runs_sandboxed_through_line_mode(container: Container) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"ws://127.0.0.1:{container.port}/terminal/line"
        async with http.ws_connect(url) as ws:
            await ws.send_json({"event": "initialize", "program": "bc"})
            await ws.receive_json(timeout=60)
            await ws.send_json({"event": "command", "input": "2^100"})
            answer = await ws.receive_json(timeout=60)
            assert answer["output"].startswith("1267650600228229401496703205376\n"), answer
        async with http.ws_connect(url) as ws:
            await ws.send_json({"event": "initialize", "program": "python"})
            await ws.receive_json(timeout=60)
            probe = (
                "import socket; print(socket.gethostname(),"
                " open('/proc/self/status').read().count('Seccomp:\\t2'))"
            )
            await ws.send_json({"event": "command", "input": probe})
            answer = await ws.receive_json(timeout=60)
            # bubblewrap's host name; the sandbox's own filter on top of the container's.
            assert answer["output"].startswith("sandbox 1\n"), answer


def test_a_kernel_runs_1_plus_1(container: Container) -> None:
    """A new kernel of the embedded gateway jupybot runs in the container, in its sandbox."""
    assert container.exec(PYTHON, "-", input=KERNEL_PROBE.read_text()).strip() == "2"


def test_the_container_keeps_a_syscall_filter(container: Container) -> None:
    status = container.exec("grep", "-E", "^(Seccomp|NoNewPrivs|CapEff):", "/proc/1/status")
    assert "Seccomp:\t2" in status, status
    assert "CapEff:\t0000000000000000" in status, status


def test_svg_outputs_render(container: Container) -> None:
    """cairosvg (docs/rendering.md) finds the image's libcairo2."""
    code = (
        "import cairosvg, sys; png = cairosvg.svg2png(bytestring=b'<svg xmlns="
        '"http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'
        "'); sys.stdout.write(png[1:4].decode())"
    )
    assert container.exec(PYTHON, "-c", code) == "PNG"


def test_the_health_check_is_kept_and_passes(container: Container) -> None:
    config = container.podman.inspect(container.name)["Config"]
    assert isinstance(config, dict)
    check = config.get("Healthcheck")
    assert isinstance(check, dict) and "/ping" in " ".join(check["Test"]), config
    result = container.podman("healthcheck", "run", container.name, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_forwarded_visitor_is_logged_with_their_address(container: Container) -> None:
    """The port publishing's connections come from the bridge's gateway, which
    deploy/container.yml trusts: the address a proxy forwards is the one logged."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{container.port}/ping", headers={"X-Forwarded-For": "198.51.100.23"}
    )
    urllib.request.urlopen(request, timeout=10).read()
    deadline = time.monotonic() + 10
    while '"198.51.100.23"' not in container.logs():
        assert time.monotonic() < deadline, container.logs()[-2000:]
        time.sleep(0.2)


def test_a_contact_message_outlives_its_container_and_stop_is_prompt_and_clean(
    container: Container, workdir: Path, timings: dict[str, float]
) -> None:
    """Last of the module: it stops the container. The message is delivered once (to the
    file, there being no bot), and a new container on the same volume neither loses it nor
    delivers it again; `contact list` needs no --config in the image."""
    body = json.dumps({"name": "Ada", "email": "ada@example.org", "message": "kept?"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{container.port}/contact",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202
    started = time.monotonic()
    container.podman("stop", container.name, timeout=120)
    timings["podman stop"] = round(time.monotonic() - started, 1)
    assert timings["podman stop"] < 90  # --stop-timeout: SIGKILL after that
    state = container.podman.inspect(container.name)["State"]
    assert isinstance(state, dict)
    assert state["ExitCode"] == 0, state
    assert "Server Shut Down." in container.logs()
    container.remove()

    again = as_this_run(
        container.podman,
        container.argv[-1],
        docs_run(section(BUILD_SECTION)),
        workdir,
        container.name,
        container.volume,
    )
    try:
        again.start()
        lines = again.exec("cat", "/var/lib/jupybot/contact-messages.jsonl").splitlines()
        assert [json.loads(line)["message"] for line in lines] == ["kept?"]
        listing = again.exec(PYTHON, "-m", "jupybot.contact", "list")
        assert "kept?" not in listing, listing  # delivered: nothing waits
    finally:
        again.remove()


# -- per-session cgroups ------------------------------------------------------------------------


def test_started_as_root_for_cgroups_it_runs_jupybot_unprivileged(
    podman: Podman, image: str, workdir: Path
) -> None:
    """docs/deploy.md's "Per-session cgroups in a container": the entry point hands the
    container's cgroup (v2) to jupybot and drops to its user, with no capability left. On a
    cgroup v1 host it says there is none to hand over, and jupybot still runs unprivileged."""
    run = docs_run(section("Per-session cgroups in a container"))
    assert run[run.index("--user") + 1] == "0:0" and "--cgroupns=private" in run, run
    tag = f"{os.getpid()}-cgroups"
    volume = make_volume(podman, f"jupybot-test-state-{tag}")
    box = as_this_run(podman, image, run, workdir, f"jupybot-test-{tag}", volume)
    try:
        box.start()
        status = box.exec(PYTHON, "-c", JUPYBOT_STATUS)
        assert re.search(r"^Uid:\t10001\t10001\t10001\t10001$", status, re.MULTILINE), status
        assert "CapEff:\t0000000000000000" in status and "CapBnd:\t0000000000000000" in status
        assert "NoNewPrivs:\t1" in status, status
        details = box.ping["details"]
        assert isinstance(details, dict)
        sandbox = str(details["sandbox"])
        if cgroup_version() == 1:
            assert "no cgroup to delegate" in box.logs()
            assert "limits: rlimits only" in sandbox, sandbox
            pytest.skip(
                "this host is cgroup v1: podman mounts each v1 hierarchy read-only in a "
                "container whatever the options, so per-session cgroups in a container are "
                "checked on a cgroup v2 host only (the unprivileged start was checked)"
            )
        assert "the container's cgroup is delegated to jupybot" in box.logs()
        assert "limits: cgroup v2 (/sys/fs/cgroup/sandboxes)" in sandbox, sandbox
    finally:
        box.remove()
        podman("volume", "rm", "--force", volume, check=False)

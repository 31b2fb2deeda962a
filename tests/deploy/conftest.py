"""The deployment peers: the container image (built once per run with podman) and, in
test_unit_booted.py, a systemd machine. Each skips only where this host cannot run them at all
(not root, no user namespaces), saying why; what the set-up should have installed and did not
is a failure."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..harness import ROOT
from .machine import prepare, stop_prepared
from .podman import (
    CACHE,
    Podman,
    command,
    host_problem,
    missing_tools,
    section,
    timed,
)

IMAGE = "localhost/jupybot:test"
BUILD_SECTION = "Building the image without Docker Hub"
TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_line(
            "deployment peers (s): " + ", ".join(f"{k} {v}" for k, v in TIMINGS.items())
        )
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "timings.json").write_text(json.dumps(TIMINGS, indent=1) + "\n")


@pytest.fixture(scope="session")
def timings() -> Iterator[dict[str, float]]:
    try:
        yield TIMINGS
    finally:
        # The machine the image fixture started, should its tests not have run.
        stop_prepared()


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    problem = host_problem()
    if problem:
        pytest.skip(problem)
    missing = missing_tools("podman", "buildah", "debootstrap")
    assert not missing, f"{missing} missing: scripts/install-system-packages installs them"
    runner = Podman()
    runner.remove_leftovers()
    try:
        yield runner
    finally:
        runner.remove_leftovers(mine=True)


@pytest.fixture(scope="session")
def image(podman: Podman, timings: dict[str, float], request: pytest.FixtureRequest) -> str:
    """The Dockerfile, unchanged, built as docs/deploy.md's BUILD_SECTION says, once a run
    (podman's layer cache under .cache/deploy makes a run whose sources did not change quick)."""
    text = section(BUILD_SECTION)
    base = command(text, "scripts/build-base-images")
    assert base == ["scripts/build-base-images"]
    env = {**podman.env, "PODMAN": shlex.join(podman.command)}
    if any(item.path.name == "test_unit_booted.py" for item in request.session.items):
        # The root file system first, then the machine is made meanwhile (both mostly wait
        # on downloads, the machine's on apt and pip, the image's on apt, npm and pip).
        timed(
            "root file system",
            timings,
            [str(ROOT / base[0]), "--rootfs-only", str(CACHE)],
            env=env,
            cwd=ROOT,
            timeout=1200,
        )
        prepare(timings)
    timed(
        "base images", timings, [str(ROOT / base[0]), str(CACHE)], env=env, cwd=ROOT, timeout=1200
    )
    build = command(text, "podman", "build")
    assert build[-1] == "." and build[build.index("-t") + 1] == "jupybot", build
    argv = [*podman.command, *build[1:-1]]
    argv[argv.index("-t") + 1] = IMAGE
    # Never Docker Hub; the .debs the base images' builds fetched are reused.
    argv += ["--pull=never", "--volume", f"{CACHE / 'apt-archives'}:/var/cache/apt/archives"]
    timed("image build", timings, [*argv, str(ROOT)], env=podman.env, cwd=ROOT, timeout=1800)
    return IMAGE


def wait_for_ping(port: int, timeout: float = 120.0) -> dict[str, Any]:
    """/ping's JSON once it answers 200 (it answers 503 while parts start)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as answer:
                return dict(json.load(answer))
        except urllib.error.HTTPError as e:
            last = json.load(e)
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"/ping did not answer 200 within {timeout} s: {last}")


def write_env_file(path: Path) -> Path:
    path.write_text("JUPYBOT_TEST_ENV_FILE=read\n")
    path.chmod(0o600)
    return path

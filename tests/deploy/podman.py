"""podman as these tests run it: rootful, its images and layers under .cache/deploy (kept between
runs), set up for what this host is; and what the tests read from docs/deploy.md.

The tests run the image as an operator would: the base images from scripts/build-base-images,
the Dockerfile unchanged, the build and run commands of docs/deploy.md's "Building the image
without Docker Hub" (with this run's names, port and paths put in)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ..harness import ROOT

CACHE = ROOT / ".cache" / "deploy"
DOCS = ROOT / "docs" / "deploy.md"
# Every container and volume of these tests carries it, with the pid of the run that made it:
# what a killed run left is found and removed by it.
LABEL = "org.jupybot.test"
CAP_SYS_RESOURCE = 24


def host_problem() -> str | None:
    """Why this host cannot run the container tests at all, or None."""
    if os.geteuid() != 0:
        return (
            "needs root: the tests run podman rootful (rootless podman needs subordinate uid "
            "ranges and a user session) and debootstrap"
        )
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return (
            "this kernel refuses user namespaces (`unshare --user` says "
            f"{probe.stderr.strip()!r}): bubblewrap cannot sandbox anything in a container here"
        )
    return None


def missing_tools(*names: str) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


def cgroup_version() -> int:
    return 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1


def _effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


class Podman:
    """The podman command with this run's global options, and the settings this host needs,
    each for a reason it can see (see L{settings})."""

    def __init__(self, cache: Path = CACHE) -> None:
        self.cache = cache
        self.storage = cache / "podman" / "storage"
        digest = hashlib.sha256(str(self.storage).encode()).hexdigest()[:12]
        # Runtime state (locks, mounts' bookkeeping) on /run, like podman's own: gone at reboot.
        self.runroot = Path("/run") / f"jupybot-tests-podman-{digest}"
        self.conf = cache / "podman" / "containers.conf"
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.settings())
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def settings(self) -> str:
        """containers.conf for this host: podman's defaults, except where they cannot work."""
        containers, engine = [], []
        if not Path("/run/systemd/system").exists():
            # No systemd as PID 1: cgroups made by podman itself, events in a file.
            engine += ['cgroup_manager = "cgroupfs"', 'events_logger = "file"']
        unified = Path("/sys/fs/cgroup/unified/cgroup.controllers")
        if unified.exists() and unified.read_text().split():
            # A hybrid cgroup host with controllers on its v2 hierarchy: crun refuses it
            # ("cgroups in hybrid mode not supported"), runc uses the v1 ones.
            engine.append('runtime = "runc"')
        if not _effective_capabilities() >> CAP_SYS_RESOURCE & 1:
            # Without CAP_SYS_RESOURCE podman cannot raise a container's limits to its
            # defaults (nofile 1048576): give them what this process has (podman itself
            # holds at most 32768 processes).
            import resource

            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
            containers.append(
                f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]'
            )
        return "[containers]\n{}\n[engine]\n{}\n".format("\n".join(containers), "\n".join(engine))

    @property
    def command(self) -> list[str]:
        return ["podman", "--root", str(self.storage), "--runroot", str(self.runroot)]

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.command, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {shlex.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def inspect(self, name: str) -> dict[str, object]:
        return dict(json.loads(self("inspect", name).stdout)[0])

    def remove_leftovers(self, mine: bool = False) -> None:
        """The containers and volumes of test runs that are gone (killed: their label names
        their pid), and with C{mine} this run's own. Another run's, still going, are kept."""

        def gone(owner: str) -> bool:
            return owner == str(os.getpid()) if mine else not Path(f"/proc/{owner}").exists()

        label = f'{{{{index .Labels "{LABEL}"}}}}'
        listing = self("ps", "--all", "--filter", f"label={LABEL}", "--format", "{{.ID}} " + label)
        ids = [i for i, owner in map(str.split, listing.stdout.splitlines()) if gone(owner)]
        if ids:
            self("rm", "--force", "--time", "0", *ids, check=False, timeout=60)
        listing = self(
            "volume", "ls", "--filter", f"label={LABEL}", "--format", "{{.Name}} " + label
        )
        volumes = [v for v, owner in map(str.split, listing.stdout.splitlines()) if gone(owner)]
        if volumes:
            self("volume", "rm", "--force", *volumes, check=False)


def timed(what: str, timings: dict[str, float], argv: Sequence[str], **kwargs: object) -> str:
    """Run C{argv}, record how long it took, and return its output (an error shows its end)."""
    start = time.monotonic()
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    timings[what] = round(time.monotonic() - start, 1)
    if result.returncode != 0:
        raise AssertionError(
            f"{what}: {shlex.join(argv)} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return str(result.stdout)


# -- docs/deploy.md ----------------------------------------------------------------------------


def section(title: str, text: str | None = None) -> str:
    """The text of the docs/deploy.md section (any level) headed C{title}, to the next heading
    of the same or a higher level (a `#` line in a code block is no heading)."""
    lines = (DOCS.read_text() if text is None else text).splitlines(keepends=True)
    found: list[str] = []
    level = 0
    fenced = False
    for line in lines:
        heading = re.match(r"(#+) (.*)\n?$", line) if not fenced else None
        if line.startswith("```"):
            fenced = not fenced
        if heading and level and len(heading.group(1)) <= level:
            break
        if level:
            found.append(line)
        elif heading and heading.group(2) == title:
            level = len(heading.group(1))
    assert level, f"docs/deploy.md has no section {title!r}"
    return "".join(found)


def commands(text: str) -> list[list[str]]:
    """The shell commands of the ```sh blocks in C{text}: continuation lines joined, comments
    left out, each split as the shell would (and at `&&`)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            # `a && b`: two commands, the second run if the first succeeds (as every one here).
            while "&&" in words:
                at = words.index("&&")
                found.append(words[:at])
                words = words[at + 1 :]
            if words:
                found.append(words)
    return found


def command(text: str, *head: str) -> list[str]:
    """The one command of C{text} that starts with C{head} (after any `sudo`)."""
    found = [c for c in map(unsudo, commands(text)) if c[: len(head)] == list(head)]
    assert len(found) == 1, f"expected one `{' '.join(head)}` command, found {found}"
    return found[0]


def unsudo(words: list[str]) -> list[str]:
    return words[1:] if words[:1] == ["sudo"] else words


def replace_option(argv: list[str], option: str, value: str) -> list[str]:
    """C{argv} with the value of C{option} (given as `--opt value` or `-o value`) replaced."""
    assert option in argv, f"{option} is not in {shlex.join(argv)}"
    at = argv.index(option)
    return [*argv[: at + 1], value, *argv[at + 2 :]]


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == option]

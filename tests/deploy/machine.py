"""A Debian 12 machine booted with systemd-nspawn: real systemd as its PID 1, on the root file
system scripts/build-base-images makes (debootstrap), sharing the host's network (so that apt,
pip and npm reach their registries, and the tests reach what it serves on loopback).

The template (.cache/deploy/machine-bookworm) is that root file system with systemd, dbus and
the packages docs/deploy.md's systemd step 1 installs, made once; each run boots a copy of it,
removed afterwards. Commands run inside through nsenter (the host needs no systemd of its own:
nspawn runs with --register=no --keep-unit)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import yaml

from ..harness import ROOT, free_port
from .podman import CACHE, commands, section

SOURCE = "/mnt/jupybot-src"
UNIT = "jupybot"

TEMPLATE = CACHE / "machine-bookworm"
ROOTFS = CACHE / "rootfs-bookworm"
# Its own: the image build's apt runs meanwhile, and apt locks the folder it downloads to.
ARCHIVES = CACHE / "apt-archives-machine"
PIP_CACHE = CACHE / "pip-cache"
# The booting system; the rest is what the docs' step 1 asks for.
BOOT_PACKAGES = ("systemd-sysv", "dbus")
# A network that intercepts TLS: the host's own certificates are in the root file system
# (scripts/build-base-images), and Debian's Node reads the system's only when told to.
ENVIRONMENT = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "NODE_EXTRA_CA_CERTS": "/etc/ssl/certs/ca-certificates.crt",
    "DEBIAN_FRONTEND": "noninteractive",
}


def nspawn(root: Path, *argv: str, binds: Sequence[str] = (), timeout: float = 900) -> str:
    """Run C{argv} in C{root} as a container (not booted), output returned; a failure shows it."""
    result = subprocess.run(
        [
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
            "-D",
            str(root),
            *(f"--bind={b}" for b in binds),
            *(f"--setenv={k}={v}" for k, v in ENVIRONMENT.items()),
            "--",
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    _forget_propagation(root.name)
    if result.returncode != 0:
        raise AssertionError(
            f"{argv} in {root}: exit {result.returncode}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result.stdout


def _forget_propagation(name: str) -> None:
    """nspawn leaves its mount propagation folder behind where /run is not a tmpfs (it refuses
    to delete anything on a disk file system): an empty folder, never a mount."""
    folder = Path("/run/systemd/nspawn/propagate") / name
    if folder.is_dir() and not os.path.ismount(folder):
        shutil.rmtree(folder, ignore_errors=True)


def template(packages: Sequence[str]) -> Path:
    """The machine's template with L{BOOT_PACKAGES} and C{packages}, made again when either or
    the root file system changed."""
    assert (ROOTFS / ".complete").exists(), "scripts/build-base-images --rootfs-only first"
    wanted = " ".join(sorted({*BOOT_PACKAGES, *packages}))
    stamp = hashlib.sha256(((ROOTFS / ".complete").read_text() + wanted).encode()).hexdigest()
    if (TEMPLATE / ".stamp").exists() and (TEMPLATE / ".stamp").read_text() == stamp:
        return TEMPLATE
    making = TEMPLATE.with_name(TEMPLATE.name + ".tmp")
    shutil.rmtree(making, ignore_errors=True)
    shutil.rmtree(TEMPLATE, ignore_errors=True)
    copy_tree(ROOTFS, making)
    # dpkg without an fsync per file, as in Docker Hub's images (scripts/build-base-images).
    (making / "etc/dpkg/dpkg.cfg.d/docker-apt-speedup").write_text("force-unsafe-io\n")
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    nspawn(
        making,
        "sh",
        "-c",
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
        f"{wanted} >/dev/null && rm -rf /var/lib/apt/lists/*",
        binds=[f"{ARCHIVES}:/var/cache/apt/archives"],
    )
    (making / ".stamp").write_text(stamp)
    making.rename(TEMPLATE)
    return TEMPLATE


def sweep(machines: Path, mine: bool = False) -> None:
    """What a killed test run left: its machine (nspawn survives it: a session of its own) and
    the machine's copy; with C{mine}, this run's. A run still going keeps its own."""

    def gone(owner: str) -> bool:
        return owner == str(os.getpid()) if mine else not Path(f"/proc/{owner}").exists()

    prefix = "--machine=jupybot-test-"
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        owners = [a.removeprefix(prefix) for a in argv if a.startswith(prefix)]
        if (
            argv[0].endswith("systemd-nspawn")
            and owners
            and not Path(f"/proc/{owners[0]}").exists()
        ):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(proc.name), signal.SIGKILL)
    if machines.is_dir():
        for left in machines.iterdir():
            owner = left.name.removeprefix("jupybot-test-").removesuffix(".console")
            if owner.isdigit() and gone(owner):
                unmount_below(left)
                if left.is_dir():
                    shutil.rmtree(left, ignore_errors=True)
                else:
                    left.unlink(missing_ok=True)


def unmount_below(root: Path) -> None:
    mounted = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(f"{root}/") or line.split()[4] == str(root)
    ]
    for mount in sorted(mounted, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


def copy_tree(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(target)], check=True)


class Machine:
    """A booted copy of the template; L{stop} powers it off and removes the copy."""

    def __init__(self, name: str, root: Path, binds: Sequence[str]) -> None:
        self.name = name
        self.root = root
        self.log = root.with_name(root.name + ".console")
        # A host's /proc/sys is writable, and bubblewrap's --disable-userns writes it in each
        # sandbox; nspawn mounts it read-only unless told (the docs' step 1 check fails then,
        # test_unit_booted.py shows).
        env = {**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "1"}
        with open(self.log, "wb") as console:
            self.process = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "--quiet",
                    "--boot",
                    "--register=no",
                    "--keep-unit",
                    f"--machine={name}",
                    "-D",
                    str(root),
                    *(f"--bind={b}" for b in binds),
                ],
                stdin=subprocess.DEVNULL,
                env=env,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.leader = self._wait_for_leader()
        except BaseException:
            self.stop()
            raise

    def _wait_for_leader(self, timeout: float = 30) -> int:
        """The machine's PID 1 (nspawn's child) once its systemd answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.console()
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids and self._ready(int(pids[0])):
                return int(pids[0])
            time.sleep(0.2)
        raise AssertionError(f"the machine did not boot in {timeout} s:\n{self.console()}")

    @staticmethod
    def _ready(leader: int) -> bool:
        state = subprocess.run(
            ["nsenter", "-t", str(leader), "-a", "systemctl", "is-system-running"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return state in ("running", "degraded")

    def run(
        self, argv: Sequence[str], *, timeout: float = 600, check: bool = True, cwd: str = "/"
    ) -> subprocess.CompletedProcess[str]:
        """C{argv} inside the machine as root, in all its namespaces (output captured)."""
        result = subprocess.run(
            [
                "nsenter",
                "-t",
                str(self.leader),
                "-a",
                "env",
                "-i",
                *(f"{k}={v}" for k, v in ENVIRONMENT.items()),
                "sh",
                "-c",
                'cd "$1" && shift && exec "$@"',
                "sh",
                cwd,
                *argv,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"in the machine: {argv} exited {result.returncode}\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def console(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self, timeout: float = 60) -> None:
        """Power off (nspawn turns SIGTERM into the machine's poweroff), then kill what is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        _forget_propagation(self.name)
        unmount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        self.log.unlink(missing_ok=True)


def steps() -> list[list[str]]:
    """The commands of docs/deploy.md's "systemd" section."""
    return commands(section("systemd"))


def step_one_packages() -> list[str]:
    (install,) = [c for c in steps() if c[:4] == ["sudo", "apt-get", "install", "-y"]]
    return install[4:]


class Installation:
    """The docs' commands run in the machine as their user would type them, with what only
    this run knows put in: the checkout to clone, the port to listen on."""

    def __init__(self, machine: Machine, port: int) -> None:
        self.machine = machine
        self.port = port
        self.cwd = "/"
        self.seen: list[list[str]] = []

    def run(self, words: list[str]) -> str:
        self.seen.append(words)
        if words[:1] == ["cd"]:
            self.cwd = words[1]
            return ""
        if words[:1] == ["sudoedit"]:
            return self.configure(words[1])
        if words[:1] == ["journalctl"] and "-f" in words:
            return ""  # follows for ever; the unit's state is checked below
        if words[:2] == ["sudo", "-u"]:
            words = ["runuser", "-u", words[2], "--", *words[3:]]
        elif words[:1] == ["sudo"]:
            words = words[1:]
        if words[:2] == ["git", "clone"]:
            words = [*words[:2], SOURCE, *words[3:]]
        words = [w.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}") for w in words]
        if words[:1] == ["curl"]:
            # Right after `enable --now`: it answers once jupybot listens.
            deadline = time.monotonic() + 120
            while (done := self.machine.run(words, check=False)).returncode != 0:
                assert time.monotonic() < deadline, done
                time.sleep(0.5)
            return done.stdout
        return self.machine.run(words, cwd=self.cwd, timeout=900).stdout

    def configure(self, path: str) -> str:
        """What the docs ask the reader to edit: the unit's state directory, and this run's
        port (the machine shares the host's network)."""
        config = yaml.safe_load(self.machine.run(["cat", path]).stdout)
        config.setdefault("storage", {})["path"] = "/var/lib/jupybot"
        config.setdefault("web", {})["listen"] = f"tcp:{self.port}:interface=127.0.0.1"
        self.machine.run(["sh", "-c", 'printf %s "$1" > "$0"', path, yaml.safe_dump(config)])
        return ""


_prepared: Future[Installation] | None = None
_lock = threading.Lock()


def prepare(timings: dict[str, float]) -> Future[Installation]:
    """Start (once a run) making the machine: the template, a copy booted, jupybot installed
    by the docs' steps, in a thread of its own."""
    global _prepared
    with _lock:
        if _prepared is None:
            _prepared = Future()
            threading.Thread(target=_prepare, args=(_prepared, timings), daemon=True).start()
        return _prepared


def _prepare(future: Future[Installation], timings: dict[str, float]) -> None:
    booted: Machine | None = None
    try:
        start = time.monotonic()
        subprocess.run(
            [str(ROOT / "scripts" / "build-base-images"), "--rootfs-only", str(CACHE)],
            check=True,
            capture_output=True,
            timeout=900,
            cwd=ROOT,
        )
        made = template(step_one_packages())
        timings["machine template"] = round(time.monotonic() - start, 1)
        name = f"jupybot-test-{os.getpid()}"
        root = CACHE / "machines" / name
        root.parent.mkdir(exist_ok=True)
        sweep(root.parent)
        copy_tree(made, root)
        for cache in (ARCHIVES, PIP_CACHE, CACHE / "npm-cache"):
            cache.mkdir(parents=True, exist_ok=True)
        binds = [
            f"{ROOT}:{SOURCE}:rbind",
            f"{ARCHIVES}:/var/cache/apt/archives",
            f"{PIP_CACHE}:/root/.cache/pip",
            f"{CACHE / 'npm-cache'}:/root/.npm",
        ]
        start = time.monotonic()
        booted = Machine(name, root, binds)
        timings["machine boot"] = round(time.monotonic() - start, 1)
        start = time.monotonic()
        installation = Installation(booted, free_port())
        for words in steps():
            installation.run(words)
        timings["unit installed by the docs' steps"] = round(time.monotonic() - start, 1)
        future.set_result(installation)
    except BaseException as e:
        if booted is not None:
            booted.stop()
        sweep(CACHE / "machines", mine=True)
        future.set_exception(e)


def stop_prepared() -> None:
    """Power the machine off and remove it (at the end of the run, whoever started it)."""
    global _prepared
    with _lock:
        future, _prepared = _prepared, None
    if future is not None:
        try:
            installation = future.result(timeout=1500)
        except BaseException:
            return  # it stopped its machine itself
        installation.machine.stop()

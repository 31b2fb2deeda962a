"""A Debian 12 machine booted with systemd-nspawn: real systemd as its PID 1, on the root file
system scripts/build-base-images makes (debootstrap), sharing the host's network (so that apt,
pip and npm reach their registries, and the tests reach what it serves on loopback).

The template (.cache/deploy/machine-bookworm) is that root file system with systemd, dbus and
the packages docs/deploy.md's systemd step 1 installs, made once; each run boots a copy of it,
removed afterwards. Commands run inside through nsenter (the host needs no systemd of its own:
nspawn runs with --register=no --keep-unit)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .podman import CACHE

TEMPLATE = CACHE / "machine-bookworm"
ROOTFS = CACHE / "rootfs-bookworm"
ARCHIVES = CACHE / "apt-archives"
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


def copy_tree(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(target)], check=True)


class Machine:
    """A booted copy of the template; L{stop} powers it off and removes the copy."""

    def __init__(self, name: str, root: Path, binds: Sequence[str]) -> None:
        self.name = name
        self.root = root
        self.log = root.with_name(root.name + ".console")
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
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.leader = self._wait_for_leader()

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
        mounted = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(self.root))
        ]
        for mount in sorted(mounted, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.log.unlink(missing_ok=True)

"""Paths below a folder the sandbox users may not enter, shown to them all the same (issue 29:
a clone anywhere works).

As root, a launch drops to another user (a leased uid, ``sandbox.user``, the gateway's user)
before bubblewrap runs, and bubblewrap opens what it binds as that user: a checkout under
root's 0700 home or in a ``mktemp -d`` folder could not be shown to a sandbox (``Can't find
source path ...: Permission denied``), nor could the embedded gateway, which runs as
``gateway.user``, start from its ``.venv``. Descriptors opened by root do not help: bubblewrap
resolves ``--ro-bind-fd``'s descriptor to its path (``realpath``) as the sandbox's user, and a
mount cannot be made from a descriptor of another mount namespace.

So, as root, jupybot makes a mount namespace of its own (L{MountView}) in which each such
folder (the topmost one above a needed path that others may not enter: ``/root``, the
``mktemp -d``) is covered by an empty, read-only tmpfs holding nothing but the paths the
sandboxes need, bound at their own paths. Every sandboxed launch that shows such a path enters
it (``nsenter``, as root, just before it drops privileges), and so does the embedded gateway
when its Python or jupybot's package is below such a folder: in there the sandbox
users reach those paths and nothing else of the private folder (its other files are under the
cover); bubblewrap then binds what a profile lists, as before. Outside the view, nothing
changes: jupybot, and everything else on the host, sees the folders as they are.

The namespace is made once, at start, as the paths are first asked for (the terminal's checks
and the kernels' plan ask for all of theirs), by a short-lived ``unshare`` child; jupybot then
holds it by a descriptor (``/proc/<pid>/ns/mnt`` opened), which launches name as
``/proc/<jupybot's pid>/fd/<n>``: no file in the host's tree, nothing left behind when jupybot
dies. A path asked for later makes a new namespace with every path so far, put on the same
descriptor number. What it costs a session's open is one ``nsenter`` (about 1-2 ms; see
docs/terminal.md, "Containment"); a kernel's start, nothing (the gateway is in the view).
"""

from __future__ import annotations

import os
import selectors
import shutil
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path

from twisted.logger import Logger

__all__ = ["MountView", "ViewUnavailable", "blocked_folder", "outermost"]

log = Logger()

# How long making the namespace may take (a handful of mounts: about 20-40 ms here).
BUILD_TIMEOUT = 20.0
# The covers hold only the folders and files that the bound paths are mounted on.
COVER_OPTIONS = "mode=0755,size=1m,nr_inodes=4096"

# Run by `unshare --mount --propagation slave` as root, in the new namespace, with the mount
# and umount commands, a staging folder only root may enter, the paths, "--", the covers:
# binds each path into the staging folder (before the covers hide them), covers each folder
# with a tmpfs, makes each path's mount point in its cover and moves its bind there, then
# makes the covers read-only. It says "ready" and waits on stdin while jupybot opens its
# namespace.
_BUILD = r"""
set -e
umask 022  # jupybot's is 077: the folders made on the way to a shown path are open to all
m=$1; u=$2; s=$3; shift 3
"$m" -n -t tmpfs -o mode=0700,size=64k jupybot-stage "$s"
i=0
for p do
  [ "$p" = -- ] && break
  i=$((i+1))
  if [ -d "$p" ]; then mkdir "$s/$i"; else : > "$s/$i"; fi
  "$m" -n --rbind "$p" "$s/$i"
done
past=
for c do
  if [ -n "$past" ]; then "$m" -n -t tmpfs -o "$COVER" jupybot-cover "$c"
  elif [ "$c" = -- ]; then past=1; fi
done
i=0
for p do
  [ "$p" = -- ] && break
  i=$((i+1))
  if [ -d "$s/$i" ]; then mkdir -p "$p"; else mkdir -p "${p%/*}"; : > "$p"; fi
  "$m" -n --move "$s/$i" "$p"
done
"$u" -n "$s"
past=
for c do
  if [ -n "$past" ]; then "$m" -n -o remount,ro "$c"
  elif [ "$c" = -- ]; then past=1; fi
done
echo ready
read -r _ || :
"""


class ViewUnavailable(Exception):
    """The mount namespace could not be made; the message says why."""


def blocked_folder(path: str) -> str | None:
    """The topmost folder above C{path} (a real path) that others may not enter (no ``o+x``),
    or None when every folder above it lets them through. C{path} itself is not looked at:
    what it lets others do is its own business (the view does not change it)."""
    current = "/"
    for part in Path(path).parts[1:-1]:
        current = os.path.join(current, part)
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return None
        if not mode & stat.S_IXOTH:
            return current
    return None


def outermost(paths: Iterable[str]) -> list[str]:
    """C{paths} without those inside another of them (shown with it), sorted."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


class MountView:
    """jupybot's mount namespace for its sandboxed launches (see the module's docstring)."""

    def __init__(self, directory: Path) -> None:
        # A folder of jupybot's own (0711, the sandbox's private one): the staging folder
        # goes there.
        self._directory = directory
        self._tools = {
            name: shutil.which(name) for name in ("unshare", "nsenter", "mount", "umount")
        }
        # Each path asked for -> its real path, when it needs the view; None when it does not.
        self._checked: dict[str, str | None] = {}
        # Real path -> the folder that hides it.
        self._shown: dict[str, str] = {}
        # Holds the namespace; its number is what launches name.
        self._fd: int | None = None

    @property
    def active(self) -> bool:
        return self._fd is not None

    @property
    def shown(self) -> dict[str, str]:
        """The paths shown through the view, each with the folder it is below."""
        return dict(self._shown)

    def expose(self, paths: Iterable[str]) -> None:
        """Make each of C{paths} reachable in the view if a folder above it keeps others out;
        L{ViewUnavailable} if the namespace cannot be made."""
        added = []
        for path in paths:
            if path in self._checked:
                continue
            real = os.path.realpath(path)
            if not os.path.exists(real):
                continue  # not cached: bubblewrap names what is missing, and it may come
            cover = blocked_folder(real)
            self._checked[path] = real if cover is not None else None
            if cover is not None and real not in self._shown:
                self._shown[real] = cover
                added.append(real)
        if added:
            try:
                self._build()
            except ViewUnavailable:
                for real in added:
                    del self._shown[real]
                for path in [p for p, r in self._checked.items() if r in added]:
                    del self._checked[path]
                raise

    def needed(self, paths: Iterable[str]) -> bool:
        """Whether a launch showing C{paths} (each L{expose}d) must run in the view: one of
        them is below a folder its user may not enter. Others keep the host's own tree, and
        save the C{nsenter}."""
        return any(self._checked.get(path) for path in paths)

    def source(self, path: str) -> str:
        """Where a launch in the view finds C{path}: its real path if the view shows it (a
        symlink on the way may be under a cover), else C{path}."""
        return self._checked.get(path) or path

    def first_checked(self, real: str) -> str | None:
        """From which folder down host permissions decide whether a launch in the view reaches
        C{real} (a real path): the shown path it is in, or ``/`` when the view does not touch
        it; None when it is a folder the view made (open to all, on the way to a shown path)."""
        for shown in self._shown:
            if real == shown or real.startswith(shown.rstrip("/") + "/"):
                return shown
        for cover in set(self._shown.values()):
            if real == cover or real.startswith(cover.rstrip("/") + "/"):
                return None
        return "/"

    def enter(self, workdir: str | None = None) -> list[str]:
        """The command that puts the rest of a launch (run as root) in the view; nothing while
        no path needs it. C{workdir}: where it starts in there (else ``/``)."""
        if self._fd is None:
            return []
        nsenter = self._tools["nsenter"]
        assert nsenter is not None
        where = [f"--wdns={workdir}"] if workdir else []
        return [nsenter, f"--mount={self.namespace_path}", *where, "--"]

    @property
    def namespace_path(self) -> str:
        """The view's namespace as jupybot's launches name it."""
        assert self._fd is not None
        return f"/proc/{os.getpid()}/fd/{self._fd}"

    def describe(self) -> str:
        covers = sorted(set(self._shown.values()))
        return (
            f"{', '.join(sorted(self._shown))} shown to the sandbox users, who may not enter "
            f"{', '.join(covers)} (a mount namespace of jupybot's covers it with nothing else)"
        )

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _build(self) -> None:
        missing = [name for name, path in self._tools.items() if path is None]
        if missing:
            raise ViewUnavailable(f"{', '.join(missing)} (Debian package util-linux) not installed")
        paths = outermost(self._shown)
        covers = sorted({self._shown[p] for p in paths})
        stage = self._directory / "view-stage"
        stage.mkdir(mode=0o700, exist_ok=True)
        unshare, mount, umount = (self._tools[n] for n in ("unshare", "mount", "umount"))
        assert unshare is not None and mount is not None and umount is not None
        argv = [unshare, "--mount", "--propagation", "slave", "--", "/bin/sh", "-c", _BUILD]
        argv += ["jupybot-view", mount, umount, str(stage), *paths, "--", *covers]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "COVER": COVER_OPTIONS}
        try:
            child = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
        except OSError as e:
            raise ViewUnavailable(f"unshare could not run: {e}") from None
        try:
            if not _ready(child):
                child.kill()
                _, error = child.communicate(timeout=BUILD_TIMEOUT)
                lines = error.decode("utf-8", "replace").strip().splitlines()
                raise ViewUnavailable(lines[-1] if lines else f"exit status {child.returncode}")
            # The child is ours and not reaped: its pid is still it.
            fd = os.open(f"/proc/{child.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            if child.stdin is not None:
                child.stdin.close()
            if child.returncode is None:
                try:
                    child.wait(timeout=BUILD_TIMEOUT)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            for stream in (child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
        if self._fd is None:
            self._fd = fd
        else:
            # Launches starting now find the old namespace or the new one, never nothing.
            os.dup2(fd, self._fd, inheritable=False)
            os.close(fd)
        log.info("sandbox: {view}", view=self.describe())


def _ready(child: subprocess.Popen[bytes]) -> bool:
    """Wait until C{child} says it is ready (True), or fails or times out (False)."""
    assert child.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(BUILD_TIMEOUT):
            return False
    return child.stdout.readline() == b"ready\n"

"""Running part of a test as `nobody`, from this checkout wherever it is.

Run as root, a test becomes `nobody` (setpriv) for a child that runs code of this checkout:
jupybot as the docs advise running it, a normal user. CI's clone is under root's 0700 home,
which `nobody` may not enter; there L{as_nobody} starts the child in a mount namespace of its
own where that folder is covered by an empty tmpfs anyone may enter, with the checkout bound
back at its own path. Every path of the checkout (this run's .venv, its .pth, its scripts'
#!) stays valid in the child, down to the embedded gateway jupybot starts, which imports
jupybot through the .venv's .pth (the checkout's path) and keeps no PYTHONPATH. The host's tree
is untouched, and only this run's Python's base (/usr) must be readable by `nobody`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jupybot.sandbox.view import blocked_folder
from tests.harness import ROOT

__all__ = ["BECOME_NOBODY", "NOBODY", "as_nobody", "readable_by_nobody"]

NOBODY = 65534
BECOME_NOBODY = (f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")

# Run as root by unshare(1) in the child's new mount namespace, with the checkout ($1) and the
# folder to cover ($2): covers that folder with an empty tmpfs, binds the checkout at its path
# in there, enters the child's working folder again by its path, then runs the rest as given.
# The checkout is bound from `.`, the working folder under the cover, not canonicalized: by
# its path it is by then the cover's empty folder.
_COVER_THEN_RUN = r"""
umask 022
work=$(pwd -P) && cd "$1" &&
mount -t tmpfs -o mode=0755,size=64k jupybot-test-cover "$2" && mkdir -p "$1" &&
mount --no-canonicalize --bind . "$1" && cd "$work" && shift 2 && exec "$@"
"""


def readable_by_nobody(path: Path) -> bool:
    """Can `nobody` reach C{path} (every folder above it searchable by others)?"""
    for folder in [path, *path.parents]:
        if folder.is_dir() and not folder.stat().st_mode & 0o001:
            return False
    return True


def as_nobody(argv: Sequence[str], setpriv: Sequence[str] = BECOME_NOBODY) -> list[str]:
    """C{argv} run as `nobody` (C{setpriv}'s options), this checkout reachable at its path."""
    become = ["setpriv", *setpriv, "--", *argv]
    closed = blocked_folder(str(ROOT))
    if closed is None:
        return become
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        _COVER_THEN_RUN,
        "cover-then-run",
        str(ROOT),
        closed,
        *become,
    ]

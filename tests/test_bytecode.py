"""scripts/compile-bytecode (run by `make run` and `make test`): the caches of jupybot's modules
end up readable by every user, whatever umask made them. As root, the embedded gateway imports
jupybot as the sandbox user, who otherwise compiles those modules again at every start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from .harness import ROOT

SCRIPT = ROOT / "scripts" / "compile-bytecode"
# Python writes its caches where these do not say otherwise.
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
}


def closed_to_others(package: Path) -> list[str]:
    """The cache folders others cannot list or enter, the cache files they cannot read."""
    closed = []
    for path in package.rglob("*"):
        if path.is_dir() and path.name == "__pycache__":
            needed = stat.S_IROTH | stat.S_IXOTH
        elif path.suffix == ".pyc":
            needed = stat.S_IROTH
        else:
            continue
        if path.stat().st_mode & needed != needed:
            closed.append(str(path.relative_to(package)))
    return sorted(closed)


def import_inner(root: Path, umask: int) -> None:
    subprocess.run(
        [sys.executable, "-c", "import package.inner"],
        cwd=root, env=ENV, umask=umask, check=True, timeout=60,
    )  # fmt: skip


def test_caches_a_private_umask_made_are_replaced_by_readable_ones(tmp_path: Path) -> None:
    package = tmp_path / "package"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "inner" / "__init__.py").write_text("VALUE = 1\n")
    import_inner(tmp_path, 0o022)
    (package / "__init__.py").write_text("EDITED = True\n")
    for cache in (package / "inner" / "__pycache__").iterdir():
        cache.unlink()
    (package / "inner" / "__pycache__").rmdir()
    # What jupybot (umask 077) writes: an edited module's cache 0600 in an open folder, and a
    # folder of its own 0700.
    import_inner(tmp_path, 0o077)
    tag = sys.implementation.cache_tag
    assert closed_to_others(package) == [
        f"__pycache__/__init__.{tag}.pyc",
        "inner/__pycache__",
        f"inner/__pycache__/__init__.{tag}.pyc",
    ]

    subprocess.run([SCRIPT, sys.executable, str(package)], umask=0o077, check=True, timeout=120)

    assert closed_to_others(package) == []
    assert (package / "__pycache__" / f"__init__.{tag}.pyc").is_file()
    assert (package / "inner" / "__pycache__" / f"__init__.{tag}.pyc").is_file()

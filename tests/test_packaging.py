"""A built wheel, installed on its own, gives twistd the jupybot plugin."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from .harness import ROOT

# What the wheel is built from, as the Dockerfile's context has it: not a checkout's build/,
# where an earlier build's files stay (setuptools copies them into the next wheel, stale or not).
SOURCES = ("setup.py", "pyproject.toml", "README.md", "jupybot", "twisted/plugins")


def build_wheel(into: Path) -> Path:
    source = into.parent / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(into),
            str(source),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = into.glob("jupybot-*.whl")
    return wheel


def test_wheel_installs_the_plugin_for_twistd(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/jupybot_plugin.py" in names
    # Shipping these would shadow Twisted's own package or carry a stale plugin cache.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not [name for name in names if name.endswith("dropin.cache")]
    # What the terminal page serves, and not the ES modules esbuild bundled into vendor/.
    static = "jupybot/terminal/static/"
    shipped = {name.removeprefix(static) for name in names if name.startswith(static)}
    assert {"vendor/page.js", "vendor/embed.js", "vendor/xterm.css", "terminal.css"} <= shipped
    own = sorted(name for name in shipped if not name.startswith("vendor/"))
    assert own == ["favicon.svg", "terminal.css"]

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    # -S: no .pth files, so the checkout's editable install is not on the path; only the
    # installed wheel and the venv's dependencies are.
    site_packages = sysconfig.get_paths()["purelib"]
    probe = (
        "import sys; sys.argv = ['twistd', '--help'];"
        "import jupybot; print('from', jupybot.__file__);"
        "from twisted.scripts.twistd import run; run()"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env={"PYTHONPATH": f"{target}:{site_packages}", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"from {target}" in result.stdout, result.stdout + result.stderr
    assert "jupybot" in result.stdout.split("Commands:")[1]

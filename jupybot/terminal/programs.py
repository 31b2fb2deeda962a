"""The catalogue's programs as the sandbox runs them: argv placeholders, visible paths, limits."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import replace
from pathlib import Path

from ..config.terminal import ProgramConfig
from ..sandbox import INSIDE_HOME, Launch, Limits, Sandbox, SandboxProfile, SandboxUnavailable
from .pty import ProgramNotFound

# In a program's argv: the Python that runs jupybot, and the demos shipped with jupybot (both
# shown read-only to the program that names them).
PYTHON = "{python}"
DEMOS = "{demos}"
DEMOS_DIR = str(Path(__file__).resolve().parent.parent / "demos")

SETSID = "/usr/bin/setsid"
TERMINAL_ENV = {"TERM": "xterm-256color", "COLORTERM": "truecolor"}
# readline's settings in line mode: no bracketed paste, so answers carry no mode switches.
LINE_MODE_INPUTRC = str(Path(__file__).resolve().parent / "line-mode.inputrc")


def program_profile(
    program: ProgramConfig, sandbox: Sandbox, line_mode: bool = False
) -> SandboxProfile:
    """What C{program} runs as, sees and may use; L{ProgramNotFound} if it cannot be found
    inside its sandbox. In C{line_mode}, readline is told not to switch bracketed paste on."""
    argv = [arg.replace(DEMOS, DEMOS_DIR) for arg in program.argv]
    read_only = list(program.files)
    env = TERMINAL_ENV | program.env
    if line_mode:
        read_only.append(LINE_MODE_INPUTRC)
        env = env | {"INPUTRC": LINE_MODE_INPUTRC}
    if any(DEMOS in arg for arg in program.argv):
        read_only.append(DEMOS_DIR)
    if argv[0] == PYTHON:
        read_only += sorted({sys.prefix, sys.base_prefix})
    executable = sandbox.resolve(argv[0], (*read_only, *program.writable))
    if executable is None:
        raise ProgramNotFound(_not_found(argv[0], sandbox.enabled))
    argv[0] = executable
    if sandbox.enabled:
        # The program leads its terminal's session inside the sandbox (see pty.py).
        argv = [SETSID, "--ctty", *argv]
    limits = program.limits
    return SandboxProfile(
        argv=tuple(argv),
        read_only=tuple(dict.fromkeys(read_only)),
        writable=program.writable,
        network=program.network,
        cwd=program.cwd or INSIDE_HOME,
        env=env,
        limits=Limits(
            memory_mb=limits.memory_mb,
            processes=limits.processes,
            cpu_percent=limits.cpu_percent,
            cpu_seconds=limits.cpu_seconds,
            file_size_mb=limits.file_size_mb,
            address_space_mb=limits.address_space_mb,
            tmpfs_mb=limits.tmpfs_mb,
        ),
    )


def launch_program(
    program: ProgramConfig, sandbox: Sandbox, session_id: str, line_mode: bool = False
) -> Launch:
    profile = program_profile(program, sandbox, line_mode)
    return sandbox.launch(profile, name=f"{program.name}-{session_id}")


def host_cwd(program: ProgramConfig, sandbox: Sandbox) -> str | None:
    """The directory spawnProcess starts in: the program's own without a sandbox; inside one,
    bubblewrap changes directory itself."""
    return None if sandbox.enabled else program.cwd


def program_problems(program: ProgramConfig, sandbox: Sandbox, where: str) -> list[str]:
    """Why C{program} cannot run in C{sandbox}, each with its key path; empty when it can."""
    problems = []
    for key in ("files", "writable"):
        for index, path in enumerate(getattr(program, key)):
            if not os.path.exists(path):
                problems.append(f"{where}.{key}[{index}]: {path} does not exist")
    try:
        profile = program_profile(program, sandbox)
    except ProgramNotFound as e:
        problems.append(f"{where}.argv: {e}")
        profile = None
    if program.cwd is not None and sandbox.enabled and program.cwd != INSIDE_HOME:
        shown = (*program.files, *program.writable, "/usr")
        inside = any(program.cwd == p or program.cwd.startswith(p + "/") for p in shown)
        if not inside or not os.path.isdir(program.cwd):
            problems.append(
                f"{where}.cwd: {program.cwd} is not a directory the sandbox shows "
                "(list it, or a directory above it, in files: or writable:)"
            )
    if profile is not None and sandbox.enabled:
        # A script or data file named in argv must be shown too (python3 /srv/app/report.py).
        shown = (*profile.read_only, *profile.writable, "/usr", "/bin", "/lib", "/lib64", "/dev")
        for index, arg in enumerate(program.argv[1:], 1):
            hidden = not any(arg == p or arg.startswith(p.rstrip("/") + "/") for p in shown)
            if arg.startswith("/") and os.path.exists(arg) and hidden:
                problems.append(
                    f"{where}.argv[{index}]: {arg} is not inside the sandbox "
                    "(list its folder, or a folder above it, in files:)"
                )
    if profile is not None and sandbox.prepared and sandbox.enabled and not problems:
        try:
            # Line mode shows one more file (its inputrc): made reachable now, with the rest
            # (as root, below a folder the sandbox user may not enter: sandbox/view.py), rather
            # than at a visitor's first line-mode session.
            line_mode = program_profile(program, sandbox, line_mode=True)
            sandbox.expose((*line_mode.read_only, *line_mode.writable))
        except SandboxUnavailable as e:
            problems.append(f"{where}: cannot run in its sandbox ({e})")
            return problems
        # What the sandbox user cannot read, bubblewrap cannot show: try it once.
        executable = profile.argv[2] if profile.argv[0] == SETSID else profile.argv[0]
        check = replace(profile, argv=("/bin/sh", "-c", _CHECK_SCRIPT, executable))
        error = sandbox.try_run(check)
        if error is not None:
            problems.append(f"{where}: cannot run in its sandbox ({_with_fix(error, sandbox)})")
    return problems


def _not_found(executable: str, sandboxed: bool) -> str:
    if not sandboxed:
        return f"{executable!r} is not installed on this server"
    if "/" not in executable:
        return (
            f"{executable!r} is not installed inside the sandbox (it sees /usr, /bin and what "
            "files: lists: install it there, or give its full path and list its folder in files:)"
        )
    if not os.path.exists(executable):
        return f"{executable!r} does not exist (check argv[0])"
    if not os.access(executable, os.X_OK):
        return f"{executable!r} is not executable (chmod +x it)"
    return (
        f"{executable!r} is not installed inside the sandbox "
        "(list its folder, or a folder above it, in files:)"
    )


# Run in the program's sandbox at start: can the sandbox user run the program?
_CHECK_SCRIPT = 'test -x "$0" || { echo "Can\'t execute $0: Permission denied" >&2; exit 1; }'
# bubblewrap's words (and the check's) for a path the sandbox user cannot reach, and for one
# that is not there.
_UNREACHABLE = re.compile(r"Can't (?:find source path|execute) (?P<path>.+): Permission denied")
_MISSING = re.compile(
    r"Can't (?:find source path|chdir to) (?P<path>.+): No such file or directory"
)


def _with_fix(error: str, sandbox: Sandbox) -> str:
    """bubblewrap's last word, and what the owner can do about it."""
    if found := _UNREACHABLE.search(error):
        if os.geteuid() == 0:
            # The folders above what files: lists do not matter (sandbox/view.py): the paths
            # shown, and what is inside them, do.
            return (
                f"{error}: the sandbox user ({sandbox.config.user}) cannot reach "
                f"{found['path']}; let others enter and read it, and the folders of files: "
                "that hold it (chmod o+rx)"
            )
        return (
            f"{error}: the sandbox user (jupybot's user) cannot reach {found['path']}; let it "
            "enter every folder above it and read it (chmod o+rx), or move it where it can"
        )
    if found := _MISSING.search(error):
        return f"{error}: {found['path']} does not exist; check files:, writable: and cwd"
    return error

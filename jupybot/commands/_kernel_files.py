"""Runs inside a room's kernel, never in jupybot: `put` and `get`, one piece per execution.

jupybot (L{jupybot.commands.files}) sends this module's source to the room's Python kernel in a
silent execution (no history, no execution count, nothing left in the user's namespace), with
one request: write a piece of a file, or read one. Going through the kernel is what works on
every gateway (Kernel Gateway has no contents API) and whatever the kernel's filesystem is.

Every path is confined to the folder the kernel started in (IPython's C{starting_dir}, its
sandboxed home under jupybot's embedded gateway), however the kernel's code changed it since:
the path is walked one name at a time from that folder's descriptor, each folder opened with
C{O_NOFOLLOW | O_DIRECTORY}, the file with C{O_NOFOLLOW}, so a symbolic link planted anywhere
on the way (or one swapped in between two pieces) ends the transfer instead of being followed.
A file written goes to a temporary name first and is renamed over the target by its folder's
descriptor: rename replaces a link, never writes through one. A file read must be a regular
file with one name (a hard link could name a file from elsewhere) and the same file from its
first piece to its last.

The answer is one display_data of L{MIME} (a JSON object): C{{"ok": ...}} or C{{"error": code,
...}}, which jupybot turns into words. Kept to what Python 3.7's standard library has: a
gateway's kernels may be older than jupybot's Python.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import stat
import sys
from typing import Any

MIME = "application/x.jupybot-files+json"
# Where there is no IPython to publish with: one line on stdout.
MARK = "\x1ejupybot-files:"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = (
    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
)


class Refused(Exception):
    def __init__(self, code: str, **details: Any) -> None:
        Exception.__init__(self, code)
        self.answer = dict(details, error=code)


def _root() -> str:
    """The folder the kernel started in (an IPython shell remembers it), else its cwd."""
    start: str | None = None
    try:
        from IPython import get_ipython

        shell = get_ipython()
        start = getattr(shell, "starting_dir", None)
    except Exception:
        pass
    return os.path.abspath(start or os.getcwd())


def _names(root: str, path: str) -> list[str]:
    """The names of C{path} below C{root}; an absolute path must be inside it."""
    if path.startswith("/"):
        prefix = root.rstrip("/") + "/"
        if not path.startswith(prefix):
            raise Refused("outside")
        path = path[len(prefix) :]
    names = path.split("/")
    for name in names:
        if name in ("", ".", "..") or "\x00" in name:
            raise Refused("bad_path")
    return names


def _is_link(folder: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=folder).st_mode)
    except OSError:
        return False


def _folder(root: str, names: list[str], create: bool) -> int:
    """A descriptor of the folder holding C{names[-1]}, every folder on the way opened
    without following a link; missing ones are made when C{create}."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for depth, name in enumerate(names[:-1]):
            at = "/".join(names[: depth + 1])
            try:
                inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise Refused("missing", at=at) from None
                os.mkdir(name, 0o777, dir_fd=fd)
                inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise Refused("link" if _is_link(fd, name) else "not_folder", at=at) from e
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _target_kind(folder: int, name: str) -> str | None:
    """What C{name} is in C{folder} now: None (nothing), "file", or a refusal."""
    try:
        mode = os.lstat(name, dir_fd=folder).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        raise Refused("link")
    if stat.S_ISDIR(mode):
        raise Refused("is_folder")
    if not stat.S_ISREG(mode):
        raise Refused("not_regular")
    return "file"


def _put(request: dict[str, Any], root: str) -> dict[str, Any]:
    names = _names(root, request["path"])
    offset, limit = request["offset"], request["limit"]
    data = base64.b64decode(request["data"])
    if offset + len(data) > limit:
        raise Refused("too_big", size=offset + len(data))
    temporary = ".jupybot-put-" + request["token"]
    folder = _folder(root, names, create=offset == 0)
    try:
        if offset == 0:
            _target_kind(folder, names[-1])
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fd = os.open(temporary, flags | getattr(os, "O_CLOEXEC", 0), 0o666, dir_fd=folder)
        else:
            fd = os.open(temporary, os.O_WRONLY | os.O_NOFOLLOW, dir_fd=folder)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size != offset:
                raise Refused("changed")
            view = memoryview(data)
            written = 0
            while written < len(data):
                written += os.pwrite(fd, view[written:], offset + written)
        finally:
            os.close(fd)
        if not request["last"]:
            return {"ok": True}
        existed = _target_kind(folder, names[-1]) is not None
        os.rename(temporary, names[-1], src_dir_fd=folder, dst_dir_fd=folder)
        return {"ok": True, "replaced": existed, "where": os.path.join(root, *names)}
    except BaseException:
        # Whatever went wrong, no half-written file is left behind.
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=folder)
        raise
    finally:
        os.close(folder)


def _abort(request: dict[str, Any], root: str) -> dict[str, Any]:
    """Remove what an unfinished put left (its temporary file), if anything."""
    try:
        folder = _folder(root, _names(root, request["path"]), create=False)
    except Refused:
        return {"ok": True}
    try:
        with contextlib.suppress(OSError):
            os.unlink(".jupybot-put-" + request["token"], dir_fd=folder)
    finally:
        os.close(folder)
    return {"ok": True}


def _get(request: dict[str, Any], root: str) -> dict[str, Any]:
    names = _names(root, request["path"])
    folder = _folder(root, names, create=False)
    try:
        try:
            fd = os.open(names[-1], _READ_FLAGS, dir_fd=folder)
        except FileNotFoundError:
            raise Refused("missing", at=request["path"]) from None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EMLINK) or _is_link(folder, names[-1]):
                raise Refused("link") from e
            raise
    finally:
        os.close(folder)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise Refused("is_folder")
        if not stat.S_ISREG(info.st_mode):
            raise Refused("not_regular")
        if info.st_nlink != 1:
            raise Refused("hard_links", links=info.st_nlink)
        if info.st_size > request["limit"]:
            raise Refused("too_big", size=info.st_size)
        identity = [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]
        if request.get("expect") not in (None, identity):
            raise Refused("changed")
        data = os.pread(fd, request["length"], request["offset"])
    finally:
        os.close(fd)
    return {
        "ok": True,
        "size": info.st_size,
        "identity": identity,
        "data": base64.b64encode(data).decode("ascii"),
        "where": os.path.join(root, *names),
    }


_OPERATIONS = {"put": _put, "abort": _abort, "get": _get}


def _answer(answer: dict[str, Any]) -> None:
    try:
        from IPython.display import publish_display_data
    except ImportError:
        import json

        sys.stdout.write(MARK + json.dumps(answer) + "\n")
        sys.stdout.flush()
    else:
        publish_display_data({MIME: answer})


def main(request: dict[str, Any]) -> None:
    root = _root()
    try:
        answer = _OPERATIONS[request["op"]](request, root)
    except Refused as e:
        answer = e.answer
    except OSError as e:
        answer = {"error": "os", "detail": e.strerror or str(e)}
    answer["root"] = root
    _answer(answer)

"""What a kernel tries against the processes outside its sandbox that act on what it controls:
the embedded gateway's output (which jupybot reads) and the gateway's sockets to the kernel.
Run in the kernel like kernel_attacks.py: each returns a dict whose "succeeded" says whether the
kernel could do what it tried (not whether anyone outside was fooled: the test looks at that).
"""

import json
import os
import sys


def flood_stdout(forged_line: str, megabytes: str) -> dict[str, object]:
    """Write a line meant to pass for the gateway's, then C{megabytes} MB, to the stdout and
    stderr the kernel was started with (ipykernel keeps a copy of each: what the kernel prints
    at the file descriptor level is also echoed there)."""
    written = 0
    megabyte = memoryview((b"x" * 1023 + b"\n") * 1024)
    for stream in (sys.stdout, sys.stderr):
        fd = getattr(stream, "_original_stdstream_copy", None)
        fd = stream.fileno() if fd is None else fd
        os.write(fd, forged_line.encode() + b"\n")
        for _ in range(int(megabytes) // 2):
            done = 0
            while done < len(megabyte):
                done += os.write(fd, megabyte[done:])
            written += done
    return {"succeeded": written >= int(megabytes) * 1024 * 1024, "written": written}


def redirect_sockets(target: str) -> dict[str, object]:
    """Replace each of the kernel's ZMQ sockets (by path) with a symlink to C{target}, so that
    whoever connects by path next reaches C{target} instead. The kernel's own sockets stay
    bound (unlinking a socket's path does not close it)."""
    from ipykernel.connect import get_connection_file

    with open(get_connection_file()) as f:
        info = json.load(f)
    replaced = []
    for channel in ("shell", "iopub", "stdin", "control", "hb"):
        path = f"{info['ip']}-{info[channel + '_port']}"
        try:
            os.unlink(path)
            os.symlink(target, path)
        except OSError as e:
            return {"succeeded": False, "error": f"{path}: {e.strerror}"}
        replaced.append(path)
    return {"succeeded": True, "replaced": replaced}

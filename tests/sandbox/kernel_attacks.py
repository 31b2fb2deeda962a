"""What a chat user tries from a kernel, beyond what a visitor tries from a program: the kernel
runs attacks.py (read, connect, fork_bomb, memory_hog...), then this file, then one call.

Each attack returns a dict; "succeeded" says whether it got what it wanted. Standard library
and jupyter_client only (what the kernel's environment has).
"""

import contextlib
import json
import os
import socket


def secrets_in_reach(marker: str) -> dict[str, object]:
    """A secret in the kernel's environment, or in any process's environment or command line
    (jupybot's bot password, the gateway's token)."""
    found = []
    if any(marker in value for value in os.environ.values()):
        found.append("os.environ")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for name in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(f"/proc/{pid}/{name}")
            except OSError:
                continue
    return {"succeeded": bool(found), "found": found}


def list_directory(path: str) -> dict[str, object]:
    try:
        return {"succeeded": True, "entries": sorted(os.listdir(path))}
    except OSError as e:
        return {"succeeded": False, "error": e.strerror}


def run_in_other_kernel(connection_file: str, code: str, marker: str) -> dict[str, object]:
    """Read another owner's connection file (its ZMQ key) and run code in its kernel."""
    try:
        with open(connection_file) as f:
            info = json.load(f)
    except OSError as e:
        return {"succeeded": False, "error": e.strerror}
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient()
    client.load_connection_info(info)
    client.start_channels()
    try:
        client.wait_for_ready(timeout=20)
        output = []
        client.execute_interactive(
            code,
            timeout=20,
            output_hook=lambda m: output.append(m["content"].get("text", "")),
        )
    except Exception as e:
        return {"succeeded": False, "error": repr(e)}
    finally:
        client.stop_channels()
    return {"succeeded": marker in "".join(output)}


def reach_other_kernel(transport: str, ip: str, port: str) -> dict[str, object]:
    """Connect to another kernel's shell socket without its key (a DoS, a probe)."""
    try:
        if transport == "ipc":
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(f"{ip}-{port}")
        else:
            socket.create_connection((ip, int(port)), timeout=5).close()
    except OSError as e:
        return {"succeeded": False, "error": e.strerror or str(e)}
    return {"succeeded": True}


def see_process(pid: str) -> dict[str, object]:
    """See jupybot's process, and signal it (signal 0: the check kill() makes first)."""
    visible = str(pid) in os.listdir("/proc")
    try:
        os.kill(int(pid), 0)
        signalled = True
    except OSError:
        signalled = False
    return {"succeeded": visible or signalled, "visible": visible, "signalled": signalled}


def identity() -> dict[str, object]:
    with open("/proc/self/status") as f:
        status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
    return {
        "uid": os.getuid(),
        "cap_eff": status["CapEff"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "home": os.path.expanduser("~"),
        "environ": sorted(os.environ),
        "tmp": sorted(os.listdir("/tmp")),
        "shm": sorted(os.listdir("/dev/shm")),
    }


def leave_file(name: str) -> dict[str, object]:
    for directory in ("/tmp", os.path.expanduser("~")):
        with open(os.path.join(directory, name), "w") as f:
            f.write("x")
    return {"succeeded": True}


def find_file(name: str) -> dict[str, object]:
    found = [d for d in ("/tmp", os.path.expanduser("~")) if os.path.exists(os.path.join(d, name))]
    return {"succeeded": bool(found), "found": found}


def fill_storage(megabytes: str) -> dict[str, object]:
    """Write to the host's storage through the one host directory the kernel may write to: its
    ZMQ sockets directory. Cleans up after itself."""
    from ipykernel.connect import get_connection_file

    directory = os.path.join(os.path.dirname(get_connection_file()), "sockets")
    written = 0
    chunk = b"x" * (16 * 1024 * 1024)
    paths: list[str] = []
    try:
        while written < int(megabytes):
            path = os.path.join(directory, f"filler-{len(paths)}")
            paths.append(path)
            with open(path, "wb") as f:
                for _ in range(4):
                    f.write(chunk)
                    written += 16
    except (OSError, MemoryError) as e:
        error = str(e)
    else:
        error = ""
    finally:
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return {"succeeded": written >= int(megabytes), "written_mb": written, "error": error}

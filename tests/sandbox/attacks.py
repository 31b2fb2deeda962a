"""What a visitor tries from inside a program: run as `python3 -c <this file> ATTACK ARGS...`.

Prints one JSON line; "succeeded" says whether the attack got what it wanted. Standard library
only: it runs on whatever Python the sandbox shows.
"""

import ctypes
import json
import os
import socket
import sys
from typing import Any

Verdict = dict[str, Any]


def environ(marker: str) -> Verdict:
    """Read jupybot's environment (the bot tokens) from /proc."""
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read():
                    return {"succeeded": True, "pid": pid}
        except OSError:
            continue
    return {"succeeded": False}


def read(path: str, marker: str) -> Verdict:
    """Read jupybot's configuration or state."""
    try:
        with open(path) as f:
            return {"succeeded": marker in f.read()}
    except OSError as e:
        return {"succeeded": False, "error": e.strerror}


def processes(server_pid: str) -> Verdict:
    """See the server (and every process of the machine)."""
    visible = [p for p in os.listdir("/proc") if p.isdigit()]
    return {"succeeded": server_pid in visible or len(visible) > 20, "visible": len(visible)}


def signal(server_pid: str) -> Verdict:
    """Signal the server (signal 0: the check kill() makes before it kills)."""
    try:
        os.kill(int(server_pid), 0)
    except OSError as e:
        return {"succeeded": False, "error": e.strerror}
    return {"succeeded": True}


def ptrace(server_pid: str) -> Verdict:
    """Attach a debugger to the server (and so read its memory, its secrets)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pid = int(server_pid)
    if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
        return {"succeeded": False, "error": os.strerror(ctypes.get_errno())}
    os.waitpid(pid, 0)
    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH: let it run on
    return {"succeeded": True}


def connect(port: str) -> Verdict:
    """Reach jupybot's (or the gateway's) loopback port."""
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
    except OSError as e:
        return {"succeeded": False, "error": e.strerror or str(e)}
    return {"succeeded": True}


def write_outside(directory: str) -> Verdict:
    """Write outside the session's /tmp and home: system directories, jupybot's directory."""
    written = []
    for target in ("/usr/pwned", "/etc/pwned", "/pwned", f"{directory}/pwned"):
        try:
            with open(target, "w") as f:
                f.write("x")
            written.append(target)
            os.unlink(target)
        except OSError:
            continue
    return {"succeeded": bool(written), "written": written}


def identity() -> Verdict:
    with open("/proc/self/status") as f:
        status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
    try:
        open("/etc/shadow").close()
        shadow = True
    except OSError:
        shadow = False
    libc = ctypes.CDLL(None, use_errno=True)
    nested = libc.unshare(0x10000000) == 0  # CLONE_NEWUSER
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "cap_eff": status["CapEff"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "shadow": shadow,
        "nested_userns": nested,
        "etc": sorted(os.listdir("/etc")),
    }


def leave_files() -> Verdict:
    for path in ("/tmp/left-by-a-visitor", os.path.expanduser("~/left-by-a-visitor")):
        with open(path, "w") as f:
            f.write("x")
    return {"succeeded": True}


def find_files() -> Verdict:
    found = [
        p
        for p in ("/tmp/left-by-a-visitor", os.path.expanduser("~/left-by-a-visitor"))
        if os.path.exists(p)
    ]
    return {"succeeded": bool(found), "found": found}


def fork_bomb(count: str) -> Verdict:
    started = 0
    children = []
    try:
        for _ in range(int(count)):
            pid = os.fork()
            if pid == 0:
                import time

                time.sleep(30)
                os._exit(0)
            children.append(pid)
            started += 1
    except OSError:
        pass
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)  # a kernel lives on: leave no zombies
    return {"succeeded": started >= int(count), "started": started}


def memory_hog(megabytes: str) -> Verdict:
    held = []
    try:
        for _ in range(int(megabytes) // 16):
            held.append(bytearray(16 * 1024 * 1024))
    except MemoryError:
        pass
    return {"succeeded": len(held) * 16 >= int(megabytes), "held_mb": len(held) * 16}


def fill_memory_files(megabytes: str) -> Verdict:
    """Store more than the session's memory in its in-memory folders (not rlimited)."""
    stored = 0
    chunk = b"x" * (1024 * 1024)
    for folder in ("/tmp", "/dev/shm", os.path.expanduser("~")):
        try:
            with open(os.path.join(folder, "fill"), "wb") as f:
                while stored < int(megabytes):
                    f.write(chunk)
                    f.flush()
                    stored += 1
        except OSError:
            continue
    return {"succeeded": stored >= int(megabytes), "stored_mb": stored}


def interfaces() -> Verdict:
    return {"interfaces": sorted(name for _, name in socket.if_nameindex())}


# Run as `python3 -c <this file> ATTACK ARGS...`; in a kernel (attacks.py then
# kernel_attacks.py, then one call) nothing runs here.
if __name__ == "__main__" and sys.argv[0] == "-c":
    name, *args = sys.argv[1:]
    print(json.dumps(globals()[name](*args)), flush=True)

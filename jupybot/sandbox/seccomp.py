"""The syscall filter of every sandbox: what the kernel refuses a sandboxed program outright.

It is compiled once, when the sandbox is prepared, by libseccomp (through ``pyseccomp``, a
ctypes binding over the system's ``libseccomp2``), exported as BPF into the sandbox's private
directory, and handed to bubblewrap (``--seccomp FD``), which loads it just before it runs the
program: bubblewrap's own set-up (mounts, namespaces) is not filtered, everything the program
and its children do is, and no process can lift it.

Everything is allowed but what is listed here: the calls Docker's default profile refuses
(it allows a list and refuses the rest; a list of what to refuse cannot forget a call a
program needs, and the calls it names are the ones that give a stranger a way out or a way to
another session), plus io_uring, ``TIOCSTI``/``TIOCLINUX`` and every socket family but Unix
(and IP where the profile has the network). Most of them already need a capability no sandbox
has; the filter shuts the kernel code behind them, which is where escapes are found, and the
few that need none (keyrings, userfaultfd, io_uring, perf, vsock) are what one session could
use to read or starve another.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from pathlib import Path

import pyseccomp  # type: ignore[import-untyped]

__all__ = ["REFUSED", "REFUSED_UNKNOWN", "export_filters", "filter_file"]

# Refused with EPERM, as Docker does: a program sees "not permitted" and goes on without it.
REFUSED = (
    # Keyrings are shared by every process of the host user and inherited from jupybot's
    # session (systemd gives every service one): one visitor read another's key.
    "add_key",
    "keyctl",
    "request_key",
    # Kernel surface a program has no use for, often the way out of a container.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "fanotify_init",
    "open_by_handle_at",
    "name_to_handle_at",
    "kcmp",
    "lookup_dcookie",
    # Namespaces and mounts: bubblewrap has made the sandbox's, and no program makes more.
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    # The machine's, never a session's: modules, kexec, clocks, swap, accounting, quotas.
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "stime",
    "sethostname",
    "setdomainname",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "nfsservctl",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "vm86",
    "vm86old",
    # Memory placement across NUMA nodes (Docker: CAP_SYS_NICE only).
    "mbind",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "migrate_pages",
    "move_pages",
)
# Refused with ENOSYS, "not in this kernel": programs that try them fall back to what they
# did before they existed (libuv and Rust's tokio to threads, glibc's pthread_create and
# posix_spawn to clone, whose flags the filter can read; clone3's are behind a pointer).
REFUSED_UNKNOWN = ("io_uring_setup", "io_uring_enter", "io_uring_register", "clone3")

# ioctl requests on a terminal: TIOCSTI types into it (into the shell of whoever has the
# terminal), TIOCLINUX reads and writes the Linux console.
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
# clone() flags that make a namespace (bubblewrap's --disable-userns stops user namespaces, the
# missing capabilities the others; the filter keeps the code behind them shut too).
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)
# Socket families: Unix always; netlink for NETLINK_ROUTE alone, which glibc reads to answer
# getaddrinfo(AI_ADDRCONFIG) and if_nameindex (the interfaces and addresses of the sandbox's
# own network namespace, or the host's with the network; changing them needs a capability);
# IPv4 and IPv6 only with the network. Everything else is refused: VSOCK (the hypervisor),
# packet sockets, the other netlink protocols (sock_diag lists the host's sockets, audit,
# uevents), Bluetooth, ALG and the rest.
_UNIX = socket.AF_UNIX
_NETLINK = 16
_NETLINK_ROUTE = 0
_INTERNET = (socket.AF_INET, socket.AF_INET6)


def build_filter(network: bool) -> pyseccomp.SyscallFilter:
    """The filter of a sandbox with or without the network."""
    refuse = pyseccomp.ERRNO(errno.EPERM)
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    # A syscall of another ABI (i386's int 0x80, x32) would skip every rule: refuse them all.
    rules.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.ERRNO(errno.ENOSYS))
    for name in REFUSED:
        _add(rules, refuse, name)
    for name in REFUSED_UNKNOWN:
        _add(rules, pyseccomp.ERRNO(errno.ENOSYS), name)
    for request in (TIOCSTI, TIOCLINUX):
        # The request is an unsigned int: the kernel ignores the upper half of the register.
        _add(rules, refuse, "ioctl", pyseccomp.Arg(1, pyseccomp.MASKED_EQ, 0xFFFFFFFF, request))
    for flag in NAMESPACE_FLAGS:
        _add(rules, refuse, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    allowed = {_UNIX, _NETLINK, *(_INTERNET if network else ())}
    # Values are compared as 64 bits: anything above the last family (upper bits included)
    # is refused whole.
    for family in range(_NETLINK + 1):
        if family not in allowed:
            _add(rules, refuse, "socket", pyseccomp.Arg(0, pyseccomp.EQ, family))
    _add(rules, refuse, "socket", pyseccomp.Arg(0, pyseccomp.GT, _NETLINK))
    _add(
        rules,
        refuse,
        "socket",
        pyseccomp.Arg(0, pyseccomp.EQ, _NETLINK),
        pyseccomp.Arg(2, pyseccomp.NE, _NETLINK_ROUTE),
    )
    return rules


def _add(rules: pyseccomp.SyscallFilter, action: int, name: str, *args: object) -> None:
    # A call an older libseccomp does not know (EINVAL) cannot be refused by name; the tests
    # check that this host's knows every one (a misspelt name would be skipped too).
    with contextlib.suppress(OSError):
        rules.add_rule(action, name, *args)


def filter_file(directory: Path, network: bool) -> Path:
    return directory / ("seccomp-network.bpf" if network else "seccomp.bpf")


def export_filters(directory: Path) -> None:
    """Compile both filters (with and without the network) into C{directory}, readable by
    jupybot alone: the launch opens them before it drops to the sandbox's user."""
    for network in (False, True):
        path = filter_file(directory, network)
        with open(path, "wb") as out:
            build_filter(network).export_bpf(out)
        path.chmod(0o600)

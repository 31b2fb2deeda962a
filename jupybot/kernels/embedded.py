"""The embedded Kernel Gateway: a child process jupybot starts when no `gateway.url` is set.

It listens on loopback on a port jupybot chooses, with a random token, and is supervised
(L{ProcessSupervisor}: restarted with backoff if it dies, SIGTERM then SIGKILL on shutdown).
jupybot never learns anything from what the gateway prints, which its kernels could write too
(docs/kernels.md): the address is jupybot's own choice, and the gateway is ready once the port
is listened on by the gateway's own process (read in /proc, before the token is sent there)
and `GET /api` with the token answers 200. What it prints is only logged, within a budget. The
gateway shuts its kernels down when it stops; kernels also die with it (bubblewrap's
--die-with-parent).

It dies with jupybot, even a SIGKILLed one (its parent-death signal), and its kernels with it.
Its pid, start time and directory are also recorded under `storage.path`, so that a gateway that
outlived a jupybot anyway (killed as it spawned the gateway, or an older jupybot's) has it and
its kernels killed by the next start.

It gets none of jupybot's environment (where the bot passwords and tokens are): only the
locale, PATH, its token and Jupyter directories of its own. Its kernel manager class
(L{jupybot.kernels.gateway_kernels}) runs each kernel in a sandbox of its own, as the
L{KernelSandboxPlan} jupybot hands it says.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from treq.client import HTTPClient
from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.client import Agent

from ..reactor import NetworkReactor, ProcessReactor
from ..sandbox.kernels import KernelSandboxPlan, remove_kernel_cgroups
from . import _leftovers
from ._supervisor import Command, ProcessSupervisor
from .rest import quiet_pool

log = Logger()

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 90.0
# How often a starting gateway is asked whether it serves: every 50 ms for its first 10 s (it
# serves after about a second), then every second.
READY_POLL = 0.05
READY_POLL_SLOW = 1.0
READY_POLL_FAST_FOR = 10.0
READY_REQUEST_TIMEOUT = 2.0
# Seconds between SIGTERM and SIGKILL when it stops (procmon's killTime).
STOP_GRACE = 10.0
# A gateway that stayed up this long is healthy: the next crash starts the backoff anew
# (procmon's threshold).
HEALTHY_AFTER = 60.0
# Restart delays: 1 s, then growing to at most a minute while it keeps dying.
RESTART_DELAY = backoffPolicy(initialDelay=1.0, maxDelay=60.0, factor=2.0)
# What the gateway keeps of jupybot's environment: nothing secret, nothing it would pass on.
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
MANAGER_CLASS = "jupybot.kernels.gateway_kernels.SandboxedKernelManager"
WORK_PREFIX = "jupybot-gateway-"
# Joins the cgroup.procs file given first, then execs the rest.
_JOIN = 'echo $$ > "$1" || exit 126; shift; exec "$@"'


class GatewayReactor(ProcessReactor, NetworkReactor, Protocol):
    """The gateway's process, and the HTTP requests that ask whether it serves."""


class EmbeddedGateway:
    """Runs `python -m kernel_gateway`; C{on_ready(url, token)} is called after every (re)start,
    C{on_restart()} after every death. With a C{record} file, what a SIGKILLed predecessor left
    is killed at start (L{_leftovers})."""

    def __init__(
        self,
        reactor: GatewayReactor,
        runtime_dir: Path,
        on_ready: Callable[[str, str], None],
        on_restart: Callable[[], None],
        record: Path | None = None,
        python: str = sys.executable,
        restart_delay: Callable[[int], float] = RESTART_DELAY,
    ) -> None:
        self._reactor = reactor
        self._runtime_dir = runtime_dir
        self._gateway_runtime = runtime_dir
        self._on_ready = on_ready
        self._on_restart = on_restart
        self._record = record
        self._python = python
        self.token = secrets.token_urlsafe(32)
        self.url: str | None = None
        # True from the first `GET /api` answered until the process ends.
        self.serving = False
        self._http = HTTPClient(Agent(reactor, pool=quiet_pool(reactor)))
        self._ready_waiters: list[Deferred[str]] = []
        self._port = 0
        self._plan: KernelSandboxPlan | None = None
        # The gateway's own directory: its Jupyter dirs, the plan, the kernels' directories.
        self._work: Path | None = None
        self.process = ProcessSupervisor(
            reactor,
            "kernels: the embedded Kernel Gateway",
            self._command,
            on_line=self._output_line,
            restart_delay=restart_delay,
            on_spawn=self._spawned,
            on_death=self._died,
            threshold=HEALTHY_AFTER,
            kill_time=STOP_GRACE,
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def next_ready(self) -> Deferred[str]:
        """Fires with the URL the next time the gateway serves (after a restart too)."""
        d: Deferred[str] = Deferred()
        self._ready_waiters.append(d)
        return d

    def problem(self) -> str | None:
        """Why the gateway does not serve right now, or None."""
        if self.serving:
            return None
        if self.process.restart_pending:
            return "the embedded Kernel Gateway died and is restarting"
        return "the embedded Kernel Gateway is starting"

    def start(self, plan: KernelSandboxPlan) -> Deferred[str]:
        """Stop what a killed predecessor left, spawn the gateway, whose kernels are contained
        as C{plan} says; fire with its URL once it serves."""
        return Deferred.fromCoroutine(self._start(plan))

    async def _start(self, plan: KernelSandboxPlan) -> str:
        await self._end_predecessor()
        ready = self.next_ready()
        # Searchable by the sandbox user, who must reach its kernel's directory below. In memory
        # where there is /dev/shm: a kernel may write in its sockets directory, and what it
        # writes on a tmpfs is charged to its cgroup's memory rather than filling the disk.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
        self._work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=shm))
        self._work.chmod(0o711)
        for name in ("home", "config", "data"):
            (self._work / name).mkdir(mode=0o700)
        # kernels: their directories; tmp: the gateway's temporary files, among them its
        # sandbox's /etc/passwd, which bubblewrap reads as the sandbox user.
        for name in ("kernels", "tmp"):
            (self._work / name).mkdir()
            (self._work / name).chmod(0o711)  # jupybot's umask is 077
        self._plan = replace(plan, root=str(self._work / "kernels"))
        plan_file = self._work / "kernel-sandbox.json"
        plan_file.write_text(self._plan.to_json())
        plan_file.chmod(0o600)
        if plan.gateway_ids is not None:
            # Its own user's: everything in its directory (jupybot's runtime directory, in
            # the state directory, is not for it to reach).
            self._gateway_runtime = self._work / "runtime"
            self._gateway_runtime.mkdir(mode=0o700)
            for path in [self._work, *self._work.iterdir()]:
                os.chown(path, *plan.gateway_ids, follow_symlinks=False)
        self.process.start()
        ready.addTimeout(STARTUP_TIMEOUT, IReactorTime(self._reactor))
        return await ready

    async def _end_predecessor(self) -> None:
        """Kill the gateway (and its kernels) a SIGKILLed jupybot left running, if the record
        still names that very process, and remove its directory."""
        if self._record is None:
            return
        previous = _leftovers.read_record(self._record)
        if previous is None:
            return
        killed = _leftovers.kill_tree(previous)
        if killed:
            log.warn(
                "kernels: killed the embedded Kernel Gateway a previous jupybot left running "
                "(pid {pid}, with {count} process(es) below it)",
                pid=previous.pid,
                count=len(killed) - 1,
            )
            deadline = self._reactor.seconds() + STOP_GRACE
            while _leftovers.any_alive(killed) and self._reactor.seconds() < deadline:
                await deferLater(IReactorTime(self._reactor), 0.05, lambda: None)
        self._remove_directory_of(previous)

    def _remove_directory_of(self, previous: _leftovers.GatewayRecord) -> None:
        work = Path(previous.work)
        if work.name.startswith(WORK_PREFIX) and work.is_dir():
            shutil.rmtree(work, ignore_errors=True)
        self._forget_record()

    def _forget_record(self) -> None:
        if self._record is not None:
            self._record.unlink(missing_ok=True)

    def _environment(self) -> dict[str, str]:
        """The gateway's whole environment."""
        assert self._work is not None
        env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
        env.update(
            KG_AUTH_TOKEN=self.token,
            HOME=str(self._work / "home"),
            JUPYTER_CONFIG_DIR=str(self._work / "config"),
            JUPYTER_DATA_DIR=str(self._work / "data"),
            JUPYTER_RUNTIME_DIR=str(self._gateway_runtime),
            TMPDIR=str(self._work / "tmp"),
            PYTHONUNBUFFERED="1",
        )
        return env

    def _command(self) -> Command:
        """The gateway's command line, on the port it had (clients keep finding it)."""
        assert self._work is not None and self._plan is not None
        self._port = self._port or _free_port()
        self._gateway_runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._remove_kernel_leftovers()
        argv: list[str] = [
            self._python,
            "-m",
            "kernel_gateway",
            f"--KernelGatewayApp.ip={HOST}",
            f"--KernelGatewayApp.port={self._port}",
            # This port or none: jupybot probes the port it chose, never one the gateway says.
            "--KernelGatewayApp.port_retries=0",
            f"--SeedingMappingKernelManager.kernel_manager_class={MANAGER_CLASS}",
            f"--SandboxedKernelManager.kernel_sandbox_plan={self._work / 'kernel-sandbox.json'}",
        ]
        # Killed with jupybot, even by SIGKILL (its kernels die with it: --die-with-parent).
        # setpriv sets it last, after its credential changes, which would clear it. A gateway
        # that outlives jupybot anyway (killed in the few ms before that) is the next start's.
        dies_with_jupybot = "--pdeathsig=KILL"
        setpriv = shutil.which("setpriv") or "setpriv"
        ids = self._plan.gateway_ids
        if ids is None:
            argv = [setpriv, dies_with_jupybot, "--", *argv]
        else:
            argv = [setpriv, f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups",
                    "--no-new-privs", "--inh-caps=-all", dies_with_jupybot, "--", *argv]  # fmt: skip
            if self._plan.view:
                # Still root: into the sandbox's view, where jupybot's Python and package are
                # reachable by the gateway's user whatever folder they are in (and nothing
                # else of that folder is). Entering a mount namespace moves to its root: back
                # to the gateway's directory.
                nsenter = shutil.which("nsenter") or "nsenter"
                argv = [nsenter, f"--mount={self._plan.view}", f"--wdns={self._work}", "--",
                        *argv]  # fmt: skip
        if self._plan.cgroup_version == 2:
            # v2 moves a process between groups only for whoever may write the procs of both
            # groups' common ancestor: the gateway puts its kernels in their groups only from
            # a leaf of the group it owns.
            leaf = Path(dict(self._plan.cgroup_parents)["unified"]) / "gateway"
            leaf.mkdir(mode=0o755, exist_ok=True)
            argv = ["/bin/sh", "-c", _JOIN, "jupybot-gateway", str(leaf / "cgroup.procs"), *argv]
        who = self._plan.gateway_user or "jupybot's user"
        log.info("kernels: starting the embedded Kernel Gateway as {who}", who=who)
        return Command(argv, self._environment(), str(self._work))

    def _spawned(self, pid: int) -> None:
        assert self._work is not None
        if self._record is not None:
            _leftovers.write_record(self._record, pid, self._work)
        Deferred.fromCoroutine(self._wait_until_serving(pid, self._port)).addErrback(
            lambda f: log.failure("kernels: waiting for the embedded Kernel Gateway failed", f)
        )

    async def _wait_until_serving(self, pid: int, port: int) -> None:
        """Ready once process C{pid} itself listens on C{port} and answers `GET /api` with the
        token; given up when that process is no longer the gateway."""
        started = self._reactor.seconds()
        while self.process.pid == pid:
            if listens_on(pid, HOST, port) and await self._answers(port):
                if self.process.pid == pid:
                    self._serving(port)
                return
            fast = self._reactor.seconds() - started < READY_POLL_FAST_FOR
            delay = READY_POLL if fast else READY_POLL_SLOW
            await deferLater(IReactorTime(self._reactor), delay, lambda: None)

    async def _answers(self, port: int) -> bool:
        headers: dict[bytes | str, list[bytes | str]] = {
            b"Authorization": [f"token {self.token}".encode()]
        }
        try:
            response = await self._http.get(
                f"http://{HOST}:{port}/api", headers=headers, timeout=READY_REQUEST_TIMEOUT
            )
            await response.content()
        except Exception:
            return False
        return bool(response.code == 200)

    def _serving(self, port: int) -> None:
        self.url = f"http://{HOST}:{port}"
        self.serving = True
        log.info("kernels: embedded Kernel Gateway ready at {url}", url=self.url)
        self._on_ready(self.url, self.token)
        waiting, self._ready_waiters = self._ready_waiters, []
        for d in waiting:
            if not d.called:
                d.callback(self.url)

    def _remove_kernel_leftovers(self) -> None:
        """What a gateway that died left: its kernels' directories and cgroups, its temporary
        files."""
        assert self._plan is not None and self._work is not None
        for name in ("kernels", "tmp"):
            for path in (self._work / name).iterdir():
                shutil.rmtree(path, ignore_errors=True)
        remove_kernel_cgroups(self._plan)

    def _output_line(self, line: bytes) -> None:
        """A line the gateway printed: logged, never interpreted."""
        log.debug("kernel gateway: {line}", line=line.decode("utf-8", "replace"))

    def _died(self, why: str, delay: float) -> None:
        if not self.serving:
            # It never served on that port (taken meanwhile?): the next start tries another.
            self._port = 0
        self.serving = False
        self._forget_record()
        log.error(
            "kernels: the embedded Kernel Gateway stopped ({status}); its kernels are lost; "
            "restarting in {delay:.0f}s",
            status=why,
            delay=delay,
        )
        self._on_restart()

    async def stop(self) -> None:
        self.serving = False
        try:
            await self.process.stop()
        finally:
            self._forget_record()
            if self._plan is not None:
                remove_kernel_cgroups(self._plan)
                delegated = self._plan.cgroups()
                if delegated is not None:
                    delegated.remove_all()
            if self._work is not None:
                shutil.rmtree(self._work, ignore_errors=True)
                self._work = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def listens_on(pid: int, host: str, port: int) -> bool:
    """Does process C{pid} itself hold the socket listening on C{host}:C{port} (IPv4)? Read
    in /proc: the listening socket's inode in /proc/net/tcp among the process's open files."""
    address = socket.inet_aton(host)[::-1].hex().upper() + f":{port:04X}"
    inodes = set()
    try:
        with open(f"/proc/{pid}/net/tcp") as table:
            next(table)  # the header
            for row in table:
                fields = row.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    # The kernel lists the listening sockets first: what follows, one row per
                    # connection, is not generated (90 ms for a table a bench had filled).
                    break
                if fields[1] == address:
                    inodes.add(f"socket:[{fields[9]}]")
        if not inodes or not (held := _open_files(pid) & inodes):
            return False
        # Until it execs the gateway, the child jupybot forked holds jupybot's own descriptors:
        # a socket jupybot holds itself is not the gateway's (a test's impostor got the token so).
        return not held & _open_files(os.getpid())
    except OSError:
        return False


def _open_files(pid: int) -> set[str]:
    """What process C{pid}'s descriptors name (C{socket:[inode]} for a socket)."""
    names = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with suppress(OSError):
            names.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return names

"""The embedded Kernel Gateway: a child process jupybot starts when no `gateway.url` is set.

It listens on loopback on a free port with a random token, is watched for its "is available
at" line (readiness), restarted with backoff if it dies, and stopped (SIGTERM, then SIGKILL) on
shutdown. The gateway shuts its kernels down when it stops; kernels also die with it (bubblewrap's
--die-with-parent).

It gets none of jupybot's environment (where the bot passwords and tokens are): only the
locale, PATH, its token and Jupyter directories of its own. Its kernel manager class
(L{jupybot.kernels.gateway_kernels}) runs each kernel in a sandbox of its own, as the
L{KernelSandboxPlan} jupybot hands it says.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..parts import Reactor
from ..sandbox.kernels import KernelSandboxPlan, remove_kernel_cgroups

log = Logger()

_READY = re.compile(rb"Kernel Gateway \S+ is available at (http://[\w.:\[\]]+)")

STARTUP_TIMEOUT = 90.0
STOP_GRACE = 10.0
MAX_BACKOFF = 60.0
# A gateway that stayed up this long is considered healthy: the next crash starts backoff anew.
HEALTHY_AFTER = 60.0
# What the gateway keeps of jupybot's environment: nothing secret, nothing it would pass on.
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
MANAGER_CLASS = "jupybot.kernels.gateway_kernels.SandboxedKernelManager"
MAX_LINE = 64 * 1024


class _GatewayProcess(ProcessProtocol):
    def __init__(self, owner: EmbeddedGateway) -> None:
        self.owner = owner
        self.ended: Deferred[None] = Deferred()
        self._buffer = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        # Kernels share the gateway's stdout and stderr: one that writes without newlines must
        # not grow jupybot's memory.
        if len(self._buffer) > MAX_LINE:
            lines.append(self._buffer[:MAX_LINE])
            self._buffer = b""
        for line in lines:
            self.owner.line_received(line)

    def processEnded(self, reason: Failure) -> None:
        self.owner.process_ended(self, reason)
        if not self.ended.called:
            self.ended.callback(None)


class EmbeddedGateway:
    """Runs `python -m kernel_gateway`; C{on_ready(url, token)} is called after every (re)start."""

    def __init__(
        self,
        reactor: Reactor,
        runtime_dir: Path,
        on_ready: Callable[[str, str], None],
        on_restart: Callable[[], None],
        python: str = sys.executable,
    ) -> None:
        self._reactor = reactor
        self._runtime_dir = runtime_dir
        self._on_ready = on_ready
        self._on_restart = on_restart
        self._python = python
        self.token = secrets.token_urlsafe(32)
        self.url: str | None = None
        self._process: _GatewayProcess | None = None
        self._transport: object | None = None
        self._ready: Deferred[str] | None = None
        self._stopping = False
        self._backoff = 1.0
        self._started_at = 0.0
        self._restart_call: IDelayedCall | None = None
        self._port = 0
        self._plan: KernelSandboxPlan | None = None
        # The gateway's own directory: its Jupyter dirs, the plan, the kernels' directories.
        self._work: Path | None = None

    def start(self, plan: KernelSandboxPlan) -> Deferred[str]:
        """Spawn the gateway, whose kernels are contained as C{plan} says; fire with its URL
        once it serves."""
        self._ready = Deferred()
        ready = self._ready
        # Searchable by the sandbox user, who must reach its kernel's directory below. In memory
        # where there is /dev/shm: a kernel may write in its sockets directory, and what it
        # writes on a tmpfs is charged to its cgroup's memory rather than filling the disk.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
        self._work = Path(tempfile.mkdtemp(prefix="jupybot-gateway-", dir=shm))
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
        self._spawn()
        ready.addTimeout(STARTUP_TIMEOUT, self._reactor)
        return ready

    def _environment(self) -> dict[str, str]:
        """The gateway's whole environment."""
        assert self._work is not None
        env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
        env.update(
            KG_AUTH_TOKEN=self.token,
            HOME=str(self._work / "home"),
            JUPYTER_CONFIG_DIR=str(self._work / "config"),
            JUPYTER_DATA_DIR=str(self._work / "data"),
            JUPYTER_RUNTIME_DIR=str(self._runtime_dir),
            TMPDIR=str(self._work / "tmp"),
            PYTHONUNBUFFERED="1",
        )
        return env

    def _spawn(self) -> None:
        assert self._work is not None and self._plan is not None
        self._port = self._port or _free_port()
        self._runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._remove_kernel_leftovers()
        argv = [
            self._python,
            "-m",
            "kernel_gateway",
            "--KernelGatewayApp.ip=127.0.0.1",
            f"--KernelGatewayApp.port={self._port}",
            "--KernelGatewayApp.port_retries=50",
            f"--SeedingMappingKernelManager.kernel_manager_class={MANAGER_CLASS}",
            f"--SandboxedKernelManager.kernel_sandbox_plan={self._work / 'kernel-sandbox.json'}",
        ]
        self._process = _GatewayProcess(self)
        self._started_at = self._reactor.seconds()
        self._transport = self._reactor.spawnProcess(
            self._process,
            argv[0],
            argv,
            env=self._environment(),
            path=str(self._work),
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        log.info("kernels: starting the embedded Kernel Gateway")

    def _remove_kernel_leftovers(self) -> None:
        """What a gateway that died left: its kernels' directories and cgroups, its temporary
        files."""
        assert self._plan is not None and self._work is not None
        for name in ("kernels", "tmp"):
            for path in (self._work / name).iterdir():
                shutil.rmtree(path, ignore_errors=True)
        remove_kernel_cgroups(self._plan)

    def line_received(self, line: bytes) -> None:
        match = _READY.search(line)
        if match is None:
            log.debug("kernel gateway: {line}", line=line.decode("utf-8", "replace"))
            return
        self.url = match.group(1).decode()
        self._port = int(self.url.rsplit(":", 1)[1])
        log.info("kernels: embedded Kernel Gateway ready at {url}", url=self.url)
        self._on_ready(self.url, self.token)
        if self._ready is not None and not self._ready.called:
            self._ready.callback(self.url)

    def process_ended(self, process: _GatewayProcess, reason: Failure) -> None:
        self._process = None
        self._transport = None
        if self._stopping:
            return
        status = "exited" if reason.check(ProcessDone) else reason.getErrorMessage()
        up_for = self._reactor.seconds() - self._started_at
        if up_for >= HEALTHY_AFTER:
            self._backoff = 1.0
        log.error(
            "kernels: the embedded Kernel Gateway stopped ({status}); its kernels are lost; "
            "restarting in {delay:.0f}s",
            status=status,
            delay=self._backoff,
        )
        self._on_restart()
        self._restart_call = self._reactor.callLater(self._backoff, self._spawn)
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    @property
    def pid(self) -> int | None:
        return getattr(self._transport, "pid", None)

    async def stop(self) -> None:
        self._stopping = True
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
        try:
            await self._stop_process()
        finally:
            if self._plan is not None:
                remove_kernel_cgroups(self._plan)
            if self._work is not None:
                shutil.rmtree(self._work, ignore_errors=True)
                self._work = None

    async def _stop_process(self) -> None:
        process = self._process
        pid = self.pid
        if process is None or pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        process.ended.addTimeout(STOP_GRACE, self._reactor)
        try:
            await process.ended
        except Exception:
            log.warn("kernels: the embedded Kernel Gateway ignored SIGTERM; killing it")
            if self.pid is not None:
                os.kill(pid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port

"""Loaded by the embedded Kernel Gateway process, not by jupybot: the gateway's kernel manager
class, which runs every kernel it starts (and restarts) in a sandbox of its own.

The embedded gateway is started with
``--SeedingMappingKernelManager.kernel_manager_class=jupybot.kernels.gateway_kernels.SandboxedKernelManager``
and ``--SandboxedKernelManager.kernel_sandbox_plan=<file>``, the plan jupybot wrote
(L{jupybot.sandbox.kernels}). Per kernel this class:
  - talks ZMQ over the ``ipc`` transport, in the kernel's own directory (the kernel has no
    network namespace in common with the gateway), connecting only to the sockets it checked
    once the kernel made them (L{KernelDirectory.pin}), never by a path the kernel can replace;
  - sends the kernel's stdout and stderr to /dev/null: they would otherwise be the gateway's,
    which jupybot reads (a kernel printing a flood, or lines meant to pass for the gateway's);
  - replaces the kernel's environment (the gateway's, with its token) by the sandbox's own;
  - interrupts by message: a signal to the launch chain's process group would reach
    bubblewrap, which dies of SIGINT and takes the kernel with it;
  - makes the kernel's cgroup on each launch and removes it once the kernel is gone, with what
    the kernel left in its directory.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import Any, ClassVar

from kernel_gateway.services.kernels.manager import (  # type: ignore[import-untyped]
    KernelGatewayIOLoopKernelManager,
)
from traitlets import Unicode

from ..sandbox.cgroups import SessionCgroup
from ..sandbox.kernels import (
    KernelDirectory,
    KernelLaunches,
    KernelSandboxPlan,
    UnsafeKernelSocket,
    discard_group,
)

__all__ = ["SandboxedKernelManager"]

# How long a kernel's group may take to empty after its kernel was killed (seen: < 50 ms).
GROUP_REMOVAL_TRIES = 50
GROUP_REMOVAL_INTERVAL = 0.1
# How long a kernel may take to make its sockets (an idle one: about a second; fifty starting
# at once on two cores: tens of seconds), and how often the gateway looks.
SOCKETS_TIMEOUT = 300.0
SOCKETS_POLL = 0.02
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
# How long a shut-down kernel's socket descriptors stay taken (KernelDirectory.remove): longer
# than the gateway takes to close the ZMQ sockets of a kernel it removed.
RESERVED_FOR = 60.0


class SandboxedKernelManager(KernelGatewayIOLoopKernelManager):
    kernel_sandbox_plan = Unicode(
        "", config=True, help="The JSON file of jupybot's KernelSandboxPlan."
    )

    # One per gateway process: preparing the sandbox runs bubblewrap once.
    _launches: ClassVar[dict[str, KernelLaunches]] = {}
    _removals: ClassVar[set[asyncio.Task[None]]] = set()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transport = "ipc"
        self._directory: KernelDirectory | None = None
        self._cgroup: SessionCgroup | None = None

    @property
    def launches(self) -> KernelLaunches:
        plan_file = self.kernel_sandbox_plan
        if not plan_file:
            raise RuntimeError("SandboxedKernelManager.kernel_sandbox_plan is not set")
        if plan_file not in self._launches:
            plan = KernelSandboxPlan.from_json(Path(plan_file).read_text())
            self._launches[plan_file] = KernelLaunches(plan)
        return self._launches[plan_file]

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        launches = self.launches
        if self._directory is None:
            self._directory = launches.new_directory()
            self.connection_file = str(self._directory.connection_file)
            self.ip = self._directory.ip
        if launches.sandboxed:
            self.kernel_spec.interrupt_mode = "message"
        result: tuple[list[str], dict[str, Any]] = await super()._async_pre_start_kernel(**kw)
        return result

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        assert self._directory is not None
        launches = self.launches
        launch = launches.launch(kernel_cmd, dict(self.kernel_spec.env), self._directory)
        self._cgroup = launch.cgroup
        # independent: no JPY_PARENT_PID, whose watcher would take the sandbox's init (PID 1)
        # for a dead parent. bubblewrap's --die-with-parent (unsandboxed: setpriv's
        # --pdeathsig) does that job.
        kw.update(env=dict(launch.env), cwd=launches.host_cwd(self._directory), independent=True)
        if launches.sandboxed:
            null = subprocess.DEVNULL
            kw.update(stdin=null, stdout=null, stderr=null)
        await super()._async_launch_kernel(launch.argv, **kw)
        if launches.sandboxed:
            await self._pin_sockets(self._directory, launches.kernel_uid)

    async def _pin_sockets(self, directory: KernelDirectory, uid: int) -> None:
        """Wait until the kernel made its sockets, then check and pin them (before anything of
        the gateway connects: that comes after the launch). A kernel whose socket is not its
        own is killed."""
        ports = [int(getattr(self, f"{channel}_port")) for channel in CHANNELS]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SOCKETS_TIMEOUT
        while not directory.bound(ports):
            assert self.provisioner is not None
            if await self.provisioner.poll() is not None:
                return  # it died: the restarter sees to it; nothing connects unpinned
            if loop.time() > deadline:
                raise RuntimeError(f"the kernel made no sockets in {SOCKETS_TIMEOUT:.0f}s")
            await asyncio.sleep(SOCKETS_POLL)
        try:
            directory.pin(ports, uid)
        except (OSError, UnsafeKernelSocket) as e:
            self.log.error("jupybot: refusing kernel %s: %s", self.kernel_id, e)
            assert self.provisioner is not None
            await self.provisioner.kill()
            raise RuntimeError(f"the kernel's sockets are not its own: {e}") from e

    def _make_url(self, channel: str) -> str:
        """Where the gateway's ZMQ sockets connect: a sandboxed kernel's pinned socket."""
        if self._directory is None or not self.launches.sandboxed:
            url: str = super()._make_url(channel)
            return url
        return self._directory.socket_url(int(getattr(self, f"{channel}_port")))

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        group, self._cgroup = self._cgroup, None
        if group is not None:
            removal = asyncio.ensure_future(_remove_group(group))
            self._removals.add(removal)
            removal.add_done_callback(self._removals.discard)
        if self._directory is not None:
            if restart:
                self._directory.clear_sockets()
            else:
                reserved = self._directory.remove()
                self._directory = None
                loop = asyncio.get_running_loop()
                loop.call_later(RESERVED_FOR, _close, reserved)


def _close(descriptors: list[int]) -> None:
    for fd in descriptors:
        with suppress(OSError):
            os.close(fd)


async def _remove_group(group: SessionCgroup) -> None:
    for _ in range(GROUP_REMOVAL_TRIES):
        if discard_group(group):
            return
        await asyncio.sleep(GROUP_REMOVAL_INTERVAL)

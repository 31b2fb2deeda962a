"""Loaded by the embedded Kernel Gateway process, not by jupybot: the gateway's kernel manager
class, which runs every kernel it starts (and restarts) in a sandbox of its own.

The embedded gateway is started with
``--SeedingMappingKernelManager.kernel_manager_class=jupybot.kernels.gateway_kernels.SandboxedKernelManager``
and ``--SandboxedKernelManager.kernel_sandbox_plan=<file>``, the plan jupybot wrote
(L{jupybot.sandbox.kernels}). Per kernel this class:
  - talks ZMQ over the ``ipc`` transport, in the kernel's own directory (the kernel has no
    network namespace in common with the gateway);
  - replaces the kernel's environment (the gateway's, with its token) by the sandbox's own;
  - interrupts by message: a signal to the launch chain's process group would reach
    bubblewrap, which dies of SIGINT and takes the kernel with it;
  - makes the kernel's cgroup on each launch and removes it once the kernel is gone, with what
    the kernel left in its directory.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from kernel_gateway.services.kernels.manager import (  # type: ignore[import-untyped]
    KernelGatewayIOLoopKernelManager,
)
from traitlets import Unicode

from ..sandbox.cgroups import SessionCgroup
from ..sandbox.kernels import KernelDirectory, KernelLaunches, KernelSandboxPlan, discard_group

__all__ = ["SandboxedKernelManager"]

# How long a kernel's group may take to empty after its kernel was killed (seen: < 50 ms).
GROUP_REMOVAL_TRIES = 50
GROUP_REMOVAL_INTERVAL = 0.1


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
        await super()._async_launch_kernel(launch.argv, **kw)

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
                self._directory.remove()
                self._directory = None


async def _remove_group(group: SessionCgroup) -> None:
    for _ in range(GROUP_REMOVAL_TRIES):
        if discard_group(group):
            return
        await asyncio.sleep(GROUP_REMOVAL_INTERVAL)

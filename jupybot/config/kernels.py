"""`gateway:`: which Jupyter Kernel Gateway to use, and the kernel limits. Owned by the kernels part."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader, Secret


@dataclass(frozen=True)
class GatewayConfig:
    # None: start the embedded gateway as a child process.
    url: str | None
    token: Secret | None
    verify_tls: bool = True
    default_kernel: str = "python3"
    request_timeout_seconds: float = 30.0
    execution_timeout_seconds: float = 300.0
    # After an interrupt that the kernel ignores, how long before it is restarted.
    interrupt_grace_seconds: float = 10.0
    max_kernels: int = 20
    max_kernels_per_owner: int = 3
    # Kernels jupybot started and nobody used for this long are shut down (0: never).
    idle_cull_seconds: float = 3600.0
    # Kernel starts under way at once; the others wait their turn (0: one per core, at least 2).
    start_concurrency: int = 0
    # Kernels of default_kernel started ahead, so a new room's first run need not wait (0: none).
    prestart: int = 1
    # The embedded gateway's kernels, each in a sandbox of its own (docs/kernels.md): the host's
    # network (default: none, not even loopback), and what one kernel may use at most.
    kernel_network: bool = False
    kernel_memory_mb: int = 1024
    kernel_processes: int = 128
    # Share of one core (cgroups only; BLAS thread pools are sized to it).
    kernel_cpu_percent: int = 100
    # Who the embedded gateway, and so its kernels, run as when jupybot runs as root (never
    # root): a user name or a numeric uid; empty: sandbox.user.
    user: str = ""

    @classmethod
    def read(cls, r: Reader) -> GatewayConfig:
        url = r.url("url", None)
        token = r.secret("token")
        config = cls(
            url=url.rstrip("/") if url else None,
            token=token,
            verify_tls=r.boolean("verify_tls", True),
            default_kernel=r.string("default_kernel", "python3"),
            request_timeout_seconds=r.number("request_timeout_seconds", 30.0, minimum=1),
            execution_timeout_seconds=r.number("execution_timeout_seconds", 300.0, minimum=1),
            interrupt_grace_seconds=r.number("interrupt_grace_seconds", 10.0, minimum=0),
            max_kernels=r.integer("max_kernels", 20, minimum=1),
            max_kernels_per_owner=r.integer("max_kernels_per_owner", 3, minimum=1),
            idle_cull_seconds=r.number("idle_cull_seconds", 3600.0, minimum=0),
            start_concurrency=r.integer("start_concurrency", 0, minimum=0, maximum=256),
            prestart=r.integer("prestart", 1, minimum=0, maximum=100),
            kernel_network=r.boolean("kernel_network", False),
            kernel_memory_mb=r.integer("kernel_memory_mb", 1024, minimum=256),
            kernel_processes=r.integer("kernel_processes", 128, minimum=16, maximum=4096),
            kernel_cpu_percent=r.integer("kernel_cpu_percent", 100, minimum=10, maximum=6400),
            user=r.string("user", ""),
        )
        r.finish()
        return config

"""The kernels part: Jupyter kernels on a Kernel Gateway, for the chat front ends.

Platform-neutral: owners are opaque strings chosen by adapters (e.g. ``"matrix:!room:server"``).
See docs/kernels.md.
"""

from __future__ import annotations

from .api import (
    ClearOutput,
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    ExecutionListener,
    ExecutionResult,
    GatewayUnavailable,
    KernelDied,
    KernelError,
    KernelHandle,
    KernelLimitReached,
    KernelManager,
    KernelSpec,
    NoSuchKernel,
    OutputEvent,
    Stream,
    UnknownKernelSpec,
    UpdateDisplayData,
)
from .embedded import EmbeddedGateway
from .manager import GatewayKernelManager
from .part import KernelsPart, build_kernels

__all__ = [
    "ClearOutput",
    "DisplayData",
    "EmbeddedGateway",
    "ErrorOutput",
    "ExecuteResult",
    "ExecutionListener",
    "ExecutionResult",
    "GatewayKernelManager",
    "GatewayUnavailable",
    "KernelDied",
    "KernelError",
    "KernelHandle",
    "KernelLimitReached",
    "KernelManager",
    "KernelSpec",
    "KernelsPart",
    "NoSuchKernel",
    "OutputEvent",
    "Stream",
    "UnknownKernelSpec",
    "UpdateDisplayData",
    "build_kernels",
]

"""The composition root: config + reactor -> the service tree, with every part wired in.

Only this module knows which part needs which: it builds the parts in start order and hands
each one what it uses (the service tree, the site's root, the kernel manager, the contact
channel registry). Parts never look each other up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from twisted.internet.interfaces import IReactorTime

from .config import Config
from .contact.part import build_contact
from .contact.registry import ChannelRegistry
from .discord import build_discord
from .kernels import GatewayKernelManager, build_kernels
from .matrix import build_matrix
from .metrics import MetricSources, build_metrics
from .parts import PartContext
from .reactor import Reactor
from .sandbox import Sandbox, SandboxUnavailable
from .sandbox.part import SandboxPart
from .service import JupybotService
from .state import StateDirectory
from .terminal import build_terminal
from .terminal.programs import program_problems
from .web import WebPart


def build_service(config: Config, reactor: Reactor) -> JupybotService:
    """Build every enabled part in start order; the web site listens once the parts before it
    have started (or failed), and stops first."""
    top = JupybotService(IReactorTime(reactor), stop_timeout=config.shutdown.timeout_seconds)
    state = StateDirectory(config.storage.path)
    state.ensure()
    web = WebPart(config.web, reactor, top)
    context = PartContext(config=config, reactor=reactor, state=state)
    # The chat parts register the contact outbox's delivery channels here.
    channels = ChannelRegistry()

    # Prepared first: the terminal and the embedded kernels run strangers' code in it.
    sandbox = Sandbox(config.sandbox)
    top.add_part(SandboxPart(sandbox, reactor))
    kernels = build_kernels(context, top, sandbox)
    sessions = build_terminal(context, top, web.root, sandbox)
    contact = build_contact(context, top, web.root, channels, deliver_to(config))
    build_matrix(context, top, kernels, channels)
    build_discord(context, top, kernels, channels)
    # On a listener of its own, reading the parts above.
    metered = kernels if isinstance(kernels, GatewayKernelManager) else None
    sources = MetricSources(top.statuses, sessions, metered, contact, edges=lambda: web.edges)
    build_metrics(context, top, sources)
    top.add_part(web)
    return top


def deliver_to(config: Config) -> tuple[str, ...]:
    """The contact channels: `contact.deliver_to`, else every configured chat channel, else the
    file."""
    if config.contact.deliver_to:
        return config.contact.deliver_to
    channels = []
    if config.discord.disabled_reason() is None and config.discord.owner_id:
        channels.append("discord")
    if config.matrix.disabled_reason() is None and config.matrix.contact_room:
        channels.append("matrix")
    return tuple(channels) or ("file",)


@dataclass(frozen=True)
class Summary:
    """What C{--check-config} prints: a line per part, and what would not start."""

    lines: list[str]
    problems: list[str]


def summarize(config: Config) -> Summary:
    """One line per part saying what would start, each program tried once in its sandbox as
    the server would: printed by C{--check-config}, which fails when anything would not start."""
    lines = [
        f"web: listening on {config.web.listen}",
        f"storage: {config.storage.path}",
        f"sandbox: {describe_sandbox(config)}",
        f"kernels: {describe_kernels(config)}",
    ]
    problems: list[str] = []
    if config.terminal.enabled:
        names = ", ".join(p.name for p in config.programs) or "none"
        lines.append(f"terminal: {len(config.programs)} program(s): {names}")
        problems += [f"terminal: a program will not start: {p}" for p in catalogue_problems(config)]
    else:
        lines.append("terminal: disabled (terminal.enabled is false)")
    if config.contact.enabled:
        channels = deliver_to(config)
        lines.append(f"contact: POST /contact, delivered to {', '.join(channels)}")
    else:
        lines.append("contact: disabled (contact.enabled is false)")
    if config.metrics.enabled:
        lines.append(f"metrics: GET /metrics on {config.metrics.listen}")
    else:
        lines.append("metrics: disabled (metrics.enabled is false)")
    for name, reason in (
        ("matrix", config.matrix.disabled_reason()),
        ("discord", config.discord.disabled_reason()),
    ):
        lines.append(f"{name}: disabled ({reason})" if reason else f"{name}: enabled")
    return Summary(lines + problems, problems)


def catalogue_problems(config: Config) -> list[str]:
    """Why each program of the catalogue would not run, found as the terminal part finds it
    at start: in a sandbox prepared as the server's (without cgroups: a check makes none)."""
    sandbox = Sandbox(replace(config.sandbox, cgroups="off"))
    try:
        sandbox.prepare()
    except SandboxUnavailable as e:
        return [f"sandbox: {e}"]
    try:
        return [
            problem
            for index, program in enumerate(config.programs)
            for problem in program_problems(program, sandbox, f"programs[{index}]")
        ]
    finally:
        sandbox.close()


def describe_kernels(config: Config) -> str:
    gateway = config.gateway
    if gateway.url:
        return f"gateway at {gateway.url} (its operator sandboxes its kernels)"
    if not config.sandbox.enabled:
        return "embedded Kernel Gateway, kernels UNSANDBOXED"
    network = "the host's network" if gateway.kernel_network else "no network"
    return (
        f"embedded Kernel Gateway, each kernel in its own sandbox ({network}, "
        f"{gateway.kernel_memory_mb} MB, {gateway.kernel_processes} processes)"
    )


def describe_sandbox(config: Config) -> str:
    sandbox = config.sandbox
    if not sandbox.enabled:
        return "none: visitor programs and kernels run UNSANDBOXED"
    limits = "cgroups where allowed, else rlimits" if sandbox.cgroups == "auto" else "rlimits"
    return f"bubblewrap (as {sandbox.user} when jupybot runs as root); limits: {limits}"

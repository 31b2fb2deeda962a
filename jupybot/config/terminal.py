"""`programs:` (the demo catalogue) and `terminal:` (session limits). Owned by the terminal part."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._reader import Reader, Secret

MEGABYTE = 1024 * 1024


@dataclass(frozen=True)
class ProgramLimits:
    """What one session of a program may use: in a cgroup of its own where the sandbox may
    create one (memory, processes, CPU share), and as rlimits on every process."""

    session_seconds: float = 1800.0
    idle_seconds: float = 300.0
    cpu_seconds: int = 60
    memory_mb: int = 512
    processes: int = 64
    # Share of one core the session may use at most (cgroups only).
    cpu_percent: int = 100
    file_size_mb: int = 16
    # An address-space limit besides memory_mb (0: none where cgroups hold the memory; where
    # rlimits are all there is, memory_mb is the address space unless this is larger).
    address_space_mb: int = 0
    # Each in-memory folder's size (/tmp, /dev/shm, home); 0: a third of memory_mb.
    tmpfs_mb: int = 0

    @classmethod
    def read(cls, r: Reader) -> ProgramLimits:
        default = cls()
        limits = cls(
            session_seconds=r.number(
                "session_seconds", default.session_seconds, minimum=1, maximum=86400
            ),
            idle_seconds=r.number("idle_seconds", default.idle_seconds, minimum=1, maximum=86400),
            cpu_seconds=r.integer("cpu_seconds", default.cpu_seconds, minimum=1),
            memory_mb=r.integer("memory_mb", default.memory_mb, minimum=16),
            processes=r.integer("processes", default.processes, minimum=1, maximum=4096),
            cpu_percent=r.integer("cpu_percent", default.cpu_percent, minimum=1, maximum=6400),
            file_size_mb=r.integer("file_size_mb", default.file_size_mb, minimum=0),
            address_space_mb=r.integer("address_space_mb", default.address_space_mb, minimum=0),
            tmpfs_mb=r.integer("tmpfs_mb", default.tmpfs_mb, minimum=0),
        )
        r.finish()
        return limits


@dataclass(frozen=True)
class ProgramConfig:
    name: str
    title: str
    description: str
    argv: tuple[str, ...]
    # Inside the sandbox: where the program starts (default: its private home).
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    limits: ProgramLimits = field(default_factory=ProgramLimits)
    # Host paths the sandbox shows at the same path: read-only, and writable where asked.
    files: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    # The host's network (default: none at all, not even loopback).
    network: bool = False

    @classmethod
    def read(cls, r: Reader) -> ProgramConfig:
        name = r.string("name", "")
        if not name:
            r.error("name", "expected a program name")
        elif not name.replace("-", "").replace("_", "").isalnum():
            r.error("name", f"expected letters, digits, '-' or '_', got {name!r}")
        argv = tuple(r.string_list("argv"))
        if not argv:
            r.error("argv", "expected a non-empty list such as ['python3', '-i']")
        title = r.string("title", name)
        description = r.string("description", "")
        cwd = r.optional_string("cwd")
        env = r.string_map("env")
        limits = ProgramLimits.read(r.section("limits"))
        files = tuple(_absolute_paths(r, "files"))
        writable = tuple(_absolute_paths(r, "writable"))
        network = r.boolean("network", False)
        if cwd is not None and not cwd.startswith("/"):
            r.error("cwd", f"expected an absolute path inside the sandbox, got {cwd!r}")
        r.finish()
        return cls(
            name=name,
            title=title,
            description=description,
            argv=argv,
            cwd=cwd,
            env=env,
            limits=limits,
            files=files,
            writable=writable,
            network=network,
        )


def _absolute_paths(r: Reader, key: str) -> list[str]:
    paths = r.string_list(key)
    for index, path in enumerate(paths):
        if not path.startswith("/") or "\0" in path:
            r.error(f"{key}[{index}]", f"expected an absolute path, got {path!r}")
    return [path.rstrip("/") or "/" for path in paths]


def read_programs(r: Reader) -> tuple[ProgramConfig, ...]:
    programs = tuple(ProgramConfig.read(item) for item in r.sequence("programs"))
    seen: set[str] = set()
    for index, program in enumerate(programs):
        if program.name in seen:
            r.error(f"programs[{index}].name", f"duplicate program name {program.name!r}")
        seen.add(program.name)
    return programs


@dataclass(frozen=True)
class TerminalConfig:
    enabled: bool = True
    max_sessions: int = 50
    max_sessions_per_ip: int = 4
    # A browser that lost its connection may resume its session within this time.
    resume_seconds: float = 30.0
    # Output kept for replay on resume, per session.
    replay_kb: int = 64
    # Flow control: PTY reading pauses when this much output is unacknowledged by the browser.
    window_kb: int = 512
    max_frame_kb: int = 64
    token: Secret | None = None

    @classmethod
    def read(cls, r: Reader) -> TerminalConfig:
        default = cls()
        config = cls(
            enabled=r.boolean("enabled", default.enabled),
            max_sessions=r.integer("max_sessions", default.max_sessions, minimum=1),
            max_sessions_per_ip=r.integer(
                "max_sessions_per_ip", default.max_sessions_per_ip, minimum=1
            ),
            resume_seconds=r.number(
                "resume_seconds", default.resume_seconds, minimum=0, maximum=3600
            ),
            replay_kb=r.integer("replay_kb", default.replay_kb, minimum=0, maximum=4096),
            window_kb=r.integer("window_kb", default.window_kb, minimum=16, maximum=65536),
            max_frame_kb=r.integer("max_frame_kb", default.max_frame_kb, minimum=1, maximum=1024),
            token=r.secret("token"),
        )
        r.finish()
        return config

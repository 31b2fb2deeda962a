"""config.yml -> one typed, validated L{Config}; every mistake reported with its key path."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from ._reader import ConfigContext, Reader, Secret
from .commands import NotebooksConfig
from .contact import ContactConfig
from .core import LoggingConfig, ShutdownConfig, StorageConfig, WebConfig
from .discord import DiscordConfig
from .kernels import GatewayConfig
from .matrix import MatrixConfig
from .metrics import MetricsConfig
from .sandbox import SandboxConfig
from .terminal import ProgramConfig, TerminalConfig, read_programs

__all__ = [
    "Config",
    "ConfigError",
    "Secret",
    "default_config_path",
    "load_config",
    "parse_config",
]


class ConfigError(Exception):
    """The configuration is invalid; C{errors} lists every mistake, one line each."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: {len(errors)} error(s)")
        self.source = source
        self.errors = errors

    def report(self) -> str:
        noun = "error" if len(self.errors) == 1 else "errors"
        lines = [f"{self.source}: {len(self.errors)} {noun}, nothing started:"]
        lines += [f"  {error}" for error in self.errors]
        return "\n".join(lines)


@dataclass(frozen=True)
class Config:
    source: str
    web: WebConfig
    storage: StorageConfig
    logging: LoggingConfig
    shutdown: ShutdownConfig
    sandbox: SandboxConfig
    programs: tuple[ProgramConfig, ...]
    terminal: TerminalConfig
    gateway: GatewayConfig
    matrix: MatrixConfig
    discord: DiscordConfig
    contact: ContactConfig
    secrets: tuple[Secret, ...]
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    notebooks: NotebooksConfig = field(default_factory=NotebooksConfig)


def default_config_path(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("JUPYBOT_CONFIG") or "config.yml"


def parse_config(
    text: str, source: str = "config.yml", environ: Mapping[str, str] = os.environ
) -> Config:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(source, [f"{where}not valid YAML ({problem})"]) from None

    context = ConfigContext(environ=environ)
    top = Reader(document, "", context)
    config = Config(
        source=source,
        web=WebConfig.read(top.section("web")),
        storage=StorageConfig.read(top.section("storage")),
        logging=LoggingConfig.read(top.section("logging")),
        shutdown=ShutdownConfig.read(top.section("shutdown")),
        sandbox=SandboxConfig.read(top.section("sandbox")),
        programs=read_programs(top),
        terminal=TerminalConfig.read(top.section("terminal")),
        gateway=GatewayConfig.read(top.section("gateway")),
        matrix=MatrixConfig.read(top.section("matrix")),
        discord=DiscordConfig.read(top.section("discord")),
        contact=ContactConfig.read(top.section("contact")),
        metrics=MetricsConfig.read(top.section("metrics")),
        notebooks=NotebooksConfig.read(top.section("notebooks")),
        secrets=tuple(context.secrets),
    )
    top.finish()
    if context.errors:
        raise ConfigError(source, context.errors)
    return config


def load_config(path: str, environ: Mapping[str, str] = os.environ) -> Config:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, [f"cannot read the configuration file ({e.strerror})"]) from None
    return parse_config(text, source=path, environ=environ)

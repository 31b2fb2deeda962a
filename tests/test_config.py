"""config.yml validation: every mistake reported with its key path, nothing started."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from jupybot.config import ConfigError, Secret, load_config, parse_config

from .harness import ROOT, VENV_BIN


def errors_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ=environ or {})
    return caught.value.errors


def test_empty_file_means_all_defaults() -> None:
    config = parse_config("", environ={})
    assert config.web.listen == "tcp:8080:interface=127.0.0.1"
    assert config.storage.path == "./var"
    assert config.gateway.url is None


def test_shipped_config_is_valid() -> None:
    config = load_config(str(ROOT / "config.yml"), environ={})
    assert config.web.listen.startswith("tcp:8080")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("matrix: {homeserver: foo}", "matrix.homeserver: expected an http(s) URL, got 'foo'"),
        (
            "web: {listen: 'nope:1'}",
            "web.listen: expected a Twisted server endpoint such as "
            "'tcp:8080:interface=127.0.0.1', got 'nope:1'",
        ),
        ("logging: {format: xml}", "logging.format: expected one of 'text', 'json', got 'xml'"),
        (
            "shutdown: {timeout_seconds: -1}",
            "shutdown.timeout_seconds: expected at least 0.1, got -1.0",
        ),
        (
            "shutdown: {timeout_seconds: soon}",
            "shutdown.timeout_seconds: expected a number, got 'soon'",
        ),
        ("storage: [a, b]", "storage: expected a mapping, got a list"),
        (
            "webb: {}",
            "webb: unknown key (expected one of: contact, discord, gateway, logging, matrix, "
            "metrics, notebooks, programs, sandbox, shutdown, storage, terminal, web)",
        ),
        (
            "web: {lisen: 'tcp:1'}",
            "web.lisen: unknown key (expected one of: intro, limits, listen, origins, proxy_header, title, trusted_proxies)",
        ),
        ("programs: [bogus]", "programs[0]: expected a mapping, got 'bogus'"),
        (
            "programs: [{name: a, argv: []}]",
            "programs[0].argv: expected a non-empty list such as ['python3', '-i']",
        ),
        (
            "web: {listen: '${JUPYBOT_TEST_UNSET}'}",
            "web.listen: environment variable JUPYBOT_TEST_UNSET is not set",
        ),
        ("discord: {token: 42}", "discord.token: expected a string or ${ENV_VAR}, got 42"),
        (
            "web: {origins: [example.org]}",
            "web.origins: expected origins such as 'https://example.org', got 'example.org'",
        ),
    ],
)
def test_each_mistake_is_named_with_its_key_path(text: str, error: str) -> None:
    assert error in errors_of(text)


def test_a_bare_off_means_off() -> None:
    # YAML reads `cgroups: off` as false, as config.yml's own comment writes it.
    assert parse_config("sandbox:\n  cgroups: off\n").sandbox.cgroups == "off"


def test_all_mistakes_are_reported_at_once() -> None:
    errors = errors_of("web: {listen: 1}\nlogging: {level: loud}\nmatrix: {homeserver: x}\n")
    assert len(errors) == 3


def test_yaml_syntax_error_names_line_and_column() -> None:
    assert errors_of("web:\n  listen: [\n") == [
        "line 3, column 1: not valid YAML (expected the node content, but found '<stream end>')"
    ]


def test_secret_from_environment_is_hidden_in_repr() -> None:
    config = parse_config("discord: {token: '${T}'}", environ={"T": "sekrit-token-value"})
    assert config.discord.token == Secret("sekrit-token-value")
    assert "sekrit" not in repr(config)
    assert config.secrets == (Secret("sekrit-token-value"),)


def test_unset_secret_variable_disables_the_part() -> None:
    config = parse_config("discord: {token: '${JUPYBOT_TEST_UNSET}'}", environ={})
    assert config.discord.disabled_reason() == "no discord.token"


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path / "missing.yml"))
    assert caught.value.errors == ["cannot read the configuration file (No such file or directory)"]


def run_check_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return subprocess.run(
        [str(VENV_BIN / "twistd"), "jupybot", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_check_config_summarises_a_good_config(tmp_path: Path) -> None:
    result = run_check_config(tmp_path, "web: {listen: 'tcp:9999'}\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'config.yml'}: valid"
    assert "  web: listening on tcp:9999" in lines
    assert "  matrix: disabled (no matrix.homeserver and matrix.user_id)" in lines
    assert not (tmp_path / "var").exists(), "checking must not create state"


def test_check_config_tries_each_program_and_names_the_fix(tmp_path: Path) -> None:
    private = Path(tempfile.mkdtemp())  # 0700: the sandbox user may not enter when we are root
    game = private / "game"
    game.write_text("#!/bin/sh\necho hi\n")
    game.chmod(0o755)
    catalogue = (
        "programs:\n"
        "  - {name: fine, argv: [sh]}\n"
        "  - {name: typo, argv: [pythn3]}\n"
        f"  - {{name: hidden, argv: ['{game}'], files: ['{private}']}}\n"
        "  - {name: lost, argv: [sh], cwd: /srv/nowhere}\n"
    )
    try:
        result = run_check_config(tmp_path, catalogue)
    finally:
        shutil.rmtree(private)
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'config.yml'}: valid, but:"
    problems = [line for line in lines if line.startswith("  terminal: a program will not start: ")]
    assert [p.split(": ", 2)[2].split(":")[0].split(" ")[0] for p in problems] == (
        ["programs[1].argv", "programs[2]", "programs[3].cwd"]
        if os.geteuid() == 0
        else ["programs[1].argv", "programs[3].cwd"]
    )
    assert "'pythn3' is not installed inside the sandbox" in problems[0]
    if os.geteuid() == 0:
        assert "cannot reach" in problems[1] and "chmod o+rx" in problems[1]


def test_check_config_reports_every_error_and_fails(tmp_path: Path) -> None:
    result = run_check_config(tmp_path, "web: {listen: 1}\nmatrix: {homeserver: foo}\n")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'config.yml'}: 2 errors, nothing started:",
        "  web.listen: expected a Twisted server endpoint such as "
        "'tcp:8080:interface=127.0.0.1', got 1",
        "  matrix.homeserver: expected an http(s) URL, got 'foo'",
    ]


def test_invalid_config_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("web: {listen: 1}\n")
    result = subprocess.run(
        [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "jupybot", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "web.listen" in result.stderr
    assert not (tmp_path / "var").exists()


def test_config_path_comes_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.yml"
    path.write_text("web: {listen: 'tcp:9998'}\n")
    import os

    result = subprocess.run(
        [str(VENV_BIN / "twistd"), "jupybot", "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "JUPYBOT_CONFIG": str(path)},
    )
    assert result.returncode == 0, result.stderr
    assert "  web: listening on tcp:9998" in result.stdout.splitlines()

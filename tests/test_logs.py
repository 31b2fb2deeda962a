"""Logs: readable text or JSON lines, and a configured secret never reaches them."""

from __future__ import annotations

import json
import urllib.request
from io import StringIO
from pathlib import Path

from twisted.logger import Logger, LogPublisher
from twisted.python.failure import Failure

from jupybot.config import Secret
from jupybot.logs import make_observer

from .harness import JupybotProcess, jupybot_config


def test_a_secret_in_a_message_is_redacted() -> None:
    secret = Secret("tok-123456")
    output = StringIO()
    log = Logger(
        namespace="test", observer=LogPublisher(make_observer("text", "info", [secret], output))
    )
    log.info("calling {url}", url="https://hs.example/_matrix?access_token=tok-123456")
    assert "tok-123456" not in output.getvalue()
    assert "access_token=[redacted]" in output.getvalue()


def test_a_secret_in_a_traceback_is_redacted() -> None:
    output = StringIO()
    log = Logger(
        namespace="t",
        observer=LogPublisher(make_observer("json", "info", [Secret("hunter22")], output)),
    )
    try:
        raise ValueError("bad password hunter22")
    except ValueError:
        log.failure("login failed", Failure())
    assert "hunter22" not in output.getvalue()
    assert "[redacted]" in output.getvalue()


def test_level_filters_debug_out() -> None:
    output = StringIO()
    log = Logger(namespace="t", observer=LogPublisher(make_observer("text", "info", [], output)))
    log.debug("noise")
    log.warn("signal")
    assert "noise" not in output.getvalue()
    assert "signal" in output.getvalue()


def test_json_logs_from_twistd_are_one_object_a_line(tmp_path: Path) -> None:
    config = jupybot_config(tmp_path, "logging:\n  format: json\n")
    process = JupybotProcess(config, tmp_path)
    try:
        match = process.wait_for(r'"log_format": "web: listening on http://\{host\}:\{port\}/"')
        line = json.loads(match.string.lstrip("\x1e"))
        base = f"http://{line['host']}:{line['port']}"
        with urllib.request.urlopen(base + "/ping", timeout=10) as response:
            assert response.status == 200
    finally:
        process.stop()
    records = [json.loads(text.lstrip("\x1e")) for text in process.lines if text.strip()]
    assert all("log_namespace" in record for record in records)

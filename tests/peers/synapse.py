"""A real Synapse homeserver on loopback for the Matrix tests, started once per test run.

Synapse runs from its own venv (``make test`` builds ``.cache/synapse-venv`` and passes its
python as ``$JUPYBOT_SYNAPSE_PYTHON``) with a generated config: SQLite, one client listener on
an ephemeral loopback port, no federation, rate limits raised, and a registration shared secret
so tests create users through the admin API. Readiness is Synapse's own "now listening" line.

Rate limits as homeservers have them in the wild are two more peers (`limited_synapse`): one
with Synapse's default C{rc_message} (0.2 events a second after a burst of 10, per account;
matrix.org's are similar), one stricter (0.1 a second after 5). Only C{rc_message} is left
limited there: that is the limit a bot's replies and edits meet.

Tokens that expire (`short_token_synapse`) are one more: refreshable access tokens good for a
few seconds (Synapse's C{refreshable_access_token_lifetime}), as next-generation auth hands out
for a few hours, and refresh tokens good for a few more (C{refresh_token_lifetime}).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, ChildProcess

__all__ = [
    "MESSAGE_LIMITS",
    "SHORT_REFRESH_TOKEN_SECONDS",
    "SHORT_TOKEN_SECONDS",
    "MatrixUser",
    "Synapse",
    "limited_synapse",
    "short_token_synapse",
    "synapse",
]

SERVER_NAME = "jupybot.test"
_DEFAULT_PYTHON = ROOT / ".cache" / "synapse-venv" / "bin" / "python"
# Generous rate limits: the tests send bursts from a handful of users on one IP.
_UNLIMITED: dict[str, float] = {"per_second": 10000, "burst_count": 100000}
# rc_message as homeservers have it: Synapse's default, and a stricter one.
MESSAGE_LIMITS: dict[str, dict[str, float] | None] = {
    "default": None,
    "strict": {"per_second": 0.1, "burst_count": 5},
}
# How long the refreshable access tokens of `short_token_synapse` live, and its refresh tokens.
SHORT_TOKEN_SECONDS = 2
SHORT_REFRESH_TOKEN_SECONDS = 4


@dataclass(frozen=True)
class MatrixUser:
    user_id: str
    password: str
    access_token: str
    device_id: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


class Synapse:
    """One Synapse process; L{restart} brings it back on the same port with the same data."""

    def __init__(
        self,
        python: str,
        workdir: Path,
        message_limit: dict[str, float] | None = _UNLIMITED,
        token_lifetimes: dict[str, str | None] | None = None,
    ) -> None:
        """C{message_limit} is C{rc_message}; None leaves Synapse's default. C{token_lifetimes}
        sets C{refreshable_access_token_lifetime}, C{nonrefreshable_access_token_lifetime} and
        C{refresh_token_lifetime} ("5s"; None: refreshing off, or no limit); Synapse's defaults
        (5 minutes, refreshed; forever) when left out."""
        self.python = python
        self.workdir = workdir
        self.message_limit = message_limit
        self.token_lifetimes = dict(token_lifetimes or {})
        self.server_name = SERVER_NAME
        self.shared_secret = secrets.token_hex(16)
        self.port = 0
        self.process: ChildProcess | None = None
        self._names = itertools.count(1)
        self._write_config()
        self._generate_keys()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "homeserver.yaml"

    def _write_config(self) -> None:
        log_config = self.workdir / "log.yaml"
        log_config.write_text(
            json.dumps(
                {
                    "version": 1,
                    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
                    "handlers": {
                        "console": {
                            "class": "logging.StreamHandler",
                            "formatter": "plain",
                            "stream": "ext://sys.stdout",
                        }
                    },
                    "root": {"level": "INFO", "handlers": ["console"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(self.workdir / "homeserver.pid"),
            "public_baseurl": "http://127.0.0.1/",
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {
                "name": "sqlite3",
                "args": {"database": str(self.workdir / "homeserver.db")},
            },
            "log_config": str(log_config),
            "media_store_path": str(self.workdir / "media"),
            "signing_key_path": str(self.workdir / "signing.key"),
            "registration_shared_secret": self.shared_secret,
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "enable_metrics": False,
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "max_upload_size": "20M",
            "rc_registration": _UNLIMITED,
            "rc_login": {
                "address": _UNLIMITED,
                "account": _UNLIMITED,
                "failed_attempts": _UNLIMITED,
            },
            "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
            "rc_joins_per_room": _UNLIMITED,
            "rc_invites": {
                "per_room": _UNLIMITED,
                "per_user": _UNLIMITED,
                "per_issuer": _UNLIMITED,
            },
            "rc_admin_redaction": _UNLIMITED,
            "rc_media_create": _UNLIMITED,
            "rc_room_creation": _UNLIMITED,
            "rc_key_requests": _UNLIMITED,
            "rc_presence": {"per_user": _UNLIMITED},
        }
        if self.message_limit is not None:
            config["rc_message"] = self.message_limit
        for key, lifetime in self.token_lifetimes.items():
            assert key.endswith("token_lifetime"), key
            config[key] = lifetime
        # JSON is YAML; no YAML writer needed in Synapse's config.
        self.config_path.write_text(json.dumps(config, indent=1))

    def _generate_keys(self) -> None:
        subprocess.run(
            [
                self.python,
                "-m",
                "synapse.app.homeserver",
                "--config-path",
                str(self.config_path),
                "--generate-keys",
            ],
            check=True,
            cwd=self.workdir,
            capture_output=True,
            timeout=120,
        )

    def start(self, timeout: float = 120.0) -> None:
        self.process = ChildProcess(
            [self.python, "-m", "synapse.app.homeserver", "--config-path", str(self.config_path)],
            name="synapse",
            cwd=self.workdir,
        )
        match = self.process.wait_for(r"Synapse now listening on TCP port (\d+)", timeout)
        if self.port == 0:
            # Pin the port chosen now, so that a restart comes back at the same address.
            self.port = int(match.group(1))
            self._write_config()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- users --------------------------------------------------------------------------------

    def unique_localpart(self, prefix: str) -> str:
        return f"{prefix}{next(self._names)}-{secrets.token_hex(3)}"

    def register(self, localpart: str, admin: bool = False) -> MatrixUser:
        """A new user, created through the shared-secret registration admin API."""
        url = f"{self.base_url}/_synapse/admin/v1/register"
        nonce = _request("GET", url)["nonce"]
        password = secrets.token_urlsafe(12)
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode()]))
        mac.update(b"\x00admin" if admin else b"\x00notadmin")
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        result = _request("POST", url, body)
        return MatrixUser(
            user_id=result["user_id"],
            password=password,
            access_token=result["access_token"],
            device_id=result["device_id"],
        )

    # -- administration ----------------------------------------------------------------------

    def devices(self, admin: MatrixUser, user_id: str) -> list[str]:
        """The ids of C{user_id}'s devices, as the admin API lists them."""
        url = f"{self.base_url}/_synapse/admin/v2/users/{user_id}/devices"
        return [d["device_id"] for d in _request("GET", url, token=admin.access_token)["devices"]]

    def query_keys(self, reader: MatrixUser, user_id: str) -> dict[str, Any]:
        """C{user_id}'s published keys (devices, cross-signing) as C{reader}'s client sees them."""
        url = f"{self.base_url}/_matrix/client/v3/keys/query"
        answer: dict[str, Any] = _request(
            "POST", url, {"device_keys": {user_id: []}}, token=reader.access_token
        )
        return answer

    def log_out(self, user: MatrixUser) -> None:
        """Revoke C{user}'s access token (and delete its device), as C{POST /logout} does."""
        _request("POST", f"{self.base_url}/_matrix/client/v3/logout", {}, token=user.access_token)

    def reset_password(self, admin: MatrixUser, user_id: str, password: str) -> None:
        """A new password, every device logged out (Synapse deletes them: tokens, keys and all)."""
        url = f"{self.base_url}/_synapse/admin/v1/reset_password/{user_id}"
        body = {"new_password": password, "logout_devices": True}
        _request("POST", url, body, token=admin.access_token)

    def delete_device(self, admin: MatrixUser, user_id: str, device_id: str) -> None:
        """What a server admin does to a device: gone, with its tokens and its keys."""
        url = f"{self.base_url}/_synapse/admin/v2/users/{user_id}/devices/{device_id}"
        _request("DELETE", url, token=admin.access_token)


def _request(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def synapse_python() -> str | None:
    configured = os.environ.get("JUPYBOT_SYNAPSE_PYTHON")
    if configured:
        return configured
    return str(_DEFAULT_PYTHON) if _DEFAULT_PYTHON.exists() else None


def _running(
    tmp_path_factory: pytest.TempPathFactory, name: str, **limits: Any
) -> Iterator[Synapse]:
    python = synapse_python()
    if python is None:
        pytest.fail(
            "Synapse is not installed: run the tests with `make test` (it builds "
            ".cache/synapse-venv) or set JUPYBOT_SYNAPSE_PYTHON",
            pytrace=False,
        )
    server = Synapse(python, tmp_path_factory.mktemp(name), **limits)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """The real Synapse of this test run, with its rate limits raised."""
    yield from _running(tmp_path_factory, "synapse")


@pytest.fixture(scope="session", params=sorted(MESSAGE_LIMITS))
def limited_synapse(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Synapse]:
    """A real Synapse with C{rc_message} as in the wild: Synapse's default, then stricter."""
    limit = MESSAGE_LIMITS[request.param]
    yield from _running(tmp_path_factory, f"synapse-{request.param}", message_limit=limit)


@pytest.fixture(scope="session")
def short_token_synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """A real Synapse whose refreshable access tokens live L{SHORT_TOKEN_SECONDS}, and refresh
    tokens L{SHORT_REFRESH_TOKEN_SECONDS} (each refresh gives a new one).

    Tokens given without a refresh token (the people's, made by registration) do not expire.
    """
    yield from _running(
        tmp_path_factory,
        "synapse-short-tokens",
        token_lifetimes={
            "refreshable_access_token_lifetime": f"{SHORT_TOKEN_SECONDS}s",
            "refresh_token_lifetime": f"{SHORT_REFRESH_TOKEN_SECONDS}s",
        },
    )


if __name__ == "__main__":  # pragma: no cover - a manual check: python -m tests.peers.synapse
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        s = Synapse(synapse_python() or sys.exit("no synapse"), Path(d))
        s.start()
        print(s.base_url, s.register(s.unique_localpart("check")))
        s.stop()

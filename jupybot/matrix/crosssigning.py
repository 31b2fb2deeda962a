"""Cross-signing: the bot's account owns a master key, and the master key vouches for its device.

Element (matrix-js-sdk's Rust crypto, since 2026 in C{OnlySignedDevicesIsolationMode}, MSC4153)
shares a room's keys only with devices their owner has cross-signed, and shows a message from any
other device as "sent from an insecure device" (C{UNSIGNED_SENDER_DEVICE}), if it decrypts it at
all. So at the first start with encryption the bot creates its account's three cross-signing keys
(master, self-signing, user-signing), uploads them (user-interactive auth with the configured
password when the homeserver asks for it), and signs its own device with the self-signing key;
each later start signs the device it logged in with, if that one is not signed yet.

The private keys are kept in C{storage.path/matrix-cross-signing.json} (0600). An account that
already has a cross-signing identity jupybot did not make (its owner made it in Element) is never
replaced: with C{matrix.recovery_key} the bot reads that identity's keys from the account's secret
storage (MSC1946) and signs with them; without, it says so in its log and on /ping, and runs with
an unsigned device.

Signing and canonical JSON are Synapse's own libraries (C{signedjson}, C{canonicaljson}, on
PyNaCl's Ed25519).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import signedjson.key
import signedjson.sign
from nio import AsyncClient
from signedjson.types import SigningKey
from twisted.logger import Logger

from ..config.matrix import MatrixConfig
from ..state import StateDirectory, write_atomically
from ._secret_storage import SecretStorageError, read_secrets
from .api import MatrixApi, MatrixError

__all__ = [
    "CrossSigningError",
    "CrossSigningKeys",
    "CrossSigningStore",
    "cross_sign_device",
    "published_master_key",
]

log = Logger()

_KEYS_FILE = "matrix-cross-signing.json"
_ROLES = ("master", "self_signing", "user_signing")
# Where Element keeps each private key in secret storage.
_SECRET_NAMES = {role: f"m.cross_signing.{role}" for role in _ROLES}


class CrossSigningError(Exception):
    """The bot's device cannot be cross-signed; the message says why and what to do."""


def _public(key: SigningKey) -> str:
    return signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(key))


def _key_id(key: SigningKey) -> str:
    return f"ed25519:{_public(key)}"


@dataclass(frozen=True)
class CrossSigningKeys:
    """The account's three private cross-signing keys (Ed25519), each named by its public key."""

    user_id: str
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls, user_id: str) -> CrossSigningKeys:
        keys = []
        for role in _ROLES:
            key = signedjson.key.generate_signing_key(role)
            # The key's id is its public key (spec: "Cross-signing"), which signedjson reads as
            # the version when it names a signature.
            key.version = _public(key)
            keys.append(key)
        return cls(user_id, *keys)

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            **{
                role: signedjson.key.encode_signing_key_base64(getattr(self, role))
                for role in _ROLES
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CrossSigningKeys:
        keys = []
        for role in _ROLES:
            seed = data[role]
            key = signedjson.key.decode_signing_key_base64("ed25519", "", seed)
            key.version = _public(key)
            keys.append(key)
        return cls(str(data["user_id"]), *keys)

    @property
    def master_public(self) -> str:
        return _public(self.master)

    @property
    def self_signing_id(self) -> str:
        return _key_id(self.self_signing)

    def public_keys(self) -> dict[str, dict[str, Any]]:
        """The body of C{/keys/device_signing/upload}: the public keys, the self-signing and
        user-signing ones signed by the master key."""

        def described(key: SigningKey, usage: str) -> dict[str, Any]:
            return {
                "user_id": self.user_id,
                "usage": [usage],
                "keys": {_key_id(key): _public(key)},
            }

        return {
            "master_key": described(self.master, "master"),
            "self_signing_key": signedjson.sign.sign_json(
                described(self.self_signing, "self_signing"), self.user_id, self.master
            ),
            "user_signing_key": signedjson.sign.sign_json(
                described(self.user_signing, "user_signing"), self.user_id, self.master
            ),
        }

    def sign_device(self, device_keys: dict[str, Any]) -> dict[str, Any]:
        """The device's keys (as C{/keys/query} gave them) with only the self-signing key's
        signature, as C{/keys/signatures/upload} takes them."""
        bare = {k: v for k, v in device_keys.items() if k not in ("signatures", "unsigned")}
        return signedjson.sign.sign_json(bare, self.user_id, self.self_signing)


class CrossSigningStore:
    """C{matrix-cross-signing.json} in the state directory (0600): the private keys."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, user_id: str) -> CrossSigningKeys | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            keys = CrossSigningKeys.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warn(
                "matrix: ignoring unreadable {path}: {error}", path=str(self.path), error=str(e)
            )
            return None
        return keys if keys.user_id == user_id else None

    def save(self, keys: CrossSigningKeys) -> None:
        write_atomically(self.path, json.dumps(keys.to_json()))


class _Homeserver:
    """The three cross-signing endpoints, retried like every call of the bot (L{MatrixApi})."""

    def __init__(self, client: AsyncClient, api: MatrixApi) -> None:
        self.client = client
        self.api = api

    async def post(self, what: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        """POST C{body} (GET when None); the status and the JSON answer."""

        async def attempt() -> tuple[int, Any]:
            response = await self.client.send(
                "GET" if body is None else "POST",
                path,
                None if body is None else json.dumps(body),
                headers={
                    "Authorization": f"Bearer {self.client.access_token}",
                    "Content-Type": "application/json",
                },
            )
            async with response:
                answer = await response.json(content_type=None)
            # Worth retrying, on the bot's backoff: a homeserver restarting, or rate-limiting.
            if response.status >= 500 or response.status == 429:
                raise OSError(f"HTTP {response.status}")
            return response.status, answer

        return await self.api.retrying(what, attempt)

    async def account_data(self, user_id: str, kind: str) -> dict[str, Any] | None:
        quoted = urllib.parse.quote(user_id)
        status, answer = await self.post(
            "reading the account's secret storage",
            f"/_matrix/client/v3/user/{quoted}/account_data/{urllib.parse.quote(kind)}",
            None,
        )
        if status == 404:
            return None
        if status != 200 or not isinstance(answer, dict):
            raise MatrixError(f"reading account data {kind} refused: {status} {answer}")
        return answer

    async def query(self, user_id: str) -> dict[str, Any]:
        status, answer = await self.post(
            "reading the account's cross-signing keys",
            "/_matrix/client/v3/keys/query",
            {"device_keys": {user_id: []}},
        )
        if status != 200 or not isinstance(answer, dict):
            raise MatrixError(f"keys/query refused: {status} {answer}")
        return answer


async def _upload_identity(
    server: _Homeserver, keys: CrossSigningKeys, password: str | None
) -> None:
    """Upload the public keys; answer the homeserver's password challenge if it sends one."""
    path = "/_matrix/client/v3/keys/device_signing/upload"
    body: dict[str, Any] = keys.public_keys()
    what = "uploading cross-signing keys"
    status, answer = await server.post(what, path, body)
    if status == 401 and isinstance(answer, dict) and "flows" in answer:
        flows = [flow.get("stages", []) for flow in answer.get("flows", [])]
        if password is None or ["m.login.password"] not in flows:
            raise CrossSigningError(
                "the homeserver wants a confirmation jupybot cannot give to upload the "
                f"account's cross-signing keys (it offers {flows}); set matrix.password, or "
                "approve the reset in the account's web page and restart"
            )
        body["auth"] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": keys.user_id},
            "password": password,
            "session": answer.get("session"),
        }
        status, answer = await server.post(what, path, body)
    if status != 200:
        raise CrossSigningError(f"the homeserver refused the cross-signing keys: {status} {answer}")


def _signed_by(device: dict[str, Any], user_id: str, key_id: str) -> bool:
    return key_id in (device.get("signatures") or {}).get(user_id, {})


def _public_key_of(described: Any) -> str | None:
    if not isinstance(described, dict):
        return None
    keys = described.get("keys") or {}
    return next(iter(keys.values()), None) if isinstance(keys, dict) else None


async def _unlock(server: _Homeserver, user_id: str, recovery_key: str) -> CrossSigningKeys:
    """The identity's private keys, read from secret storage with the recovery key."""

    async def account_data(kind: str) -> dict[str, Any] | None:
        return await server.account_data(user_id, kind)

    secrets = await read_secrets(account_data, recovery_key, tuple(_SECRET_NAMES.values()))
    try:
        return CrossSigningKeys.from_json(
            {"user_id": user_id, **{role: secrets[name] for role, name in _SECRET_NAMES.items()}}
        )
    except (ValueError, KeyError) as e:
        raise SecretStorageError(f"a cross-signing key in secret storage is malformed: {e}") from e


async def published_master_key(client: AsyncClient, api: MatrixApi) -> str | None:
    """The account's master key as others read it (None when it has none)."""
    known = await _Homeserver(client, api).query(client.user_id)
    return _public_key_of((known.get("master_keys") or {}).get(client.user_id))


async def cross_sign_device(
    config: MatrixConfig, client: AsyncClient, api: MatrixApi, state: StateDirectory
) -> str | None:
    """Make sure the logged-in device is cross-signed by its account; None when it is (or
    when encryption or cross-signing is off), else what is wrong, for /ping.

    Never raises for a refusal: a bot that cannot cross-sign still answers unencrypted rooms
    and clients that share keys with unsigned devices.
    """
    if not (config.encryption and config.cross_signing):
        return None
    try:
        await _cross_sign(config, client, api, state)
    except (CrossSigningError, SecretStorageError, MatrixError) as e:
        problem = f"device {client.device_id} is not cross-signed: {e}"
        log.warn("matrix: {problem}", problem=problem)
        return problem
    return None


async def _cross_sign(
    config: MatrixConfig, client: AsyncClient, api: MatrixApi, state: StateDirectory
) -> None:
    user_id: str = client.user_id
    device_id: str = client.device_id
    password = config.password.reveal() if config.password is not None else None
    server = _Homeserver(client, api)
    store = CrossSigningStore(state.file(_KEYS_FILE))
    # The device's own keys must be on the server before they can be signed.
    if client.should_upload_keys:
        await api.retrying("uploading encryption keys", client.keys_upload)
    known = await server.query(user_id)
    on_server = _public_key_of((known.get("master_keys") or {}).get(user_id))
    keys = store.load(user_id)
    if on_server is None:
        if keys is None:
            keys = CrossSigningKeys.generate(user_id)
            # Kept before the upload: keys on the server whose private half was lost would
            # lock the bot out of its own identity.
            store.save(keys)
        await _upload_identity(server, keys, password)
        log.info(
            "matrix: created the cross-signing identity of {user} (master key {key})",
            user=user_id,
            key=keys.master_public,
        )
    else:
        if keys is None or keys.master_public != on_server:
            if config.recovery_key is None:
                raise CrossSigningError(
                    f"{user_id} already has a cross-signing identity (master key {on_server}) "
                    "that jupybot did not make and has no private key of, so Element users who "
                    "exclude insecure devices will not share room keys with the bot. Set "
                    "matrix.recovery_key to the identity's recovery key (Element: Settings > "
                    "Encryption), or run the bot on an account of its own"
                )
            keys = await _unlock(server, user_id, config.recovery_key.reveal())
            if keys.master_public != on_server:
                raise CrossSigningError(
                    "the master key in secret storage is not the account's published one"
                )
            store.save(keys)
            log.info(
                "matrix: unlocked the cross-signing identity of {user} with matrix.recovery_key",
                user=user_id,
            )
        ssk_on_server = _public_key_of((known.get("self_signing_keys") or {}).get(user_id))
        if ssk_on_server != keys.self_signing_id.partition(":")[2]:
            raise CrossSigningError(
                f"the self-signing key on the server is not the one of {store.path.name}"
            )
    device = ((known.get("device_keys") or {}).get(user_id) or {}).get(device_id)
    if device is None:
        # Keys uploaded a moment ago, or a device the server lost: ask again once.
        known = await server.query(user_id)
        device = ((known.get("device_keys") or {}).get(user_id) or {}).get(device_id)
    if device is None:
        raise CrossSigningError("the homeserver does not list the device's keys")
    if _signed_by(device, user_id, keys.self_signing_id):
        return
    status, answer = await server.post(
        "cross-signing the device",
        "/_matrix/client/v3/keys/signatures/upload",
        {user_id: {device_id: keys.sign_device(device)}},
    )
    failures = answer.get("failures") if isinstance(answer, dict) else None
    if status != 200 or failures:
        raise CrossSigningError(f"the device signature was refused: {status} {answer}")
    log.info("matrix: cross-signed device {device} of {user}", device=device_id, user=user_id)

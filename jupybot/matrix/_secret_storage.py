"""Reading secrets from the account's secret storage (SSSS, MSC1946) with a recovery key.

An identity made in Element keeps its private cross-signing keys in the account data, encrypted
with the secret storage key whose printable form is the "recovery key" Element shows once. The
spec's C{m.secret_storage.v1.aes-hmac-sha2}: per secret, HKDF-SHA-256 of the key (a zero salt,
the secret's name as info) gives an AES-256-CTR key and an HMAC-SHA-256 key; the MAC covers the
ciphertext. The recovery key is base58 of C{0x8B 0x01}, the 32-byte key and a parity byte.
Cryptography is the C{cryptography} package's, base58 the C{base58} package's.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from functools import reduce
from typing import Any

import base58
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SecretStorageError", "decode_recovery_key", "read_secrets"]

_PREFIX = b"\x8b\x01"
_ALGORITHM = "m.secret_storage.v1.aes-hmac-sha2"

# Reads one account data event of the user; None when the account has none of that type.
AccountData = Callable[[str], Awaitable[dict[str, Any] | None]]


class SecretStorageError(Exception):
    """The recovery key does not open the account's secret storage; says why."""


def decode_recovery_key(text: str) -> bytes:
    """The 32-byte secret storage key a recovery key ("EsTc 5rr1 …") stands for."""
    try:
        raw = base58.b58decode("".join(text.split()))
    except ValueError as e:
        raise SecretStorageError("matrix.recovery_key is not a recovery key (not base58)") from e
    if len(raw) != 35 or not raw.startswith(_PREFIX):
        raise SecretStorageError("matrix.recovery_key is not a recovery key (wrong length)")
    if reduce(lambda a, b: a ^ b, raw) != 0:
        raise SecretStorageError("matrix.recovery_key has a typo (its parity does not match)")
    return raw[2:34]


def _unbase64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _keys(secret_storage_key: bytes, name: str) -> tuple[bytes, bytes]:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=b"\x00" * 32, info=name.encode()
    ).derive(secret_storage_key)
    return derived[:32], derived[32:]


def _decrypt(secret_storage_key: bytes, name: str, encrypted: dict[str, Any]) -> bytes:
    aes_key, mac_key = _keys(secret_storage_key, name)
    try:
        iv = _unbase64(encrypted["iv"])
        ciphertext = _unbase64(encrypted["ciphertext"])
        mac = _unbase64(encrypted["mac"])
    except (KeyError, TypeError, binascii.Error) as e:
        raise SecretStorageError(f"{name} in secret storage is malformed") from e
    expected = hmac.digest(mac_key, ciphertext, "sha256")
    if not hmac.compare_digest(expected, mac):
        raise SecretStorageError(f"matrix.recovery_key does not open {name} (wrong key)")
    decryptor = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def _check_key(secret_storage_key: bytes, description: dict[str, Any]) -> None:
    """The key description's MAC: 32 zero bytes encrypted under the name "" (spec)."""
    if description.get("algorithm") != _ALGORITHM:
        raise SecretStorageError(
            f"the account's secret storage uses {description.get('algorithm')!r}, not {_ALGORITHM}"
        )
    if "iv" not in description or "mac" not in description:
        return  # a key from before key checks: the secrets' own MACs will tell
    aes_key, mac_key = _keys(secret_storage_key, "")
    encryptor = Cipher(algorithms.AES(aes_key), modes.CTR(_unbase64(description["iv"]))).encryptor()
    ciphertext = encryptor.update(b"\x00" * 32) + encryptor.finalize()
    expected = hmac.digest(mac_key, ciphertext, "sha256")
    if not hmac.compare_digest(expected, _unbase64(description["mac"])):
        raise SecretStorageError(
            "matrix.recovery_key is not the key of the account's secret storage"
        )


async def read_secrets(
    account_data: AccountData, recovery_key: str, names: tuple[str, ...]
) -> dict[str, str]:
    """The secrets C{names} from the account's default secret storage key, decrypted."""
    key = decode_recovery_key(recovery_key)
    default = await account_data("m.secret_storage.default_key")
    key_id = (default or {}).get("key")
    if not isinstance(key_id, str):
        raise SecretStorageError("the account has no secret storage (no default key)")
    description = await account_data(f"m.secret_storage.key.{key_id}")
    if description is None:
        raise SecretStorageError(f"the account's secret storage key {key_id} is not described")
    _check_key(key, description)
    secrets = {}
    for name in names:
        stored = await account_data(name)
        encrypted = ((stored or {}).get("encrypted") or {}).get(key_id)
        if not isinstance(encrypted, dict):
            raise SecretStorageError(f"{name} is not in the account's secret storage")
        secrets[name] = _decrypt(key, name, encrypted).decode("ascii", "replace")
    return secrets

"""Recovery keys as Element prints them, decoded (the secrets themselves: test_element.py)."""

from __future__ import annotations

from functools import reduce

import base58
import pytest

from jupybot.matrix._secret_storage import SecretStorageError, decode_recovery_key


def _printed(key: bytes) -> str:
    raw = b"\x8b\x01" + key
    raw += bytes([reduce(lambda a, b: a ^ b, raw)])
    text = base58.b58encode(raw).decode()
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def test_a_recovery_key_with_its_spaces_gives_the_key() -> None:
    key = bytes(range(32))
    assert decode_recovery_key(_printed(key)) == key


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not a key 0OIl", "not base58"),
        ("EsTc", "wrong length"),
    ],
)
def test_what_is_not_a_recovery_key_is_refused(text: str, why: str) -> None:
    with pytest.raises(SecretStorageError, match=why):
        decode_recovery_key(text)


def test_a_typo_is_caught_by_the_parity() -> None:
    printed = _printed(bytes(range(32)))
    typo = printed[:-1] + ("2" if printed[-1] != "2" else "3")
    with pytest.raises(SecretStorageError):
        decode_recovery_key(typo)

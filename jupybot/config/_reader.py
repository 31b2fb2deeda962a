"""Reads one YAML mapping into typed values, collecting every error with its key path.

A section's C{read} classmethod asks a L{Reader} for each key with the type it expects; the
reader returns a usable default on a mistake and records ``path: what was expected, got what``,
so that one pass over the document reports every mistake at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

_ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class Secret:
    """A credential: never shown by repr() or str(), so it cannot reach a log by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def describe(value: object) -> str:
    """How a wrong value is quoted in an error message."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        odd = next((item for item in value if not isinstance(item, str)), None)
        if odd is not None:
            # YAML reads yes/no/on/off and bare numbers as other types: say which item.
            return f"a list holding {odd!r} (quote it to make it a string)"
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)


@dataclass
class ConfigContext:
    """What every reader of one document shares: the errors so far and the environment."""

    environ: Mapping[str, str]
    errors: list[str] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)


_MISSING = object()

_URL_LABELS: dict[tuple[str, ...], str] = {
    ("http", "https"): "an http(s) URL",
    ("ws", "wss"): "a ws(s) URL",
}


class Reader:
    """Typed access to one mapping at C{path} of the configuration document."""

    def __init__(self, data: object, path: str, context: ConfigContext) -> None:
        self.path = path
        self.context = context
        self._seen: set[str] = set()
        self._broken = False
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            self.error("", f"expected a mapping, got {describe(data)}")
            # One error for a value that is not a mapping, not one more for each missing key.
            self._broken = True
            data = {}
        self._data: Mapping[object, object] = data

    # -- errors -----------------------------------------------------------------------------

    def key_path(self, key: str) -> str:
        if not key:
            return self.path or "(top level)"
        if key.startswith("["):
            return f"{self.path}{key}"
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        if self._broken:
            return
        self.context.errors.append(f"{self.key_path(key)}: {message}")

    @staticmethod
    def url_like(value: str, schemes: tuple[str, ...] = ("http", "https")) -> bool:
        return _as_url(value, schemes) is not None

    def _raw(self, key: str) -> object:
        self._seen.add(key)
        value = self._data.get(key, _MISSING)
        if isinstance(value, str):
            reference = _ENV_REFERENCE.match(value)
            if reference:
                name = reference.group(1)
                if name not in self.context.environ:
                    return _EnvUnset(name)
                return self.context.environ[name]
        return value

    def _typed(self, key: str, default: T, check: Callable[[object], T | None], expected: str) -> T:
        value = self._raw(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, _EnvUnset):
            self.error(key, f"environment variable {value.name} is not set")
            return default
        converted = check(value)
        if converted is None:
            self.error(key, f"expected {expected}, got {describe(value)}")
            return default
        return converted

    # -- scalars ------------------------------------------------------------------------------

    def string(self, key: str, default: str) -> str:
        return self._typed(key, default, _as_str, "a string")

    def optional_string(self, key: str) -> str | None:
        return self._typed(key, None, _as_str, "a string")

    def integer(
        self, key: str, default: int, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self._typed(key, default, _as_int, "an integer")
        return self._bounded(key, value, default, minimum, maximum)

    def number(
        self,
        key: str,
        default: float,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self._typed(key, default, _as_float, "a number")
        return self._bounded(key, value, default, minimum, maximum)

    def _bounded(
        self,
        key: str,
        value: T,
        default: T,
        minimum: float | None,
        maximum: float | None,
    ) -> T:
        assert isinstance(value, (int, float))
        if minimum is not None and value < minimum:
            self.error(key, f"expected at least {minimum}, got {value!r}")
            return default
        if maximum is not None and value > maximum:
            self.error(key, f"expected at most {maximum}, got {value!r}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self._typed(key, default, _as_bool, "true or false")

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        expected = "one of " + ", ".join(repr(c) for c in choices)

        def pick(value: object) -> str | None:
            if isinstance(value, bool):  # YAML 1.1 reads a bare `off` (or `no`) as false
                value = "on" if value else "off"
            return value if isinstance(value, str) and value in choices else None

        return self._typed(key, default, pick, expected)

    def url(
        self, key: str, default: str | None, schemes: tuple[str, ...] = ("http", "https")
    ) -> str | None:
        expected = _URL_LABELS.get(schemes, "a URL with scheme " + " or ".join(schemes))
        return self._typed(key, default, lambda v: _as_url(v, schemes), expected)

    def endpoint(self, key: str, default: str) -> str:
        expected = "a Twisted server endpoint such as 'tcp:8080:interface=127.0.0.1'"
        return self._typed(key, default, _as_server_endpoint, expected)

    def secret(self, key: str) -> Secret | None:
        """A credential given inline or as C{${ENV_VAR}}; an unset variable means no credential."""
        value = self._raw(key)
        if value is _MISSING or value is None or isinstance(value, _EnvUnset):
            return None
        if not isinstance(value, str) or not value:
            got = "an empty string" if value == "" else describe(value)
            self.error(key, f"expected a string or ${{ENV_VAR}}, got {got}")
            return None
        secret = Secret(value)
        self.context.secrets.append(secret)
        return secret

    def string_list(self, key: str, default: list[str] | None = None) -> list[str]:
        return self._typed(key, list(default or []), _as_str_list, "a list of strings")

    def string_map(self, key: str) -> dict[str, str]:
        return self._typed(key, {}, _as_str_map, "a mapping of strings to strings")

    # -- structure ----------------------------------------------------------------------------

    def section(self, key: str) -> Reader:
        value = self._raw(key)
        return Reader(None if value is _MISSING else value, self.key_path(key), self.context)

    def sequence(self, key: str) -> Iterator[Reader]:
        """One reader per mapping in the list at C{key}."""
        value = self._raw(key)
        if value is _MISSING or value is None:
            return
        if not isinstance(value, list):
            self.error(key, f"expected a list, got {describe(value)}")
            return
        for index, item in enumerate(value):
            yield Reader(item, self.key_path(key) + f"[{index}]", self.context)

    def finish(self) -> None:
        """Report every key nobody asked for: a typo must not be silently ignored."""
        known = sorted(self._seen)
        for key in self._data:
            if key not in self._seen:
                hint = f" (expected one of: {', '.join(known)})" if known else ""
                self.error(str(key), f"unknown key{hint}")


class _EnvUnset:
    def __init__(self, name: str) -> None:
        self.name = name


def _as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_float(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _as_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_str_list(value: object) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    return None


def _as_str_map(value: object) -> dict[str, str] | None:
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        return {str(k): str(v) for k, v in value.items()}
    return None


def _as_url(value: object, schemes: tuple[str, ...]) -> str | None:
    if not isinstance(value, str):
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        return None
    return value.rstrip("/")


def _as_server_endpoint(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    from twisted.internet.endpoints import serverFromString

    try:
        # Building an endpoint only parses its description; no reactor is touched.
        serverFromString(None, value)
    except (ValueError, TypeError, KeyError):
        return None
    return value

"""`matrix:`: the Matrix bot's homeserver and credentials. Owned by the Matrix part."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader, Secret


@dataclass(frozen=True)
class MatrixConfig:
    homeserver: str | None
    user_id: str | None
    access_token: Secret | None
    password: Secret | None

    @classmethod
    def read(cls, r: Reader) -> MatrixConfig:
        homeserver = r.url("homeserver", None)
        user_id = r.optional_string("user_id")
        if user_id is not None and not (user_id.startswith("@") and ":" in user_id):
            r.error(
                "user_id", f"expected a Matrix user ID such as '@bot:example.org', got {user_id!r}"
            )
        access_token = r.secret("access_token")
        password = r.secret("password")
        r.finish()
        return cls(homeserver, user_id, access_token, password)

    def disabled_reason(self) -> str | None:
        if self.homeserver is None or self.user_id is None:
            return "no matrix.homeserver and matrix.user_id"
        if self.access_token is None and self.password is None:
            return "no matrix.access_token or matrix.password"
        return None

"""`gateway:`: which Jupyter Kernel Gateway to use. Owned by the kernels part."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader, Secret


@dataclass(frozen=True)
class GatewayConfig:
    # None: start the embedded gateway as a child process.
    url: str | None
    token: Secret | None

    @classmethod
    def read(cls, r: Reader) -> GatewayConfig:
        url = r.url("url", None)
        token = r.secret("token")
        r.finish()
        return cls(url=url, token=token)

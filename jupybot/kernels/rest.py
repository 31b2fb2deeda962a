"""The Kernel Gateway's REST API (`/api/kernelspecs`, `/api/kernels/...`), through treq.

The same API is served by Jupyter Server, Kernel Gateway and Enterprise Gateway (how they differ:
docs/kernels.md, "Kernel Gateway, Enterprise Gateway, Jupyter Server"). Errors come back as L{KernelError}s whose text is fit to show to
people; the reason is logged.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    ResponseNeverReceived,
    _HTTP11ClientFactory,
)
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from ..reactor import NetworkReactor
from .api import (
    GatewayUnavailable,
    KernelError,
    KernelLimitReached,
    KernelSpec,
    NoSuchKernel,
    UnknownKernelSpec,
)

log = Logger()

_UNREACHABLE = (ConnectError, DNSLookupError, TimeoutError, ResponseNeverReceived)


class _QuietClientFactory(_HTTP11ClientFactory):
    # Twisted logs "Starting factory"/"Stopping factory" around every request otherwise.
    noisy = False


def quiet_pool(reactor: NetworkReactor) -> HTTPConnectionPool:
    """What Agent makes by default (a connection per request), without two log lines each."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    pool._factory = _QuietClientFactory  # the one way to choose it: Twisted's own tests do
    return pool


@implementer(IPolicyForHTTPS)
class _NoVerification:
    """For `gateway.verify_tls: false` (a gateway with a self-signed certificate)."""

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return CertificateOptions(verify=False)


class GatewayRest:
    """One gateway's REST endpoints. C{base_url} has no trailing slash."""

    def __init__(
        self,
        reactor: NetworkReactor,
        base_url: str,
        token: str | None,
        timeout: float,
        verify_tls: bool = True,
    ) -> None:
        policy = BrowserLikePolicyForHTTPS() if verify_tls else _NoVerification()
        self._http = HTTPClient(Agent(reactor, contextFactory=policy, pool=quiet_pool(reactor)))
        self.base_url = base_url
        self._token = token
        self._timeout = timeout
        self._listed_specs: frozenset[str] = frozenset()

    def headers(self) -> dict[bytes | str, list[bytes | str]]:
        if self._token is None:
            return {}
        return {b"Authorization": [f"token {self._token}".encode()]}

    def websocket_headers(self) -> dict[str, str]:
        return {} if self._token is None else {"Authorization": f"token {self._token}"}

    async def request(self, method: str, path: str, body: object | None = None) -> Any:
        """Call the API; return the decoded JSON (or None for an empty body)."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = self.headers()
        if data is not None:
            headers[b"Content-Type"] = [b"application/json"]
        try:
            response = await self._http.request(
                method, url, data=data, headers=headers, timeout=self._timeout
            )
            content = await treq.content(response)
        except _UNREACHABLE as e:
            log.warn("kernels: {method} {url} failed: {error}", method=method, url=url, error=e)
            raise GatewayUnavailable(
                "The kernel gateway cannot be reached right now; try again in a moment."
            ) from e
        code = response.code
        if code == 404:
            raise NoSuchKernel("That kernel no longer exists on the gateway.")
        if code >= 400:
            reason = _error_reason(content)
            if code in (401, 403):
                raise _refusal(code, reason)
            log.warn(
                "kernels: {method} {path} -> {code}: {reason}",
                method=method,
                path=path,
                code=code,
                reason=reason,
            )
            if "No such kernel" in reason or "kernelspec" in reason.lower():
                raise UnknownKernelSpec(f"The gateway has no such kernel type: {reason}")
            raise GatewayUnavailable(f"The kernel gateway answered {code}: {reason}")
        return json.loads(content) if content.strip() else None

    async def kernelspecs(self) -> tuple[str, list[KernelSpec]]:
        """The default spec name and every spec the gateway offers (remembered for L{start_kernel})."""
        answer = await self.request("GET", "/api/kernelspecs")
        specs = [
            KernelSpec(
                name=name,
                display_name=str(entry.get("spec", {}).get("display_name", name)),
                language=str(entry.get("spec", {}).get("language", "")),
            )
            for name, entry in sorted(answer.get("kernelspecs", {}).items())
        ]
        self._listed_specs = frozenset(spec.name for spec in specs)
        return str(answer.get("default", "")), specs

    async def start_kernel(self, spec: str) -> str:
        """Start a kernel of C{spec}, which must be one the gateway lists; return its id.

        The body is C{{"name": spec}} and nothing else: the spec may have been typed in a chat,
        so only a name the gateway listed goes out, and no `env` at all (Enterprise Gateway puts
        a request's `KERNEL_*` variables into the kernel's launch, and up to 3.3.0 turned such
        values into shell commands when launching over SSH).
        """
        if spec not in self._listed_specs:
            await self.kernelspecs()  # the gateway may have gained specs since
        if spec not in self._listed_specs:
            known = ", ".join(sorted(self._listed_specs)) or "none"
            shown = spec if len(spec) <= 40 else spec[:40] + "…"
            raise UnknownKernelSpec(f"There is no kernel type {shown!r}; available: {known}.")
        answer = await self.request("POST", "/api/kernels", {"name": spec})
        return str(answer["id"])

    async def kernel(self, kernel_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", f"/api/kernels/{kernel_id}")
        return answer

    async def interrupt(self, kernel_id: str) -> None:
        await self.request("POST", f"/api/kernels/{kernel_id}/interrupt")

    async def restart(self, kernel_id: str) -> None:
        await self.request("POST", f"/api/kernels/{kernel_id}/restart")

    async def shutdown(self, kernel_id: str) -> None:
        await self.request("DELETE", f"/api/kernels/{kernel_id}")

    def channels_url(self, kernel_id: str) -> str:
        ws_base = "ws" + self.base_url[len("http") :]
        return f"{ws_base}/api/kernels/{kernel_id}/channels"


def _refusal(code: int, reason: str) -> KernelError:
    """A 401 or 403. Kernel Gateway and Enterprise Gateway answer a wrong token with 401, Jupyter
    Server with a bare 403 "Forbidden"; a 403 with a reason is a gateway's policy: its kernel
    limits (Kernel Gateway's "Resource Limit", Enterprise Gateway's "max kernels"), or an
    Enterprise Gateway that refuses the kernel's user (`unauthorized_users`)."""
    if code == 401 or reason.strip().lower() in ("forbidden", "", "no reason given"):
        log.error("kernels: the gateway refused jupybot's token ({code})", code=code)
        return GatewayUnavailable("The kernel gateway refused jupybot's credentials.")
    log.error("kernels: the gateway refused: {reason}", reason=reason)
    if "limit" in reason.lower():
        return KernelLimitReached(
            "The kernel gateway runs as many kernels as it allows; stop one first."
        )
    return GatewayUnavailable(
        "The kernel gateway refused to start a kernel; jupybot's log says why."
    )


def _error_reason(content: bytes) -> str:
    try:
        answer = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace").strip()[:200] or "no reason given"
    if isinstance(answer, dict):
        return str(answer.get("message") or answer.get("reason") or answer)[:200]
    return str(answer)[:200]

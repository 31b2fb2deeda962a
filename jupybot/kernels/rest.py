"""The Kernel Gateway's REST API (`/api/kernelspecs`, `/api/kernels/...`), through treq.

The same API is served by Jupyter Server, Kernel Gateway and Enterprise Gateway. Errors come back
as L{KernelError}s whose text is fit to show to people; the reason is logged.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, ResponseNeverReceived
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from ..reactor import Reactor
from .api import GatewayUnavailable, KernelSpec, NoSuchKernel, UnknownKernelSpec

log = Logger()

_UNREACHABLE = (ConnectError, DNSLookupError, TimeoutError, ResponseNeverReceived)


@implementer(IPolicyForHTTPS)
class _NoVerification:
    """For `gateway.verify_tls: false` (a gateway with a self-signed certificate)."""

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return CertificateOptions(verify=False)


class GatewayRest:
    """One gateway's REST endpoints. C{base_url} has no trailing slash."""

    def __init__(
        self,
        reactor: Reactor,
        base_url: str,
        token: str | None,
        timeout: float,
        verify_tls: bool = True,
    ) -> None:
        policy = BrowserLikePolicyForHTTPS() if verify_tls else _NoVerification()
        self._http = HTTPClient(Agent(reactor, contextFactory=policy))
        self.base_url = base_url
        self._token = token
        self._timeout = timeout

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
        if code in (401, 403):
            log.error("kernels: the gateway refused jupybot's token ({code})", code=code)
            raise GatewayUnavailable("The kernel gateway refused jupybot's credentials.")
        if code == 404:
            raise NoSuchKernel("That kernel no longer exists on the gateway.")
        if code >= 400:
            reason = _error_reason(content)
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
        """The default spec name and every spec the gateway offers."""
        answer = await self.request("GET", "/api/kernelspecs")
        specs = [
            KernelSpec(
                name=name,
                display_name=str(entry.get("spec", {}).get("display_name", name)),
                language=str(entry.get("spec", {}).get("language", "")),
            )
            for name, entry in sorted(answer.get("kernelspecs", {}).items())
        ]
        return str(answer.get("default", "")), specs

    async def start_kernel(self, spec: str) -> str:
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


def _error_reason(content: bytes) -> str:
    try:
        answer = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace").strip()[:200] or "no reason given"
    if isinstance(answer, dict):
        return str(answer.get("message") or answer.get("reason") or answer)[:200]
    return str(answer)[:200]

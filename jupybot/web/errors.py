"""The site's own answers to requests it cannot serve: JSON, like every other error.

Twisted answers an unknown path and a method a resource does not take with HTML pages (`404 No
Such Resource`, `501 Huh?`), and a resource that failed with a traceback page; docs/contact.md
promises JSON for every error. L{JsonErrorRequest}, the site's request class (set by
L{jupybot.web.edges.EdgeFactory}), answers them itself.
"""

from __future__ import annotations

import json

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import pages, resource
from twisted.web.resource import IResource
from twisted.web.server import Request, UnsupportedMethod

__all__ = ["HTTP_METHODS", "JsonErrorRequest"]

log = Logger()

# Methods HTTP defines (RFC 9110, RFC 5789): one a resource does not take is 405, any other 501.
HTTP_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH")
)
# Twisted's error pages (its 404 for an unknown path, a static folder's 403), private classes
# found by name: a Twisted without them leaves its pages HTML, which tests/web would notice.
_ERROR_PAGES: tuple[type, ...] = tuple(
    kind
    for kind in (
        getattr(resource, "_UnsafeErrorPageBase", None),
        getattr(pages, "_ErrorPage", None),
    )
    if isinstance(kind, type)
)
MESSAGES = {
    403: "You may not read this.",
    404: "There is nothing at this address.",
}


def json_answer(request: Request, code: int, message: str) -> bytes:
    """Set C{code} and the JSON headers on C{request}; the body to write."""
    body = json.dumps({"error": message}).encode()
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def _error_page_code(page: IResource) -> int | None:
    """The status one of Twisted's error pages would answer; None for any other resource."""
    if not isinstance(page, _ERROR_PAGES):
        return None
    code = getattr(page, "code", getattr(page, "_code", None))
    return code if isinstance(code, int) else 404


class _JsonMethodRefusal:
    """Renders C{wrapped}, answering a method it does not take with JSON: 405 with C{Allow},
    501 for a method HTTP does not have, 404 for a resource that takes none (a folder of
    others, such as the terminal's websockets)."""

    def __init__(self, wrapped: IResource) -> None:
        self._wrapped = wrapped

    def render(self, request: Request) -> bytes | int:
        try:
            body: bytes | int = self._wrapped.render(request)
        except UnsupportedMethod as e:
            offered: list[bytes] = list(e.allowedMethods)
            allowed = sorted(m for m in offered if m != b"HEAD" or b"GET" in offered)
            if request.method == b"HEAD" and b"GET" in allowed:
                raise  # Twisted answers HEAD with what GET would, without the body
            if request.method not in HTTP_METHODS:
                method = request.method.decode("latin-1")
                return json_answer(request, 501, f"The method {method} is not supported.")
            if not allowed:
                return json_answer(request, 404, MESSAGES[404])
            request.setHeader(b"allow", b", ".join(allowed))
            methods = ", ".join(m.decode("ascii") for m in allowed)
            return json_answer(request, 405, f"Only {methods} here.")
        return body


class JsonErrorRequest(Request):
    """A request whose every error the site answers itself is JSON: an unknown path, a method
    not taken, a resource that failed (an exception: a 500, logged)."""

    def render(self, resrc: IResource) -> None:
        code = _error_page_code(resrc)
        if code is not None:
            body = json_answer(self, code, MESSAGES.get(code, "This request cannot be served."))
            self.write(b"" if self.method == b"HEAD" else body)
            self.finish()
            return
        super().render(_JsonMethodRefusal(resrc))

    def processingFailed(self, reason: Failure) -> Failure:
        log.failure(
            "web: {method} {path} failed",
            failure=reason,
            method=self.method.decode("latin-1"),
            path=self.path.decode("latin-1"),
        )
        body = json_answer(self, 500, "The server failed to answer this request.")
        self.write(body)
        self.finish()
        return reason

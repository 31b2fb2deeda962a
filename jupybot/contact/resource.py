"""POST /contact: validation, rate limit, CORS; 202 only once the message is on disk."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ..config.contact import ContactConfig
from ..limits import KeyedLimiter, SlidingWindow
from ..web.clients import (
    NO_PROXIES,
    Client,
    OriginVerdict,
    ProxyTrust,
    check_origin,
    client_of_request,
)
from .api import ContactMessage
from .store import NewMessage, StoreStopped
from .writer import UnstorableMessage
from .writers import WriterDied

log = Logger()

# Deliberately plain: one @, something on each side, a dot in the domain, no spaces.
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
FIELD_LIMITS = {"name": 200, "email": 254, "subject": 300}


def validate(fields: dict[str, object], config: ContactConfig) -> tuple[NewMessage | None, dict[str, str]]:  # fmt: skip
    """The message, or what is wrong with each field.

    What passes is plain text that SQLite and every channel can take: strings only (not a number
    or NaN), valid Unicode (no lone surrogate), no control characters but a message's line
    breaks and tabs.
    """
    errors: dict[str, str] = {}
    text: dict[str, str] = {}
    for field in ("name", "email", "subject", "message"):
        value = fields.get(field, "")
        problem = text_problem(value, multiline=field == "message")
        if problem is not None:
            errors[field] = problem
        else:
            assert isinstance(value, str)
            text[field] = value
    name = text.get("name", "").strip()
    email = text.get("email", "").strip()
    subject = text.get("subject", "").strip() or None
    message = text.get("message", "").strip()
    if "name" in text and not name:
        errors["name"] = "required"
    if "email" in text:
        if not email:
            errors["email"] = "required"
        elif not EMAIL.match(email):
            errors["email"] = "not an email address"
    if "message" in text:
        if not message:
            errors["message"] = "required"
        elif len(message) > config.max_message_chars:
            errors["message"] = f"longer than {config.max_message_chars} characters"
    for field, limit in FIELD_LIMITS.items():
        if len(text.get(field, "")) > limit:
            errors[field] = f"longer than {limit} characters"
    if errors:
        return None, errors
    return NewMessage(name, email, subject, message, ""), {}


# A lone surrogate (not Unicode text: no UTF-8 for it), and the C0 and C1 control characters,
# but for a message's line breaks and tabs. One regular expression search per field: checking
# each character in Python cost a tenth of a request's time in bench/contact.py.
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def text_problem(value: object, multiline: bool) -> str | None:
    """What keeps C{value} from being a field's text, or None."""
    if not isinstance(value, str):
        return "must be text"
    if _SURROGATE.search(value):
        return "not valid Unicode text"
    if (_CONTROL_BUT_LINES if multiline else _CONTROL).search(value):
        return "must not contain control characters"
    return None


class ContactResource(Resource):
    isLeaf = True

    def __init__(
        self,
        config: ContactConfig,
        origins: tuple[str, ...],
        clock: IReactorTime,
        accept: Callable[[NewMessage], Deferred[ContactMessage]],
        proxies: ProxyTrust = NO_PROXIES,
    ) -> None:
        super().__init__()
        self._config = config
        self._origins = origins
        # Whose forwarding headers name the visitor (`web.trusted_proxies`).
        self._proxies = proxies
        self._accept = accept
        self._limiter = KeyedLimiter(
            clock, SlidingWindow(config.rate_limit, config.rate_window_seconds)
        )
        self.rate_limited = 0  # messages refused with 429 since start; read by /metrics

    def render(self, request: Request) -> bytes | int:
        """Every answer here is JSON, a method other than POST's included."""
        if request.method not in (b"POST", b"OPTIONS"):
            request.setHeader(b"allow", b"POST, OPTIONS")
            return _json(request, 405, {"error": "Send the message with POST."})
        try:
            result: bytes | int = super().render(request)
        except Exception:  # a bug, not the visitor's input: logged, and no HTML page
            log.failure("contact: answering a request failed")
            return _json(request, 500, {"error": "The message was not stored; try again."})
        return result

    def render_OPTIONS(self, request: Request) -> bytes:
        """CORS preflight: only for the configured origins."""
        if not self._cors(request, client_of_request(request, self._proxies)):
            return _json(request, 403, {"error": "This origin may not post here."})
        request.setHeader(b"access-control-allow-methods", b"POST, OPTIONS")
        request.setHeader(b"access-control-allow-headers", b"Content-Type")
        request.setHeader(b"access-control-max-age", b"86400")
        request.setResponseCode(204)
        return b""

    def render_POST(self, request: Request) -> bytes | int:
        client = client_of_request(request, self._proxies)
        if not self._cors(request, client):
            return _json(request, 403, {"error": "This origin may not post here."})
        limit = self._config.max_body_kb * 1024
        length = request.getHeader(b"content-length")
        body = request.content.read(limit + 1) if request.content is not None else b""
        if (length is not None and length.isdigit() and int(length) > limit) or len(body) > limit:
            return _json(request, 413, {"error": f"The message is larger than {limit} bytes."})
        try:
            fields = _fields(request, body)
        except MalformedBody as e:
            return _json(request, e.status, {"error": str(e)})
        client_ip = client.address
        if fields.get(self._config.honeypot_field):
            # A form-filling robot: it is told what a person would be, and nothing is stored.
            log.info("contact: honeypot filled from {ip}; dropped", ip=client_ip)
            return _json(request, 202, {"status": "accepted"})
        new, errors = validate(fields, self._config)
        if new is None:
            return _json(request, 400, {"error": "Some fields are not valid.", "fields": errors})
        wait = self._limiter.take(client.limit_key)
        if wait is not None:
            self.rate_limited += 1
            request.setHeader(b"retry-after", str(max(1, round(wait))).encode())
            return _json(request, 429, {"error": "Too many messages; try again later."})
        stored = self._accept(NewMessage(new.name, new.email, new.subject, new.message, client_ip))

        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def accepted(message: ContactMessage) -> None:
            if not gone:  # a client that went away: the message is stored all the same
                _finish(request, 202, {"status": "accepted", "id": message.id})

        def failed(failure: Failure) -> None:
            if failure.check(UnstorableMessage):
                log.warn("contact: a message from {ip} refused by the database: {why}",
                         ip=client_ip, why=failure.getErrorMessage())  # fmt: skip
                if not gone:
                    _finish(request, 400, {"error": "The message has text that cannot be stored."})
                return
            if failure.check(WriterDied, StoreStopped):  # no bug: the store logs a death itself
                log.warn("contact: a message from {ip} was not stored: {why}",
                         ip=client_ip, why=failure.getErrorMessage())  # fmt: skip
            else:
                log.failure("contact: could not store a message", failure)
            if not gone:
                _finish(request, 503, {"error": "The message could not be stored; try again."})

        stored.addCallbacks(accepted, failed)
        return NOT_DONE_YET

    def _cors(self, request: Request, client: Client) -> bool:
        """The one Origin rule (jupybot/web/clients.py); a listed origin is told so."""
        origin = request.getHeader(b"origin")
        text = origin.decode("latin-1") if origin is not None else None
        verdict = check_origin(text, client, self._origins)
        if verdict is OriginVerdict.LISTED and origin is not None:
            request.setHeader(b"access-control-allow-origin", origin)
            request.setHeader(b"vary", b"Origin")
        return verdict.allowed


MAX_FORM_FIELDS = 50


class MalformedBody(ValueError):
    """A body the endpoint cannot read at all; C{status} is the 4xx to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _fields(request: Request, body: bytes) -> dict[str, object]:
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type == b"application/json":
        return _json_fields(body)
    if content_type in (b"application/x-www-form-urlencoded", b""):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedBody("The form is not UTF-8.") from None
        try:
            parsed = parse_qs(
                text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
            )
        except UnicodeDecodeError:  # percent-encoded bytes that are not UTF-8 (%ff)
            raise MalformedBody("The form is not UTF-8.") from None
        except ValueError:
            raise MalformedBody(f"The form has more than {MAX_FORM_FIELDS} fields.") from None
        return {k: v[0] for k, v in parsed.items()}
    raise MalformedBody("Send application/json or application/x-www-form-urlencoded.", 415)


def _json_fields(body: bytes) -> dict[str, object]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("The body is not UTF-8.") from None
    try:
        data = _JSON.decode(text)
    except _NotJsonConstant as e:
        raise MalformedBody(f"{e} is not a JSON value.") from None
    except RecursionError:  # json's parser recurses once per level: [[[[...]]]] ends here
        raise MalformedBody("The JSON is nested too deeply.") from None
    except ValueError:
        raise MalformedBody("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise MalformedBody("The body must be a JSON object.")
    return {k: v for k, v in data.items() if v is not None}


class _NotJsonConstant(ValueError):
    pass


def _no_constant(name: str) -> object:
    """Python's json reads NaN, Infinity and -Infinity, which JSON does not have."""
    raise _NotJsonConstant(name)


# Made once: json.loads with any keyword builds a decoder (and its scanner) at every call.
_JSON = json.JSONDecoder(parse_constant=_no_constant)


def _json(request: Request, code: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body).encode()


def _finish(request: Request, code: int, body: dict[str, Any]) -> None:
    data = _json(request, code, body)
    request.setHeader(b"content-length", str(len(data)).encode())  # not chunked: one write
    request.write(data)
    request.finish()

"""A small Discord of our own, for real discord.py to talk to over loopback sockets.

It speaks the wire protocol discord.py needs: REST (users, DM channels, messages with files,
edits, reactions, application commands, interaction callbacks and webhooks) and the gateway
websocket (HELLO, IDENTIFY, READY, heartbeats, MESSAGE_CREATE, INTERACTION_CREATE). State is
kept in memory; tests read it and wait on it. Runs on aiohttp (a discord.py dependency) on the
shared asyncio loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.harness import JupybotProcess, jupybot_config

Json = dict[str, Any]

_ids = itertools.count(1_100_000_000_000_000_000)


def snowflake() -> str:
    return str(next(_ids))


def user_object(user_id: str, name: str, bot: bool = False) -> Json:
    return {
        "id": user_id,
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": bot,
    }


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py decodes a body only when Content-Type is exactly application/json.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


@dataclass
class FakeDiscord:
    """The server and its state. L{start} listens on 127.0.0.1; L{api_base} is for discord.py."""

    bot_token: str = "fake-bot-token"
    bot: Json = field(default_factory=lambda: user_object(snowflake(), "jupybot", bot=True))
    application_id: str = field(default_factory=snowflake)
    users: dict[str, Json] = field(default_factory=dict)
    # Users who do not accept direct messages from the bot (Discord's error 50007).
    closed_dms: set[str] = field(default_factory=set)
    channels: dict[str, Json] = field(default_factory=dict)
    messages: dict[str, list[Json]] = field(default_factory=dict)
    commands: list[Json] = field(default_factory=list)
    interactions: dict[str, Json] = field(default_factory=dict)
    down: bool = False  # every REST call answers 503

    def __post_init__(self) -> None:
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._sequence = itertools.count(1)
        self._changed = asyncio.Condition()
        self.identified = asyncio.Event()

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{channel_id}/{file_id}/{filename}", self._attachment)
        api = "/api/v10"
        routes = [
            ("GET", "/gateway/bot", self._gateway_bot),
            ("GET", "/users/@me", self._me),
            ("GET", "/oauth2/applications/@me", self._application),
            ("GET", "/users/{user_id}", self._user),
            ("POST", "/users/@me/channels", self._open_dm),
            ("GET", "/channels/{channel_id}", self._channel),
            ("GET", "/channels/{channel_id}/messages", self._history),
            ("POST", "/channels/{channel_id}/messages", self._post_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._react,
            ),
            ("PUT", "/applications/{app_id}/commands", self._sync_commands),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback),
            ("GET", "/webhooks/{app_id}/{token}/messages/@original", self._original),
            ("PATCH", "/webhooks/{app_id}/{token}/messages/@original", self._edit_original),
            ("POST", "/webhooks/{app_id}/{token}", self._followup),
            ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", self._edit_followup),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, api + path, handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return self.url + "/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http", "ws") + "/gateway"

    # -- what tests do ----------------------------------------------------------------------

    def add_user(self, name: str) -> Json:
        user = user_object(snowflake(), name)
        self.users[user["id"]] = user
        return user

    def dm_channel(self, user: Json) -> Json:
        for channel in self.channels.values():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == user["id"]:
                return channel
        channel = {"id": snowflake(), "type": 1, "last_message_id": None, "recipients": [user]}
        self.channels[channel["id"]] = channel
        self.messages[channel["id"]] = []
        return channel

    async def user_says(
        self, user: Json, channel: Json, content: str, files: Sequence[tuple[str, str, bytes]] = ()
    ) -> Json:
        """The user posts C{content} in C{channel}, with C{files} (name, content type, data)
        attached (served on the fake's CDN path): stored, and dispatched to the bot."""
        attached = []
        for filename, content_type, data in files:
            file_id = snowflake()
            url = f"{self.url}/attachments/{channel['id']}/{file_id}/{filename}"
            attached.append({
                "id": file_id, "filename": filename, "size": len(data), "url": url,
                "proxy_url": url, "content_type": content_type, "data": data,
            })  # fmt: skip
        message = self._message(channel["id"], user, content, files=attached)
        await self._dispatch("MESSAGE_CREATE", _without_data(message))
        return message

    async def user_runs(self, user: Json, channel: Json, name: str, **options: Any) -> Json:
        """The user runs slash command C{name}: an INTERACTION_CREATE for the bot."""
        interaction_id = snowflake()
        token = f"token-{interaction_id}"
        interaction = {
            "id": interaction_id,
            "application_id": self.application_id,
            "type": 2,
            "token": token,
            "version": 1,
            "channel_id": channel["id"],
            "channel": channel,
            "user": user,
            "locale": "en-US",
            "app_permissions": "0",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "context": 1,
            # discord.py reads it on every interaction; a real Discord always sends it.
            "attachment_size_limit": 10 * 1024 * 1024,
            "data": {
                "id": self._command_id(name),
                "name": name,
                "type": 1,
                "options": [
                    {"name": key, "type": 3, "value": value} for key, value in options.items()
                ],
            },
        }
        self.interactions[token] = {"interaction": interaction, "response": None}
        await self._dispatch("INTERACTION_CREATE", interaction)
        return interaction

    async def wait_for(self, check: Callable[[], Any], within: float = 30.0) -> Any:
        """Wait until C{check()} is truthy (re-checked at every change), and return it."""

        async def wait() -> Any:
            async with self._changed:
                while not (found := check()):
                    await self._changed.wait()
                return found

        return await asyncio.wait_for(wait(), within)

    def bot_messages(self, channel_id: str) -> list[Json]:
        return [m for m in self.messages.get(channel_id, []) if m["author"]["id"] == self.bot["id"]]

    # -- gateway ----------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(frame.data)
                op = payload.get("op")
                if op == 1:
                    await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
                elif op == 2:
                    if payload["d"].get("token") != self.bot_token:
                        await ws.close(code=4004, message=b"Authentication failed.")
                        break
                    await self._send(ws, "READY", self._ready())
                    self.identified.set()
                elif op == 6:
                    await self._send(ws, "RESUMED", {})
        finally:
            self._sockets.remove(ws)
        return ws

    def _ready(self) -> Json:
        return {
            "v": 10,
            "user": self.bot,
            "guilds": [],
            "session_id": "fake-session",
            "resume_gateway_url": self.url.replace("http", "ws") + "/gateway",
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }

    async def _send(self, ws: web.WebSocketResponse, event: str, data: Json) -> None:
        await ws.send_json({"op": 0, "t": event, "s": next(self._sequence), "d": data})

    async def _dispatch(self, event: str, data: Json) -> None:
        for ws in list(self._sockets):
            await self._send(ws, event, data)

    # -- REST -------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/") and "/webhooks/" not in request.path:
            if self.down:
                return _json({"message": "Service Unavailable", "code": 0}, 503)
            if "/interactions/" not in request.path and (
                request.headers.get("Authorization") != f"Bot {self.bot_token}"
            ):
                return _json({"message": "401: Unauthorized", "code": 0}, 401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _attachment(self, request: web.Request) -> web.Response:
        """A file someone attached, as Discord's CDN serves it."""
        for message in self.messages.get(request.match_info["channel_id"], []):
            for file in message.get("files", []):
                if file["id"] == request.match_info["file_id"]:
                    return web.Response(body=file["data"], content_type=file["content_type"])
        return web.Response(status=404)

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": self.url.replace("http", "ws") + "/gateway",
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _me(self, request: web.Request) -> web.Response:
        return _json(self.bot)

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": self.application_id,
                "name": "jupybot",
                "icon": None,
                "description": "",
                "bot_public": False,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "owner": user_object(snowflake(), "owner"),
                "team": None,
            }
        )

    async def _user(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["user_id"])
        if user is None:
            return _json({"message": "Unknown User", "code": 10013}, 404)
        return _json(user)

    async def _open_dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        user = self.users.get(str(body.get("recipient_id")))
        if user is None:
            return _json({"message": "Unknown User", "code": 10013}, 404)
        return _json(self.dm_channel(user))

    async def _channel(self, request: web.Request) -> web.Response:
        channel = self.channels.get(request.match_info["channel_id"])
        if channel is None:
            return _json({"message": "Unknown Channel", "code": 10003}, 404)
        return _json(channel)

    async def _history(self, request: web.Request) -> web.Response:
        messages = self.messages.get(request.match_info["channel_id"], [])
        limit = int(request.query.get("limit", "50"))
        return _json(list(reversed(messages))[:limit])

    async def _post_message(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel_id"]
        channel = self.channels.get(channel_id)
        if channel is None:
            return _json({"message": "Unknown Channel", "code": 10003}, 404)
        if channel["type"] == 1 and channel["recipients"][0]["id"] in self.closed_dms:
            return _json({"message": "Cannot send messages to this user", "code": 50007}, 403)
        body, files = await self._body(request)
        message = self._message(channel_id, self.bot, body.get("content") or "", body, files)
        await self._changed_now()
        return _json(_without_data(message))

    async def _edit_message(self, request: web.Request) -> web.Response:
        message = self._find(request.match_info["channel_id"], request.match_info["message_id"])
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        body, files = await self._body(request)
        self._apply_edit(message, body, files)
        await self._changed_now()
        return _json(_without_data(message))

    async def _react(self, request: web.Request) -> web.Response:
        message = self._find(request.match_info["channel_id"], request.match_info["message_id"])
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        message.setdefault("reactions", []).append({"emoji": {"name": request.match_info["emoji"]}})
        await self._changed_now()
        return web.Response(status=204)

    async def _sync_commands(self, request: web.Request) -> web.Response:
        commands = await request.json()
        self.commands = [
            {**command, "id": self._command_id(command["name"]), "application_id": self.application_id,
             "version": "1", "default_member_permissions": None, "type": command.get("type", 1)}
            for command in commands
        ]  # fmt: skip
        await self._changed_now()
        return _json(self.commands)

    async def _callback(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        entry = self.interactions.get(token)
        if entry is None:
            return _json({"message": "Unknown interaction", "code": 10062}, 404)
        body, files = await self._body(request)
        interaction = entry["interaction"]
        data = body.get("data") or {}
        result: Json = {
            "interaction": {"id": interaction["id"], "type": interaction["type"]},
        }
        if body.get("type") in (4, 5):  # a message now, or "thinking..." to edit later
            message = self._message(interaction["channel_id"], self.bot, data.get("content") or "",
                                    data, files)  # fmt: skip
            message["ephemeral"] = bool((data.get("flags") or 0) & 64)
            entry["response"] = message
            result["interaction"] |= {
                "response_message_id": message["id"],
                "response_message_loading": body["type"] == 5,
                "response_message_ephemeral": message["ephemeral"],
            }
            result["resource"] = {"type": body["type"], "message": message}
        await self._changed_now()
        return _json(result)

    async def _original(self, request: web.Request) -> web.Response:
        entry = self.interactions.get(request.match_info["token"])
        if entry is None or entry["response"] is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        return _json(entry["response"])

    async def _edit_original(self, request: web.Request) -> web.Response:
        entry = self.interactions.get(request.match_info["token"])
        if entry is None or entry["response"] is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        body, files = await self._body(request)
        self._apply_edit(entry["response"], body, files)
        await self._changed_now()
        return _json(entry["response"])

    async def _followup(self, request: web.Request) -> web.Response:
        entry = self.interactions.get(request.match_info["token"])
        if entry is None:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        body, files = await self._body(request)
        channel_id = entry["interaction"]["channel_id"]
        message = self._message(channel_id, self.bot, body.get("content") or "", body, files)
        await self._changed_now()
        return _json(_without_data(message))

    async def _edit_followup(self, request: web.Request) -> web.Response:
        entry = self.interactions.get(request.match_info["token"])
        if entry is None:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        channel_id = entry["interaction"]["channel_id"]
        message = self._find(channel_id, request.match_info["message_id"])
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        body, files = await self._body(request)
        self._apply_edit(message, body, files)
        await self._changed_now()
        return _json(_without_data(message))

    # -- helpers ----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> tuple[Json, list[Json]]:
        """The JSON payload and the uploaded files, from a JSON or a multipart request."""
        if request.content_type != "multipart/form-data":
            return (await request.json()) if request.can_read_body else {}, []
        payload: Json = {}
        files: list[Json] = []
        reader = await request.multipart()
        async for part in reader:
            if part.name == "payload_json":  # type: ignore[union-attr]
                payload = json.loads(await part.text())  # type: ignore[union-attr]
            else:
                data = await part.read()  # type: ignore[union-attr]
                files.append({
                    "id": snowflake(),
                    "filename": part.filename,  # type: ignore[union-attr]
                    "size": len(data),
                    "url": f"{self.url}/attachments/{part.filename}",  # type: ignore[union-attr]
                    "proxy_url": f"{self.url}/attachments/{part.filename}",  # type: ignore[union-attr]
                    "content_type": part.headers.get("Content-Type"),  # type: ignore[union-attr]
                    "data": data,
                })  # fmt: skip
        return payload, files

    def _message(self, channel_id: str, author: Json, content: str, body: Json | None = None,
                 files: list[Json] | None = None) -> Json:  # fmt: skip
        body = body or {}
        message = {
            "id": snowflake(),
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [_public(f) for f in files or []],
            "files": files or [],
            "embeds": body.get("embeds") or [],
            "allowed_mentions": body.get("allowed_mentions"),
            "pinned": False,
            "type": 0,
            "flags": body.get("flags") or 0,
        }
        if body.get("message_reference"):
            message["message_reference"] = body["message_reference"]
        self.messages.setdefault(channel_id, []).append(message)
        return message

    def _apply_edit(self, message: Json, body: Json, files: list[Json]) -> None:
        if "content" in body:
            message["content"] = body["content"] or ""
        if "embeds" in body:
            message["embeds"] = body["embeds"] or []
        if files:
            message["files"] = message.get("files", []) + files
            message["attachments"] = [_public(f) for f in message["files"]]
        message["edited_timestamp"] = datetime.now(UTC).isoformat()
        message.setdefault("edits", 0)
        message["edits"] += 1

    def _find(self, channel_id: str, message_id: str) -> Json | None:
        for message in self.messages.get(channel_id, []):
            if message["id"] == message_id:
                return message
        return None

    def _command_id(self, name: str) -> str:
        for command in self.commands:
            if command["name"] == name:
                return str(command["id"])
        return str(abs(hash(name)) % 10**18)

    async def _changed_now(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _without_data(message: Json) -> Json:
    """A message as Discord sends it: its files' data is only on the CDN."""
    return {k: v for k, v in message.items() if k != "files"}


def _public(file: Json) -> Json:
    return {k: v for k, v in file.items() if k != "data"}


def contact_server(workdir: Path, fake: FakeDiscord, owner: Json) -> JupybotProcess:
    """`twistd jupybot` delivering contact messages to C{owner} on C{fake} (no terminal; a
    gateway nobody answers, as contact needs none)."""
    extra = f"""
discord:
  token: "${{JUPYBOT_TEST_DISCORD_TOKEN}}"
  owner_id: {owner["id"]}
  api_base: {fake.api_base}
  gateway_url: {fake.gateway_url}
gateway:
  url: http://127.0.0.1:9
terminal:
  enabled: false
"""
    return JupybotProcess(
        jupybot_config(workdir, extra),
        workdir,
        extra_env={"JUPYBOT_TEST_DISCORD_TOKEN": fake.bot_token},
    )

"""Emoji verification (SAS) of the bot, started by a person from Element, in their room.

Element verifies another user in a room they share (in-room verification: the events are room
events relating to the request), which matrix-nio does not speak; this answers it with
vodozemac's SAS, as the spec's C{m.sas.v1} says: ready, accept (with the commitment), key, then
the MACs of the bot's device key and master key, and done. The bot cannot compare emojis: it
posts them in the room, for the person to check against their screen, and sends its MAC at once.
Only allowed users may verify the bot; others get a cancel. The bot records no trust of its own.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import canonicaljson
import vodozemac
from nio.crypto.sas import Sas as NioSas
from twisted.logger import Logger

__all__ = ["VERIFICATION_TYPES", "InRoomVerifier", "VerificationSender"]

_PREFIX = "m.key.verification."
VERIFICATION_TYPES = tuple(
    _PREFIX + kind
    for kind in ("request", "ready", "start", "accept", "key", "mac", "done", "cancel")
)
_SAS = "m.sas.v1"
_KEY_AGREEMENT = "curve25519-hkdf-sha256"
_MACS = ("hkdf-hmac-sha256.v2", "hkdf-hmac-sha256")
_SESSIONS = 20


class VerificationSender(Protocol):
    """What the verifier needs of the bot: who it is, and a way to post in a room."""

    user_id: str
    device_id: str
    device_key: str  # the device's Ed25519 key, unpadded base64

    async def master_key(self) -> str | None: ...

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> None: ...

    def allowed(self, user_id: str) -> bool: ...


@dataclass
class _Session:
    room_id: str
    user_id: str
    device_id: str
    sas: vodozemac.Sas = field(default_factory=vodozemac.Sas)
    mac_method: str = _MACS[0]
    established: vodozemac.EstablishedSas | None = None


def _unpadded_b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def verification_kind(event_source: dict[str, Any]) -> str | None:
    """C{request}, C{start}, …: what an in-room verification event is; None for others."""
    content = event_source.get("content") or {}
    kind = event_source.get("type")
    if kind == "m.room.message":
        kind = content.get("msgtype")
    if isinstance(kind, str) and kind in VERIFICATION_TYPES:
        return kind[len(_PREFIX) :]
    return None


class InRoomVerifier:
    """Answers verification requests addressed to the bot, one session per request."""

    log = Logger()

    def __init__(self, bot: VerificationSender) -> None:
        self.bot = bot
        self._sessions: dict[str, _Session] = {}

    async def handle(self, room_id: str, event_source: dict[str, Any]) -> None:
        kind = verification_kind(event_source)
        sender = event_source.get("sender")
        if kind is None or sender == self.bot.user_id or not isinstance(sender, str):
            return
        content = event_source.get("content") or {}
        if kind == "request":
            await self._requested(room_id, sender, event_source.get("event_id"), content)
            return
        request_id = (content.get("m.relates_to") or {}).get("event_id")
        session = self._sessions.get(request_id) if isinstance(request_id, str) else None
        if session is None or session.user_id != sender:
            return
        assert isinstance(request_id, str)
        try:
            if kind == "start":
                await self._started(request_id, session, content)
            elif kind == "key":
                await self._keys(request_id, session, content)
            elif kind == "mac":
                if session.established is None:
                    raise ValueError("a MAC before the keys")
                self._sessions.pop(request_id, None)
                await self._send(session, request_id, "done", {})
                self.log.info("matrix: {user} verified the bot", user=sender)
            elif kind in ("done", "cancel"):
                self._sessions.pop(request_id, None)
        except (ValueError, KeyError, TypeError, vodozemac.SasException) as e:
            self._sessions.pop(request_id, None)
            await self._send(
                session, request_id, "cancel", {"code": "m.unexpected_message", "reason": str(e)}
            )

    async def _send(
        self, session: _Session, request_id: str, kind: str, content: dict[str, Any]
    ) -> None:
        relation = {"rel_type": "m.reference", "event_id": request_id}
        await self.bot.send(session.room_id, _PREFIX + kind, {**content, "m.relates_to": relation})

    async def _requested(
        self, room_id: str, sender: str, request_id: object, content: dict[str, Any]
    ) -> None:
        if content.get("to") != self.bot.user_id or not isinstance(request_id, str):
            return
        session = _Session(room_id, sender, str(content.get("from_device", "")))
        if not self.bot.allowed(sender) or _SAS not in (content.get("methods") or []):
            reason = "only the bot's allowed users may verify it, with emoji (m.sas.v1)"
            await self._send(session, request_id, "cancel", {"code": "m.user", "reason": reason})
            return
        self._sessions[request_id] = session
        while len(self._sessions) > _SESSIONS:  # requests never finished: the oldest go
            del self._sessions[next(iter(self._sessions))]
        await self._send(
            session, request_id, "ready", {"from_device": self.bot.device_id, "methods": [_SAS]}
        )

    async def _started(self, request_id: str, session: _Session, content: dict[str, Any]) -> None:
        macs = [m for m in _MACS if m in (content.get("message_authentication_codes") or [])]
        shown = [s for s in ("emoji", "decimal") if s in content["short_authentication_string"]]
        if (
            content.get("method") != _SAS
            or _KEY_AGREEMENT not in content["key_agreement_protocols"]
            or "sha256" not in content["hashes"]
            or not macs
            or "emoji" not in shown
        ):
            raise ValueError("the bot speaks m.sas.v1 with curve25519, sha256, HKDF and emoji")
        session.mac_method = macs[0]
        # The commitment binds the bot's key, sent later, to the start it answers (spec).
        commitment = hashlib.sha256(
            session.sas.public_key.to_base64().encode()
            + canonicaljson.encode_canonical_json(content)
        ).digest()
        await self._send(
            session,
            request_id,
            "accept",
            {
                "method": _SAS,
                "key_agreement_protocol": _KEY_AGREEMENT,
                "hash": "sha256",
                "message_authentication_code": session.mac_method,
                "short_authentication_string": shown,
                "commitment": _unpadded_b64(commitment),
            },
        )

    async def _keys(self, request_id: str, session: _Session, content: dict[str, Any]) -> None:
        their_key = content["key"]
        ours = session.sas.public_key.to_base64()
        established = session.sas.diffie_hellman(
            vodozemac.Curve25519PublicKey.from_base64(their_key)
        )
        session.established = established
        await self._send(session, request_id, "key", {"key": ours})
        # The person started: their user, device and key come first.
        info = "|".join(
            [
                "MATRIX_KEY_VERIFICATION_SAS",
                session.user_id,
                session.device_id,
                their_key,
                self.bot.user_id,
                self.bot.device_id,
                ours,
                request_id,
            ]
        )
        emoji = [spec_emoji(i) for i in established.bytes(info).emoji_indices]
        await self.bot.send(
            session.room_id,
            "m.room.message",
            {
                "msgtype": "m.notice",
                "body": "To verify me, check that your screen shows: "
                + "  ".join(f"{symbol} {name}" for symbol, name in emoji),
                "m.mentions": {},
            },
        )
        macs = self._macs(request_id, session, established, await self.bot.master_key())
        await self._send(session, request_id, "mac", macs)

    def _macs(
        self,
        request_id: str,
        session: _Session,
        established: vodozemac.EstablishedSas,
        master: str | None,
    ) -> dict[str, Any]:
        """The MACs of the bot's device key and (if any) master key, and of their ids: the
        master key's lets Element trust the bot's whole identity."""
        keys = {f"ed25519:{self.bot.device_id}": self.bot.device_key}
        if master is not None:
            keys[f"ed25519:{master}"] = master
        base = (
            "MATRIX_KEY_VERIFICATION_MAC"
            + self.bot.user_id
            + self.bot.device_id
            + session.user_id
            + session.device_id
            + request_id
        )
        mac = (
            established.calculate_mac
            if session.mac_method == _MACS[0]
            else established.calculate_mac_invalid_base64
        )
        return {
            "mac": {key_id: mac(value, base + key_id) for key_id, value in keys.items()},
            "keys": mac(",".join(sorted(keys)), base + "KEY_IDS"),
        }


# Where matrix-nio's emoji names differ from the spec's table (sas-emoji.json), which Element and
# matrix-sdk-crypto show: the person compares words too.
_SPEC_NAMES = {"Wrench": "Spanner", "Thumbs up": "Thumbs Up", "Airplane": "Aeroplane"}


def spec_emoji(index: int) -> tuple[str, str]:
    """The SAS emoji at C{index}, named as the Matrix spec (and so Element) names it."""
    symbol, name = NioSas.emoji[index]
    return symbol, _SPEC_NAMES.get(name, name)

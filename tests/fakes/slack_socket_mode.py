"""A fake Slack Socket Mode server: a real WebSocket on 127.0.0.1 that hands out envelopes.

How Slack's Socket Mode works, and what this fake keeps of it:

* the app calls ``apps.connections.open`` with its app-level token (``xapp-...``); the Web API
  answers a one-time ``wss://`` URL (here ``ws://127.0.0.1:PORT/link/?ticket=...``). The fake Slack
  API (tests/fakes/slack_api.py) answers it once the server is attached with
  ``FakeSlackAPI.enable_socket_mode``. A ticket is good for one connection; a used or unknown
  ticket is refused with HTTP 401 before the upgrade;
* on connecting, the server sends ``{"type": "hello", "num_connections": N, ...}``;
* each request Slack would have POSTed to the Request URL arrives as an envelope
  ``{"envelope_id", "type": "events_api" | "interactive" | "slash_commands", "payload",
  "accepts_response_payload", "retry_attempt", "retry_reason"}``; the app acknowledges it by
  sending ``{"envelope_id": ..., "payload": {...}}`` back (the payload being what an HTTP
  response body would have carried). Slack waits 3 seconds for the acknowledgement;
* ``{"type": "disconnect", "reason": "refresh_requested"}`` asks the app to open a new connection
  (Slack sends it every few hours); the old one is closed soon after.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.server import LocalServer

ACK_TIMEOUT = 10.0  # Slack's is 3 s; the fake is generous so a busy test machine does not flake


@dataclass
class Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    ack: asyncio.Future = field(repr=False)


class FakeSocketMode(LocalServer):
    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._pending: dict[str, Envelope] = {}
        self.connections = 0
        """WebSocket connections accepted so far (a reconnect adds one)."""
        self.acks: list[dict[str, Any]] = []
        self.connected = asyncio.Event()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/link/", self._link)
        return app

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        await super().stop()

    def new_url(self) -> str:
        """What apps.connections.open answers: a URL with a fresh one-time ticket."""
        ticket = secrets.token_hex(16)
        self._tickets.add(ticket)
        return f"ws://{self._host}:{self.port}/link/?ticket={ticket}"

    @property
    def open_connections(self) -> int:
        return sum(1 for ws in self._sockets if not ws.closed)

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid or used ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.connections += 1
        await ws.send_str(json.dumps({
            "type": "hello", "num_connections": self.open_connections,
            "debug_info": {"host": "fake-socket-mode", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": "AHERALD"},
        }))
        self.connected.set()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_ack(json.loads(message.data))
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
            if not self.open_connections:
                self.connected.clear()
        return ws

    def _on_ack(self, data: dict[str, Any]) -> None:
        self.acks.append(data)
        envelope = self._pending.pop(str(data.get("envelope_id", "")), None)
        if envelope is not None and not envelope.ack.done():
            envelope.ack.set_result(data.get("payload"))

    async def send(self, kind: str, payload: dict[str, Any], *, timeout: float = ACK_TIMEOUT) -> dict[str, Any] | None:
        """Hand an envelope to the app over the newest connection and wait for its acknowledgement;
        returns the acknowledgement's payload (None when it carried none)."""
        await asyncio.wait_for(self.connected.wait(), timeout)
        ws = next(ws for ws in reversed(self._sockets) if not ws.closed)
        envelope = Envelope(str(uuid.uuid4()), kind, payload, asyncio.get_running_loop().create_future())
        self._pending[envelope.envelope_id] = envelope
        await ws.send_str(json.dumps({
            "envelope_id": envelope.envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": kind in ("interactive", "slash_commands"),
            "retry_attempt": 0, "retry_reason": "",
        }))
        try:
            return await asyncio.wait_for(envelope.ack, timeout)
        finally:
            self._pending.pop(envelope.envelope_id, None)

    async def request_refresh(self) -> None:
        """Ask the app to reconnect, as Slack does every few hours."""
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.send_str(json.dumps({"type": "disconnect", "reason": "refresh_requested",
                                              "debug_info": {"host": "fake-socket-mode"}}))

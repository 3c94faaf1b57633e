"""Slack over Socket Mode: the same bolt app and listeners, fed through a WebSocket that Herald
opens to Slack instead of requests Slack sends to a public Request URL.

For hosts inside a firewall: only outbound https/wss to slack.com is needed. The app-level token
(`HERALD_SLACK_APP_TOKEN`, xapp-..., scope connections:write) authenticates the connection, so
envelopes carry no request signature. slack_sdk's client reconnects by itself when Slack asks it
to (`disconnect: refresh_requested`) or the connection drops, and keeps trying (every 10 s,
logging each failure) when it cannot connect at all (Slack unreachable, a refused token); the
first connection is made in the background, so the rest of Herald (Teams, the outbox, the API)
serves meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.common import metrics

log = logging.getLogger(__name__)

class SocketModeRunner:
    def __init__(self, app: AsyncApp, app_token: str, *, api_url: str) -> None:
        self.handler = AsyncSocketModeHandler(app, app_token, web_client=AsyncWebClient(base_url=api_url),
                                              logger=logging.getLogger("slack_sdk.socket_mode"))
        self._task: asyncio.Task | None = None

    async def connect(self) -> None:
        """Open the first connection (slack_sdk retries until it works or the runner closes)."""
        await self.handler.connect_async()
        if not self.handler.client.closed:
            metrics.socket_mode_connected(True)
            log.info("Slack Socket Mode connected")

    async def is_connected(self) -> bool:
        return await self.handler.client.is_connected()

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: connect at start-up (in the background), close at shut-down."""
        self._task = asyncio.create_task(self.connect(), name="herald-slack-socket-mode")
        yield
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.handler.close_async()
        metrics.socket_mode_connected(False)

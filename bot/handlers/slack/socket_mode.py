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
    """Slack's WebSocket for the life of the server, as an aiohttp cleanup context.

    slack_sdk's handler opens an `aiohttp.ClientSession` when it is constructed, which needs a
    running event loop: `herald serve` builds the application before `web.run_app` starts the
    loop, so the handler is made in `lifecycle`, not in `__init__`.
    """

    def __init__(self, app: AsyncApp, app_token: str, *, api_url: str) -> None:
        self._app, self._app_token, self._api_url = app, app_token, api_url
        self.handler: AsyncSocketModeHandler | None = None
        self._task: asyncio.Task | None = None

    def _build_handler(self) -> AsyncSocketModeHandler:
        return AsyncSocketModeHandler(self._app, self._app_token, web_client=AsyncWebClient(base_url=self._api_url),
                                      logger=logging.getLogger("slack_sdk.socket_mode"))

    async def connect(self, handler: AsyncSocketModeHandler) -> None:
        """Open the first connection (slack_sdk retries until it works or the runner closes)."""
        await handler.connect_async()
        if not handler.client.closed:
            metrics.socket_mode_connected(True)
            log.info("Slack Socket Mode connected")

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: connect at start-up (in the background), close at shut-down."""
        self.handler = handler = self._build_handler()
        self._task = asyncio.create_task(self.connect(handler), name="herald-slack-socket-mode")
        yield
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await handler.close_async()
        metrics.socket_mode_connected(False)

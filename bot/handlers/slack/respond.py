"""`respond()` over Herald's one connection pool to Slack.

bolt's `respond` (slack_bolt.context.respond.AsyncRespond) posts to the interaction's response_url
with a new slack_sdk AsyncWebhookClient, which opens a new aiohttp session, and so a new TCP and TLS
connection to hooks.slack.com, for every call. An Acknowledge click is answered through its
response_url (bot.handlers.slack.actions.notices), so at hundreds of clicks a second that was a
connection set up and torn down per click. This one posts the same message (bolt's own builder)
through the session every Web API call uses (SlackWorkspaces.session), which keeps connections open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.context.respond.internals import _build_message
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient


class PooledRespond(AsyncRespond):
    """bolt's respond(), same arguments and answer, its requests sent through `session`."""

    def __init__(self, response_url: str, session: Callable[[], aiohttp.ClientSession]) -> None:
        super().__init__(response_url=response_url)
        self._session = session

    async def __call__(self, text: str | dict = "", blocks: Sequence[Any] | None = None,  # type: ignore[override]
                       attachments: Sequence[Any] | None = None, response_type: str | None = None,
                       replace_original: bool | None = None, delete_original: bool | None = None,
                       unfurl_links: bool | None = None, unfurl_media: bool | None = None,
                       thread_ts: str | None = None, metadata: dict[str, Any] | None = None) -> WebhookResponse:
        if isinstance(text, dict):
            message = _build_message(**text)
        else:
            message = _build_message(text=text, blocks=blocks, attachments=attachments, response_type=response_type,
                                     replace_original=replace_original, delete_original=delete_original,
                                     unfurl_links=unfurl_links, unfurl_media=unfurl_media, thread_ts=thread_ts,
                                     metadata=metadata)
        client = AsyncWebhookClient(url=str(self.response_url), session=self._session())
        return await client.send_dict(message)


def register(app: AsyncApp, session: Callable[[], aiohttp.ClientSession]) -> None:
    """Every listener (and the error handler) of a request with a response_url gets PooledRespond."""

    @app.middleware
    async def pooled_respond(context: AsyncBoltContext, next: Callable[[], Awaitable[Any]]) -> Any:  # noqa: A002
        if context.response_url:
            context["respond"] = PooledRespond(context.response_url, session)
        return await next()

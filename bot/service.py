"""The running Herald: settings, topic catalog, clock, outbound channels and the outbox worker.

One object that the inbound handlers, the scheduler and the CLI share; it holds no state that
matters for correctness (the database does).
"""

from __future__ import annotations

import logging

from bot.channels.base import Channel, MessageRef
from bot.channels.slack import SlackChannel, SlackWorkspaces
from bot.core.acks import AckResult
from bot.core.clock import Clock, SystemClock
from bot.core.delivery import Outbox
from bot.core.retry import RetryPolicy
from bot.core.views import notice_view
from bot.topics import TopicCatalog, load_catalog
from config.settings import Settings

log = logging.getLogger(__name__)


class Herald:
    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 catalog: TopicCatalog | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.catalog = catalog or load_catalog(settings.topics_file)
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        self.slack_workspaces = SlackWorkspaces(settings.slack_api_url, default_token=token)
        self.channels: dict[str, Channel] = {"slack": SlackChannel(self.slack_workspaces)}
        self.outbox = Outbox(
            self.channels, self.catalog, self.clock,
            concurrency=settings.delivery_concurrency, batch_size=settings.delivery_batch_size,
            lease_seconds=settings.delivery_lease_seconds,
            retry=RetryPolicy(max_attempts=settings.delivery_max_attempts),
        )

    async def update_acknowledged_copies(self, result: AckResult) -> None:
        """Turn every delivered copy of the notice for this member into its acknowledged form."""
        view = notice_view(result.notice, self.catalog).with_ack(
            result.member.name or result.member.email, result.acknowledgement.acknowledged_at)
        for copy in result.copies:
            channel = self.channels.get(copy.platform)
            if channel is None or not copy.message_id:
                continue
            try:
                await channel.update(copy.workspace_external_id, MessageRef(copy.channel_id, copy.message_id), view)
            except Exception:  # noqa: BLE001 - the acknowledgement is recorded; the cosmetic update may fail
                log.exception("could not update delivery %s after acknowledgement", copy.id)

    async def close(self) -> None:
        self.outbox.stop()
        for channel in self.channels.values():
            await channel.close()

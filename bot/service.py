"""The running Herald: settings, topic catalog, clock, outbound channels and the outbox worker.

One object that the inbound handlers, the scheduler and the CLI share; it holds no state that
matters for correctness (the database does).
"""

from __future__ import annotations

import logging

from bot.channels.base import Channel
from bot.channels.slack import SlackChannel, SlackWorkspaces
from bot.channels.teams import DEFAULT_ALLOWED_SERVICE_HOSTS, MsalTokenProvider, TeamsChannel
from bot.core.acks import AckResult
from bot.core.clock import Clock, SystemClock
from bot.core.delivery import Outbox
from bot.core.escalations import plan_escalations, send_escalations
from bot.core.notices import publish_due
from bot.core.reminders import plan_reminders
from bot.core.retry import RetryPolicy
from bot.core.staff_commands import ReportReady
from bot.topics import TopicCatalog, load_catalog
from config.settings import Settings

log = logging.getLogger(__name__)


def _teams_channel(settings: Settings) -> TeamsChannel:
    provider = None
    if settings.teams_app_id and settings.teams_app_password:
        provider = MsalTokenProvider(settings.teams_app_id, settings.teams_app_password.get_secret_value(),
                                     settings.teams_tenant_id)
    hosts = DEFAULT_ALLOWED_SERVICE_HOSTS if settings.teams_check_service_url else None
    return TeamsChannel(settings.teams_app_id, provider, allowed_service_hosts=hosts,
                        default_service_url=settings.teams_service_url)


class Herald:
    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 catalog: TopicCatalog | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.catalog = catalog or load_catalog(settings.topics_file)
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        self.slack_workspaces = SlackWorkspaces(settings.slack_api_url, default_token=token)
        self.channels: dict[str, Channel] = {"slack": SlackChannel(self.slack_workspaces),
                                             "teams": _teams_channel(settings)}
        self.outbox = Outbox(
            self.channels, self.catalog, self.clock,
            concurrency=settings.delivery_concurrency, batch_size=settings.delivery_batch_size,
            lease_seconds=settings.delivery_lease_seconds,
            retry=RetryPolicy(max_attempts=settings.delivery_max_attempts),
            rate_limits={"teams": settings.teams_max_per_second, "slack": settings.slack_max_per_second},
        )

    async def update_acknowledged_copies(self, result: AckResult) -> None:
        """Turn every delivered copy (original and reminders) into its acknowledged form now.

        The acknowledgement already flagged the copies for update in its transaction, so if this
        fast path fails the outbox worker retries it.
        """
        try:
            await self.outbox.push_updates(result.copy_ids)
        except Exception:  # noqa: BLE001 - recorded and flagged; the worker will retry
            log.exception("could not update copies of notice %s right away", result.notice.id)

    async def report_link(self, ready: "ReportReady") -> str:
        """A short-lived signed link to a report's CSV, or "" when links are not configured."""
        from bot.core.report_links import signed_report_url

        return signed_report_url(self.settings, ready.notice.id, ready.staff.id, now=self.clock.now())

    async def tick(self) -> dict[str, int]:
        """The periodic work: publish scheduled notices, plan reminders and escalations, send
        escalation DMs, then wake the outbox. Safe to run on every replica at once."""
        now = self.clock.now()
        counts = {
            "published": await publish_due(self.catalog, now=now, platform_policy=self.settings.platform_policy),
            "reminders": await plan_reminders(now, self.catalog),
            "escalations": await plan_escalations(now),
            "escalation_messages": await send_escalations(self.channels, now),
        }
        self.outbox.wake()
        return counts

    async def close(self) -> None:
        self.outbox.stop()
        for channel in self.channels.values():
            await channel.close()

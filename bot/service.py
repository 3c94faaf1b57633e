"""The running Herald: settings, topic catalog, clock, outbound channels and the outbox worker.

One object that the inbound handlers, the scheduler and the CLI share; it holds no state that
matters for correctness (the database does).
"""

from __future__ import annotations

import asyncio
import logging
import time

from bot.core.replays import forget_expired
from bot.channels.sandbox import SandboxChannel
from bot.channels.slack import SlackChannel, SlackWorkspaces
from bot.channels.slack_tokens import TokenRotator
from bot.channels.teams import (
    DEFAULT_ALLOWED_SERVICE_HOSTS,
    MsalTokenProvider,
    TeamsChannel,
)
from bot.common.clock import Clock, SystemClock
from bot.common.errors import UserError
from bot.core.commands.runner import ReportReady
from bot.core.delivery.outbox import Outbox
from bot.core.delivery.retry import RetryPolicy
from bot.core.notices.acks import AckResult
from bot.core.notices.digests import run_digests
from bot.core.notices.escalations import plan_escalations, send_escalations
from bot.core.notices.interactions import link_tracker
from bot.core.notices.reminders import plan_reminders
from bot.core.notices.sending import publish_due
from bot.core.onboarding.journeys import run_journeys
from bot.core.ports import Channel, Recipient
from bot.core.surveys.answers import close_due_surveys
from bot.topics import TopicCatalog, load_catalog
from config.settings import Settings
from storage.models import PlatformAccount, Question

log = logging.getLogger(__name__)


def _teams_channel(settings: Settings) -> TeamsChannel:
    provider = None
    if settings.teams_app_id and settings.teams_app_password:
        provider = MsalTokenProvider(settings.teams_app_id, settings.teams_app_password.get_secret_value(),
                                     settings.teams_tenant_id, authority_host=settings.teams_authority_url)
    hosts = DEFAULT_ALLOWED_SERVICE_HOSTS if settings.teams_check_service_url else None
    return TeamsChannel(settings.teams_app_id, provider, allowed_service_hosts=hosts,
                        default_service_url=settings.teams_service_url)


class Herald:
    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 catalog: TopicCatalog | None = None, sandbox: bool = False) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.catalog = catalog or load_catalog(settings.topics_file)
        self.sandbox = sandbox  # the sandbox platform is on (its inbox pages in the console)
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        rotator = None
        if settings.slack_client_id and settings.slack_client_secret:
            rotator = TokenRotator(settings.slack_api_url, settings.slack_client_id,
                                   settings.slack_client_secret.get_secret_value(), clock=self.clock)
        self.slack_workspaces = SlackWorkspaces(settings.slack_api_url, default_token=token, rotator=rotator)
        self.channels: dict[str, Channel] = {"slack": SlackChannel(self.slack_workspaces),
                                             "teams": _teams_channel(settings)}
        if sandbox:
            self.channels[SandboxChannel.platform] = SandboxChannel(self.clock)
        self._kb = None
        self._kb_lock = asyncio.Lock()
        self.outbox = Outbox(
            self.channels, self.catalog, self.clock,
            concurrency=settings.delivery_concurrency, batch_size=settings.delivery_batch_size,
            lease_seconds=settings.delivery_lease_seconds,
            retry=RetryPolicy(max_attempts=settings.delivery_max_attempts),
            rate_limits={"teams": settings.teams_max_per_second, "slack": settings.slack_max_per_second},
        )
        self.outbox.link_tracker = link_tracker(settings.public_url, settings.secret_key)

    async def update_acknowledged_copies(self, result: AckResult) -> None:
        """Turn every delivered copy (original and reminders) into its acknowledged form now.

        The acknowledgement already flagged the copies for update in its transaction, so if this
        fast path fails the outbox worker retries it.
        """
        try:
            await self.outbox.push_updates(result.copy_ids)
        except Exception:  # noqa: BLE001 - recorded and flagged; the worker will retry
            log.exception("could not update copies of notice %s right away", result.notice.id)

    # ---- onboarding assistant ----------------------------------------------------------------

    async def knowledge_base(self):  # noqa: ANN201
        """The knowledge base, loaded once in a worker thread (``serve`` starts this at start-up):
        loading the embedding model and building the index take seconds of CPU, which must not
        block the event loop."""
        if self._kb is None:
            from bot.core.onboarding.qa import KnowledgeBase

            async with self._kb_lock:
                if self._kb is None:
                    started = time.monotonic()
                    kb = await asyncio.to_thread(
                        KnowledgeBase.load, self.settings.kb_dir, semantic=self.settings.kb_semantic,
                        vector_store=self.settings.cache_dir / "vectors")
                    log.info("onboarding assistant ready: %d entries from %s, %s, threshold %.3f, in %.1f s",
                             len(kb.entries), self.settings.kb_dir,
                             "embedding model + keywords" if kb.semantic else "keywords only",
                             kb.threshold, time.monotonic() - started)
                    self._kb = kb
        return self._kb

    async def answer_question(self, member, text: str, *, platform: str, recipient: Recipient):  # noqa: ANN001, ANN201
        """Answer a partner's question in the conversation they asked it in."""
        from bot.core.onboarding.assistant import ask

        asked = await ask(member, text, await self.knowledge_base(), platform=platform,
                          channel_id=recipient.dm_channel, now=self.clock.now())
        outcome = await self.channels[platform].send_message(recipient, asked.message)
        if outcome.ref is not None:
            await Question.filter(id=asked.question.id).update(answer_message_id=outcome.ref.message_id)
        return asked

    async def hand_off_question(self, question_id: int, member) -> str:  # noqa: ANN001
        """Send the question to the member's CAM; returns what to tell the member."""
        from bot.core.notices.escalations import staff_recipient
        from bot.core.onboarding.assistant import hand_off

        handoff = await hand_off(question_id, member, now=self.clock.now())
        name = handoff.cam.name or handoff.cam.email
        if handoff.already:
            return f"Your question is already with {name}; their answer will appear here."
        target = staff_recipient(handoff.cam, self.channels)
        if target is None:
            log.warning("CAM %s has no Slack or Teams account for hand-offs", handoff.cam.email)
            return f"I've noted your question for {name}, who will get back to you."
        outcome = await target[0].send_message(target[1], handoff.message)
        if outcome.kind.value != "delivered":
            log.warning("hand-off to %s not delivered: %s", handoff.cam.email, outcome.reason)
        return f"I've passed your question to {name}; their answer will appear here."

    async def relay_reply(self, question_id: int, staff, text: str) -> Question:  # noqa: ANN001
        """Record the CAM's reply and send it to the member where they asked."""
        from bot.core.onboarding.assistant import reply_to_question

        question, relay = await reply_to_question(question_id, staff, text, now=self.clock.now())
        account = await PlatformAccount.filter(member_id=question.member_id, platform=question.platform).first()  # type: ignore[attr-defined]
        if account is None:
            raise UserError("the partner's chat account is gone, so the reply could not be delivered")
        recipient = Recipient(workspace_id=account.workspace_external_id, user_id=account.user_id,
                              dm_channel=question.channel_id or account.dm_channel, service_url=account.service_url)
        outcome = await self.channels[question.platform].send_message(recipient, relay)
        if outcome.kind.value != "delivered":
            raise UserError(f"the reply was saved but could not be delivered: {outcome.reason}")
        return question

    def sign_in_url(self, token: str) -> str:
        """The console link a sign-in token opens (HERALD_PUBLIC_URL, else the local address)."""
        return f"{self.settings.console_url}sign-in?token={token}"

    async def report_link(self, ready: "ReportReady") -> str:
        """A short-lived signed link to a report's CSV, or "" when links are not configured."""
        from bot.core.compliance.report_links import signed_report_url

        return signed_report_url(self.settings, ready.notice.id, ready.staff.id, now=self.clock.now())

    async def tick(self) -> dict[str, int]:
        """The periodic work: publish scheduled notices, plan reminders and escalations, send
        escalation DMs, close surveys whose date has passed, then wake the outbox. Safe to run on every replica at once."""
        now = self.clock.now()
        counts = {
            "published": await publish_due(self.catalog, now=now, platform_policy=self.settings.platform_policy),
            "reminders": await plan_reminders(now, self.catalog),
            "escalations": await plan_escalations(now),
            "escalation_messages": await send_escalations(self.channels, now),
            "digests": (await run_digests(self.channels, self.catalog, now))["sent"],
            "journeys": sum((await run_journeys(self.channels, now)).values()),
            "surveys_closed": await close_due_surveys(now),
        }
        await forget_expired(now)
        self.outbox.wake()
        return counts

    async def close(self) -> None:
        self.outbox.stop()
        for channel in self.channels.values():
            await channel.close()

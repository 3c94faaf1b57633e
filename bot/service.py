"""The running Herald: settings, topic catalog, clock, outbound channels and the outbox worker.

One object that the inbound handlers, the scheduler and the CLI share; it holds no state that
matters for correctness (the database does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from bot.core.replays import forget_expired
from bot.channels.sandbox import SandboxChannel
from bot.channels.slack import SlackChannel, SlackWorkspaces
from bot.channels.slack_tokens import TokenRotator
from bot.channels.teams import (
    DEFAULT_ALLOWED_SERVICE_HOSTS,
    MsalTokenProvider,
    TeamsChannel,
)
from bot.common import metrics
from bot.common.budget import TimeBudget
from bot.common.clock import Clock, SystemClock
from bot.core.commands.runner import ReportReady
from bot.core.delivery.credentials import due_after_restart
from bot.core.delivery.messages import MessageSource, Target
from bot.core.delivery.notice_rows import complete_sent_notices
from bot.core.delivery.outbox import Outbox
from bot.core.delivery.retry import RetryPolicy
from bot.core.directory import workspaces
from bot.core.insights.engagement import refresh_engagement
from bot.core.notices import acks
from bot.core.notices.acks import AckResult
from bot.core.notices.digests import run_digests
from bot.core.notices.escalations import plan_escalations, send_escalations
from bot.core.notices.interactions import link_tracker
from bot.core.notices.reminders import plan_reminders
from bot.core.notices.sending import publish_due
from bot.core.onboarding import handoffs  # also registers the outbox hooks of hand-offs and answers
from bot.core.onboarding.handoff_announcements import announce_open_handoffs
from bot.core.onboarding.handoff_reminders import remind_waiting_handoffs
from bot.core.onboarding.journeys import run_journeys
from bot.core.ports import Channel, Recipient
from bot.core.surveys.answers import close_due_surveys
from bot.topics import TopicCatalog, load_catalog
from config.settings import Settings
from storage.models import Question

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        self._kb = None  # the knowledge base answering questions, once settled (semantic or keywords by choice)
        self._keyword_kb = None  # answers while the semantic index is being built
        self._keyword_lock = asyncio.Lock()
        self._kb_build: asyncio.Task | None = None
        self._index_failed = False  # the start-up semantic build failed: keywords until restart
        self._overlay: list[dict] | None = None  # the approved learned items the knowledge base has (or is built with)
        self._failed_reload: str | None = None  # the files and items (index.fingerprint) that failed to load
        self._kb_unavailable = ""  # why no knowledge base could be loaded, as last logged
        self.kb_build_gate: asyncio.Event | None = None  # if set, the switch-over waits for it (tests)
        self.outbox = Outbox(
            self.channels, self.catalog, self.clock,
            concurrency=settings.delivery_concurrency, batch_size=settings.delivery_batch_size,
            lease_seconds=settings.delivery_lease_seconds, lane_inflight=settings.delivery_lane_inflight,
            parallel_workspaces=settings.delivery_max_lanes, heartbeat_seconds=settings.delivery_heartbeat_seconds,
            poll_seconds=settings.outbox_poll_seconds,
            retry=RetryPolicy(max_attempts=settings.delivery_max_attempts),
            rate_limits={"teams": settings.teams_max_per_second, "slack": settings.slack_max_per_second},
            updates_per_minute={"slack": settings.slack_updates_per_minute},
        )
        self.outbox.link_tracker = link_tracker(settings.public_url, settings.secret_key,
                                                 settings.previous_secret_keys)
        # everything else Herald sends (journeys, digests, escalations, hand-offs): the same lanes
        self.outbox.add_source(MessageSource(self.channels, self.outbox.catalog, retry=self.outbox.retry))
        self.worker_running = False  # `serve` runs the outbox loop (bot.app); tests and the CLI may not
        self._pushes: set[asyncio.Task] = set()  # copy updates pushed without a worker loop
        self._answered: set[asyncio.Future] = set()  # work the platform was already answered for

    def after_answer(self, work: Awaitable[T]) -> asyncio.Future[T]:
        """Run ``work`` after the platform's request is answered (e.g. a Teams message's replies,
        which go out through the Bot Connector); a stop waits for it (``settle``)."""
        task = asyncio.ensure_future(work)
        self.answered(task)
        return task

    def answered(self, task: asyncio.Future) -> None:
        """Have a stop wait for ``task`` (``settle``): work already running that the platform was
        answered for, such as a Slack listener's work after its ack(), which Slack never sends again
        (every listener's task is handed here before it runs: bot.handlers.slack.app, so what a
        listener awaits after its ack(), a survey answer's write included, needs nothing more).
        Acknowledgements have their own queue (``acks.written``)."""
        self._answered.add(task)
        task.add_done_callback(self._answered.discard)

    async def settle(self) -> None:
        """Wait until every click, answer and reply the platforms were already answered for is done."""
        await acks.written()
        while self._answered:
            await asyncio.wait(list(self._answered))

    def acknowledged(self, result: AckResult) -> None:
        """Have the acknowledged member's copies updated, without waiting for the platform: the
        click is answered as soon as it is stored. The acknowledgement flagged the copies
        `update_pending` in its transaction; the outbox's lane workers send the updates within the
        platform's limits, and a copy clicked several times before its turn is updated once.
        The other replicas are woken too (PostgreSQL NOTIFY, coalesced in a burst of clicks): the
        replica holding the workspace's lane may be another one, which would otherwise see the
        updates only at its next poll (HERALD_OUTBOX_POLL_SECONDS)."""
        if not result.newly_recorded:
            return  # a double click: the first one's copies are flagged already
        if self.worker_running:
            self.outbox.wake(urgent=False)  # the presser sees it already: see LaneSettings.update_gather
            return
        task = asyncio.get_running_loop().create_task(self.update_acknowledged_copies(result))
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)

    async def update_acknowledged_copies(self, result: AckResult) -> None:
        """Turn every delivered copy (original and reminders) into its acknowledged form now.

        The acknowledgement already flagged the copies for update in its transaction, so if this
        fast path fails the outbox worker retries it.
        """
        try:
            await self.outbox.push_updates(await acks.copies_of(result))
        except Exception:  # noqa: BLE001 - recorded and flagged; the worker will retry
            log.exception("could not update copies of notice %s right away", result.notice.id)

    # ---- onboarding assistant ----------------------------------------------------------------

    async def knowledge_base(self):  # noqa: ANN201
        """The knowledge base to answer from right now; never waits for the semantic index.

        Until the semantic index is ready (built in a child process, see
        ``bot.core.onboarding.index``) this is a keyword-only knowledge base, built in milliseconds;
        the first call starts the build (``serve`` makes it at start-up)."""
        if self._kb is not None:
            return self._kb
        from bot.core.onboarding import index
        from bot.core.onboarding.qa import KnowledgeBase

        kb_dir = self.settings.kb_dir
        if self._overlay is None:
            self._overlay = await self._read_overlay()
        overlay = self._overlay
        if self.settings.kb_semantic and self._kb_build is None:
            loaded = index.already_loaded(kb_dir, overlay)
            if loaded is not None:  # another service in this process (tests, the CLI) built it
                self._kb = loaded
                return loaded
            self.start_index_build()
        if self._keyword_kb is None:
            async with self._keyword_lock:  # about 0.1 s of CPU: in a thread, and only once
                if self._keyword_kb is None:
                    self._keyword_kb = await asyncio.to_thread(KnowledgeBase.load, kb_dir, semantic=False,
                                                               overlay=overlay)
                    if not self.settings.kb_semantic:
                        log.info("onboarding assistant ready: %d entries from %s, keywords only "
                                 "(HERALD_KB_SEMANTIC=false)", len(self._keyword_kb.entries), kb_dir)
        if not self.settings.kb_semantic or self._index_failed:
            self._kb = self._keyword_kb
            return self._kb
        if self._kb is not None:  # the switch-over happened meanwhile
            return self._kb
        log.info("semantic index not ready, answering from keywords")
        return self._keyword_kb

    async def _knowledge_base_or_none(self):  # noqa: ANN202 - KnowledgeBase | None
        """``knowledge_base()``, or None when none could ever be loaded (its files became unusable
        after start-up checked them): the partner is then told so and offered their CAM rather
        than getting no reply. Logged once per problem."""
        from bot.core.onboarding.qa import KnowledgeBaseError

        try:
            return await self.knowledge_base()
        except (KnowledgeBaseError, OSError) as exc:
            problem = str(exc)
            if problem != self._kb_unavailable:
                self._kb_unavailable = problem
                log.error("the knowledge base in %s cannot be loaded, so questions are passed to CAMs: %s",
                          self.settings.kb_dir, problem)
            return None

    def start_index_build(self) -> asyncio.Task:
        """Start building the semantic index (once); the task's result is the semantic knowledge base."""
        if self._kb_build is None:
            self._kb_build = asyncio.create_task(self._build_index(self._overlay or []), name="herald-kb-index")
        return self._kb_build

    async def semantic_ready(self):  # noqa: ANN201
        """Wait for the semantic index, or its rebuild after a reload (tests, benchmarks); the
        knowledge base in use afterwards. The build has the approved learned items, as the
        server's does (``knowledge_base()`` reads them first)."""
        if self._overlay is None:
            self._overlay = await self._read_overlay()
        build = self._kb_build
        if self._kb is None and self.settings.kb_semantic:
            build = self.start_index_build()
        if build is not None and not build.done():
            await asyncio.shield(build)
        return await self.knowledge_base()

    async def _read_overlay(self) -> list[dict]:
        """The approved learned phrasings and entries (``kb_proposal``); none if the database fails."""
        from bot.core.onboarding.learning import approved_overlay

        try:
            return await approved_overlay()
        except Exception as exc:  # noqa: BLE001 - the files alone still answer
            log.warning("could not read the learned knowledge-base items, using the files alone: %s", exc)
            return []

    async def reload_knowledge_base(self) -> bool:
        """Pick up approved learned items without a restart (every tick): if they changed since the
        knowledge base was loaded, rebuild it, the same kind as start-up settled on; the current one
        answers until the new one is ready.

        * A semantic index in use is rebuilt as one (in a child process, ``_build_index``); should
          that fail, the one loaded before stays in use.
        * Keywords in use (HERALD_KB_SEMANTIC=false, no embedding model, or a failed start-up
          build) are replaced by a keyword knowledge base with the items (about 0.1 s of CPU).
        * While the start-up build is still running, the keywords answering meanwhile are
          replaced and the build starts again with the items.

        The files are read again for that, and may have been edited meanwhile: they are read and
        checked before anything is replaced, so files that cannot be used now leave the one in use
        answering. That is logged once, and tried again when the files or the learned items change."""
        from bot.core.onboarding import index
        from bot.core.onboarding.qa import KnowledgeBase, KnowledgeBaseError, read_entries

        if self._overlay is None:  # not loaded yet: the first load reads them
            return False
        overlay = await self._read_overlay()
        if overlay == self._overlay:
            return False
        kb_dir = self.settings.kb_dir
        attempt = await asyncio.to_thread(index.fingerprint, kb_dir, overlay)
        if attempt == self._failed_reload:  # the same files and items failed before: said already
            return False
        semantic_in_use = self._kb is not None and self._kb.semantic
        try:
            if semantic_in_use:  # the child builds the index; only check the files here
                await asyncio.to_thread(read_entries, kb_dir, overlay)
                keyword_kb = None
            else:
                keyword_kb = await asyncio.to_thread(KnowledgeBase.load, kb_dir, semantic=False, overlay=overlay)
        except (KnowledgeBaseError, OSError) as exc:
            self._failed_reload = attempt
            log.error("learned knowledge-base items changed (%d approved) but the knowledge base in %s cannot be "
                      "loaded, so the one loaded before stays in use until the files are fixed: %s",
                      len(overlay), kb_dir, exc)
            return False
        self._failed_reload = None
        previous, self._overlay = self._overlay, overlay
        if keyword_kb is not None:
            self._keyword_kb = keyword_kb
        if semantic_in_use or (self._kb is None and self.settings.kb_semantic and not self._index_failed):
            log.info("learned knowledge-base items changed (%d approved): rebuilding the semantic index; "
                     "the one in use answers meanwhile", len(overlay))
            self._restart_index_build(overlay, replacing=previous if semantic_in_use else None, attempt=attempt)
            return True
        log.info("learned knowledge-base items changed (%d approved): %d entries, keywords only (%s)",
                 len(overlay), len(keyword_kb.entries), self._why_keywords())
        self._kb = keyword_kb
        return True

    def _why_keywords(self) -> str:
        """Why the assistant answers from keywords alone, for the log."""
        if not self.settings.kb_semantic:
            return "HERALD_KB_SEMANTIC=false"
        if self._index_failed:
            return "the semantic index build failed at start-up"
        return "no embedding model"

    def _restart_index_build(self, overlay: list[dict], *, replacing: list[dict] | None, attempt: str) -> None:
        """Build the semantic index again with ``overlay``, cancelling a build in progress.
        ``replacing``: the learned items of the semantic index in use, which stays in use (with
        them) if the build fails; None when keywords answer until the build is ready."""
        if self._kb_build is not None and not self._kb_build.done():
            self._kb_build.cancel()
        rebuild = self._build_index(overlay, replacing=replacing, attempt=attempt)
        self._kb_build = asyncio.create_task(rebuild, name="herald-kb-index")

    async def _build_index(self, overlay: list[dict], *, replacing: list[dict] | None = None,
                           attempt: str | None = None):  # noqa: ANN202 - KnowledgeBase | None
        """Build (or load the stored vectors of) the semantic index with ``overlay`` off the event
        loop and switch to it. ``replacing``/``attempt``: a rebuild after a reload (see
        ``_restart_index_build``); its failure keeps the semantic index in use, logged as such."""
        from bot.core.onboarding import index

        kb_dir, store = self.settings.kb_dir, self.settings.cache_dir / "vectors"
        started = time.monotonic()
        try:
            ready = await asyncio.to_thread(index.ready_store, kb_dir, store, overlay)
            if ready is None:
                overlay_file = await asyncio.to_thread(index.write_overlay, store, overlay) if overlay else None
                await self._run_index_child(kb_dir, store, overlay_file)
                ready, how = store, "built in a child process"
            else:
                how = "from stored vectors" if ready == store else "from the vectors shipped with it"
            if self.kb_build_gate is not None:  # tests hold the switch-over here
                await self.kb_build_gate.wait()
            kb = await asyncio.to_thread(index.load_semantic, kb_dir, ready, overlay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._index_build_failed(exc, replacing=replacing, attempt=attempt)
            return None
        self._kb = kb
        switch = "semantic index rebuilt" if replacing is not None else "semantic index ready, switching from keywords"
        log.info("%s: %d entries from %s, %s, threshold %.3f, %s, in %.1f s", switch, len(kb.entries), kb_dir,
                 "embedding model + keywords" if kb.semantic else "keywords only (no embedding model)",
                 kb.threshold, how, time.monotonic() - started)
        return kb

    def _index_build_failed(self, exc: Exception, *, replacing: list[dict] | None, attempt: str | None) -> None:
        """Log a failed build truthfully and settle what answers. A rebuild leaves the semantic
        index in use answering, without the new learned items, until the files or the items change
        again; a start-up build leaves keywords answering until restart."""
        unexpected = not isinstance(exc, (RuntimeError, OSError))  # a RuntimeError: the child's last lines say why
        if replacing is not None:
            self._overlay, self._failed_reload = replacing, attempt
            log.error("semantic index rebuild failed, so the semantic index loaded before stays in use, without "
                      "the learned items changed since, until the files or the learned items change: %s", exc,
                      exc_info=unexpected)
            return
        self._index_failed = True
        log.error("semantic index build failed, answering from keywords until restart: %s", exc, exc_info=unexpected)

    async def _run_index_child(self, kb_dir, store, overlay_file) -> None:  # noqa: ANN001
        from bot.core.onboarding import index

        log.info("building the semantic index in a child process (%s -> %s)", kb_dir, store)
        child = await asyncio.create_subprocess_exec(*index.child_command(kb_dir, store, overlay_file),
                                                     env=index.child_environment(),
                                                     stdout=asyncio.subprocess.DEVNULL,
                                                     stderr=asyncio.subprocess.PIPE)
        try:
            _, errors = await child.communicate()
        except asyncio.CancelledError:
            if child.returncode is None:
                child.kill()
                await child.wait()
            raise
        if child.returncode != 0:
            tail = errors.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise RuntimeError(f"index build exited with {child.returncode}: {' | '.join(tail)}")

    async def answer_question(self, member, text: str, *, platform: str, recipient: Recipient):  # noqa: ANN001, ANN201
        """Answer a partner's question in the conversation (and thread) they asked it in."""
        from bot.core.onboarding.assistant import ask

        asked = await ask(member, text, await self._knowledge_base_or_none(), platform=platform,
                          channel_id=recipient.dm_channel, thread_id=recipient.thread_id, now=self.clock.now())
        outcome = await self.channels[platform].send_message(recipient, asked.message)
        if outcome.ref is not None:
            await Question.filter(id=asked.question.id).update(answer_message_id=outcome.ref.message_id)
        elif outcome.throttled:  # a 429: certainly not delivered; the outbox sends it when the pause is over
            if await handoffs.queue_answer(asked.question, Target(platform, recipient), asked.message,
                                           now=self.clock.now()):
                log.info("the answer to question %s is queued: %s", asked.question.id, outcome.reason)
                self.outbox.wake()
        else:
            log.warning("the answer to question %s was not delivered: %s", asked.question.id, outcome.reason)
        return asked

    async def hand_off_question(self, question_id: int, member) -> str:  # noqa: ANN001
        """Queue the question for the member's CAM; returns what to tell the member."""
        from bot.core.onboarding.assistant import hand_off, handoff_note

        handoff = await hand_off(question_id, member, now=self.clock.now(), channels=self.channels)
        if not handoff.already and not handoff.queued:
            log.warning("CAM %s has no Slack or Teams account for hand-offs", handoff.cam.email)
        elif not handoff.already:
            self.outbox.wake()  # a person is waiting: it leaves at once, ahead of journeys and digests
        return handoff_note(handoff)

    async def relay_reply(self, question_id: int, staff, text: str) -> Question:  # noqa: ANN001
        """Record the CAM's reply and queue it for the member where they asked; it leaves at once.
        If it finally cannot be delivered the CAM is told in a DM and the question goes back into
        their list (bot.core.onboarding.handoffs)."""
        from bot.core.onboarding.assistant import reply_to_question

        question, _ = await reply_to_question(question_id, staff, text, now=self.clock.now())
        self.outbox.wake()
        return question

    def sign_in_url(self, token: str) -> str:
        """The console link a sign-in token opens (HERALD_PUBLIC_URL, else the local address)."""
        return f"{self.settings.console_url}sign-in?token={token}"

    async def report_link(self, ready: "ReportReady") -> str:
        """A short-lived signed link to a report's CSV, or "" when links are not configured."""
        from bot.core.compliance.report_links import signed_report_url

        return signed_report_url(self.settings, ready.notice.id, ready.staff.id, now=self.clock.now())

    async def readopt_env_token(self) -> list[str]:
        """On start-up: workspaces deactivated with a revoked HERALD_SLACK_BOT_TOKEN use the env
        token again when it is another one (the operator reinstalled the app and set its new
        token); their removed copies are sent. See bot.core.directory.workspaces.readopt_env_token."""
        readopted = await workspaces.readopt_env_token(self.slack_workspaces.default_token, now=self.clock.now())
        for team_id in readopted:
            self.slack_workspaces.forget(team_id)
        if readopted:
            self.outbox.wake()
        return readopted

    async def resume_refused_credentials(self) -> set[str]:
        """On start-up: what waits because a platform refused Herald's credentials is due now (a
        restart is how renewed credentials arrive). See bot.core.delivery.credentials."""
        platforms = await due_after_restart(self.clock.now())
        if platforms:
            log.info("the copies and messages that waited for Herald's %s credentials are due again",
                     " and ".join(sorted(p.title() for p in platforms)))
            self.outbox.credentials_in_doubt(platforms)
            self.outbox.wake()
        return platforms

    async def tick(self) -> dict[str, int]:
        """The periodic work: publish scheduled notices, plan reminders and escalations, send
        escalation DMs, close surveys whose date has passed, wake the outbox, then work out the
        engagement figures of notices that changed. Safe to run on every replica at once.
        Reminders and digests are taken in batches, and engagement figures worked out, until none
        are due or most of the tick interval is used (bot.common.budget), so the next tick starts
        on time.

        Each job runs on its own: one that raises is logged with its traceback and counted
        (`herald_tick_job_failures_total{job}`, and `failed_jobs` in the result), and the others
        still run, so one bad row cannot stop reminders and escalations on every replica."""
        now = self.clock.now()
        policy = self.settings.platform_policy
        budget = TimeBudget.of_tick(self.settings.tick_seconds)  # shared by the jobs that work in batches

        async def digests() -> int:
            return (await run_digests(self.channels, self.catalog, now, budget=budget))["queued"]

        async def journeys() -> int:
            return sum((await run_journeys(self.channels, now)).values())

        async def kb_reloaded() -> int:
            return int(await self.reload_knowledge_base())

        jobs: dict[str, Callable[[], Awaitable[int]]] = {
            "published": lambda: publish_due(self.catalog, now=now, platform_policy=policy, channels=self.channels,
                                             lease_seconds=self.settings.delivery_lease_seconds),
            "reminders": lambda: plan_reminders(now, self.catalog, budget=budget),
            "escalations": lambda: plan_escalations(now),
            "escalation_messages": lambda: send_escalations(self.channels, now),
            "handoffs_announced": lambda: announce_open_handoffs(self.channels, now),
            "handoffs_reminded": lambda: remind_waiting_handoffs(
                self.channels, now, after=timedelta(hours=self.settings.handoff_remind_hours)),
            "digests": digests,
            "journeys": journeys,
            "surveys_closed": lambda: close_due_surveys(now),
            "notices_completed": lambda: complete_sent_notices(now),
            "kb_reloaded": kb_reloaded,
            "expired_forgotten": lambda: forget_expired(now),
        }
        counts = {"failed_jobs": 0}
        for job, run in jobs.items():
            counts[job] = await self._tick_job(job, run, counts)
        self.outbox.wake()
        # last: the console's figures wait for everything that reaches partners
        counts["engagement_refreshed"] = await self._tick_job("engagement_refreshed", lambda: refresh_engagement(
            now, not_within=timedelta(seconds=self.settings.tick_seconds * 0.8), budget=budget), counts)
        return counts

    @staticmethod
    async def _tick_job(job: str, run: Callable[[], Awaitable[int]], counts: dict[str, int]) -> int:
        try:
            return await run()
        except Exception:  # noqa: BLE001 - one job's failure must not stop the others (nor the next tick)
            log.exception("tick: %s failed; the tick's other jobs still run", job)
            metrics.tick_job_failed(job)
            counts["failed_jobs"] += 1
            return 0

    async def close(self) -> None:
        self.outbox.stop()
        if self._pushes:
            await asyncio.gather(*self._pushes, return_exceptions=True)
        if self._kb_build is not None and not self._kb_build.done():
            self._kb_build.cancel()  # kills the child process if one is running
            with contextlib.suppress(asyncio.CancelledError):
                await self._kb_build
        for channel in self.channels.values():
            await channel.close()

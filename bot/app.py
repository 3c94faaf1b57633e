"""The one aiohttp application: routes, and start-up/shut-down of database, worker and clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.api import add_api_routes
from bot.common.clock import Clock
from bot.common.heap import freeze_startup_heap
from bot.console import add_console_routes
from bot.handlers.downloads import add_download_routes
from bot.handlers.links import add_link_routes
from bot.handlers.policies import add_policy_routes
from bot.handlers.teams.route import add_teams_routes
from bot.ops.metrics_http import add_metrics
from bot.service import Herald
from config.settings import Settings
from storage import db as storage_db

log = logging.getLogger(__name__)

HERALD_KEY = web.AppKey("herald", Herald)
# A SIGTERM's bounds: HTTP requests in progress may finish for this long (Teams' answer deadline,
# the longest a platform waits; aiohttp's default is 60 s), then the answered work and the outbox
# get HERALD_DELIVERY_LEASE_SECONDS each (_lifecycle), then connections close.
HTTP_DRAIN_SECONDS = 15.0
_CLOSE_SECONDS = 5.0


def stop_seconds(settings: Settings) -> float:
    """The longest `herald serve` takes to stop on SIGTERM: what a container's stop grace period
    (docker-compose.yml's stop_grace_period) must cover, or the stop ends as a kill -9 would."""
    return settings.drain_seconds + HTTP_DRAIN_SECONDS + 2 * settings.delivery_lease_seconds + _CLOSE_SECONDS


class Draining:
    """Whether this replica got SIGTERM and is leaving: /healthz says so (503) while it still
    serves, for `HERALD_DRAIN_SECONDS`, before the listener closes (`drain_on_sigterm`)."""

    def __init__(self) -> None:
        self.active = False


DRAINING_KEY = web.AppKey("draining", Draining)
# Query values shown as they are: the rest (sign-in and report tokens, OAuth codes, an audience
# being typed with partner staff's e-mail addresses) are logged as [redacted].
_SHOWN_PARAMS = {"page", "before", "format", "look", "note", "since", "until", "status", "kind", "limit"}
_SECRET_PATH_PARTS = {"token"}  # /go/{token}: an A/B link's signed token


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's access log without secrets or personal data: console sign-in links, report
    download links and OAuth callbacks carry credentials in their query strings, a tracked link
    its signed token in the path, and the console's recipient count the audience being typed."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        query = "&".join(f"{k}={v}" if k.lower() in _SHOWN_PARAMS else f"{k}=[redacted]"
                         for k, v in request.query.items())
        target = _logged_path(request) + (f"?{query}" if query else "")
        self.logger.info('%s "%s %s" %s %.1f ms', request.remote, request.method, target, response.status,
                         time * 1000)


def _logged_path(request: web.BaseRequest) -> str:
    """The path, with the route's secret parts (`_SECRET_PATH_PARTS`) as [redacted]."""
    match_info = getattr(request, "match_info", None)
    if not match_info or not _SECRET_PATH_PARTS & set(match_info):
        return request.path
    resource = match_info.route.resource
    try:
        return resource.canonical.format_map(  # type: ignore[union-attr]
            {k: "[redacted]" if k in _SECRET_PATH_PARTS else v for k, v in match_info.items()})
    except (AttributeError, KeyError, ValueError):
        return "[redacted]"


async def healthz(request: web.Request) -> web.Response:
    """Readiness: whether this replica should get requests (the database answers, not stopping)."""
    if request.app[DRAINING_KEY].active:
        return web.json_response({"status": "draining"}, status=503)
    ok = await storage_db.ping()
    return web.json_response({"status": "ok" if ok else "unavailable", "database": "ok" if ok else "unreachable"},
                             status=200 if ok else 503)


async def livez(_request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP, whatever the database does. For an orchestrator that
    restarts a stuck process (Kubernetes' livenessProbe): pointed at /healthz it would restart
    every replica, over and over, through a database outage that no restart mends."""
    return web.json_response({"status": "alive"})


def build_app(settings: Settings, *, clock: Clock | None = None, run_worker: bool = True,
              manage_database: bool = True, sandbox: bool = False,
              announce: Callable[[str], None] | None = None, freeze_heap: bool = False) -> web.Application:
    """Build the server. Tests pass their own clock, and may run the outbox by hand.

    `freeze_heap`: once connected to the database, take what start-up left alive out of the
    garbage collector's walks (`herald serve`; see bot.common.heap).

    `sandbox`: add the sandbox platform and its inboxes, and seed the sample world on start-up
    (`herald serve` decides, from `settings.sandbox_active`, and gives it its own database).
    """
    herald = Herald(settings, clock=clock, sandbox=sandbox)
    app = web.Application()
    app[HERALD_KEY] = herald
    app[DRAINING_KEY] = Draining()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", livez)
    add_policy_routes(app, settings)
    metrics_app = add_metrics(app, settings, herald.clock)
    add_api_routes(app, herald.clock, herald.catalog.topics)
    add_teams_routes(app, herald)
    add_download_routes(app, herald)
    socket_mode = None
    add_link_routes(app, herald)
    if settings.slack_enabled:
        from bot.handlers.slack.app import build_slack_app, slack_route
        from bot.handlers.slack.oauth import add_slack_oauth_routes

        slack_app = build_slack_app(herald)
        if settings.slack_http_enabled:
            app.router.add_post("/slack/events", slack_route(slack_app, herald))
        if settings.slack_app_token is not None:
            from bot.handlers.slack.socket_mode import SocketModeRunner

            socket_mode = SocketModeRunner(slack_app, settings.slack_app_token.get_secret_value(),
                                           api_url=settings.slack_api_url)
        add_slack_oauth_routes(app, herald)
    else:
        log.warning("Slack is not configured (neither HERALD_SLACK_SIGNING_SECRET nor HERALD_SLACK_APP_TOKEN): "
                    "/slack/events is off")
    app.cleanup_ctx.append(_lifecycle(herald, manage_database, run_worker, freeze_heap))
    if metrics_app is not None:
        app.cleanup_ctx.append(_metrics_listener(metrics_app, settings))
    if socket_mode is not None:
        app.cleanup_ctx.append(socket_mode.lifecycle)
    add_console_routes(app, herald, announce=announce)  # after the lifecycle: the sandbox seeds on start-up
    return app


def _stop() -> None:
    raise web.GracefulExit()  # out of the event loop, as aiohttp's own SIGTERM handler does


def drain_on_sigterm(seconds: float):  # noqa: ANN201
    """An on_startup hook for `herald serve` (after aiohttp's run_app installed its handlers): on
    SIGTERM, /healthz answers 503 "draining" while requests are still served, and only after
    `seconds` does the stop begin (aiohttp's GracefulExit: the listener closes, then as before).
    Closing the listener at once left a proxy sending requests to a closed port until its next
    health check: 502s."""
    async def install(app: web.Application) -> None:
        loop = asyncio.get_running_loop()

        def on_sigterm() -> None:
            if app[DRAINING_KEY].active:  # a second SIGTERM: stop now
                _stop()
            app[DRAINING_KEY].active = True
            log.info("SIGTERM: /healthz says draining; closing the listener in %g s", seconds)
            loop.call_later(seconds, _stop)

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    return install


def _metrics_listener(metrics_app: web.Application, settings: Settings):
    """Serve /metrics on HERALD_METRICS_HOST:HERALD_METRICS_PORT beside the main server."""
    async def listener(app: web.Application):
        runner = web.AppRunner(metrics_app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.metrics_host, settings.metrics_port)
        await site.start()
        log.info("metrics served on http://%s:%s/metrics", settings.metrics_host, settings.metrics_port)
        yield
        await runner.cleanup()
    return listener


def _safely(job):  # noqa: ANN001, ANN202
    async def run() -> None:
        try:
            await job()
        except Exception:  # noqa: BLE001 - a failed tick must not stop the clock
            log.exception("background job %s failed", getattr(job, "__name__", job))
    return run


def _lifecycle(herald: Herald, manage_database: bool, run_worker: bool, freeze_heap: bool = False):
    async def lifecycle(app: web.Application):
        if manage_database:
            await storage_db.connect(herald.settings.tortoise_db_url,
                                     run_migrations=herald.settings.migrate_on_start)
            if not herald.settings.migrate_on_start:
                try:
                    await storage_db.require_current_schema()
                except storage_db.SchemaNotCurrent:
                    await storage_db.close()  # its connection thread would keep the process alive
                    raise
        try:
            await herald.readopt_env_token()
        except Exception:  # noqa: BLE001 - `herald doctor` lists the workspace as inactive with how to recover
            log.exception("could not check HERALD_SLACK_BOT_TOKEN against the workspaces it was revoked for")
        try:
            await herald.resume_refused_credentials()
        except Exception:  # noqa: BLE001 - they are due at their re-check anyway
            log.exception("could not make the rows waiting for Herald's credentials due")
        if freeze_heap:  # before the knowledge base is loaded: see bot.common.heap
            freeze_startup_heap()
        scheduler = AsyncIOScheduler(timezone="UTC")
        worker = warm_up = None
        wakeups = None
        if run_worker:
            if storage_db.dialect() == "postgres":  # a send accepted here wakes the other replicas at once
                from storage.wakeups import PgWakeups

                wakeups = PgWakeups(herald.settings.tortoise_db_url, lambda: herald.outbox.wake(broadcast=False),
                                    origin=herald.outbox.worker_id,
                                    on_update_wake=lambda: herald.outbox.wake(broadcast=False, urgent=False))
                wakeups.start()
                herald.outbox.notify = wakeups.notify
            worker = asyncio.create_task(herald.outbox.run_forever(), name="herald-outbox")
            herald.worker_running = True
            # The database is the truth; the scheduler is only the clock that wakes the worker
            # for retries that come due and for rows other replicas wrote.
            scheduler.add_job(lambda: herald.outbox.wake(broadcast=False), "interval",
                              seconds=herald.settings.outbox_poll_seconds, id="outbox-wake", max_instances=1,
                              coalesce=True)
            scheduler.add_job(_safely(herald.tick), "interval", seconds=herald.settings.tick_seconds,
                              id="tick", max_instances=1, coalesce=True)
            scheduler.start()
            warm_up = asyncio.create_task(_safely(herald.knowledge_base)(), name="herald-kb-warm-up")
        yield
        if scheduler.running:
            scheduler.shutdown(wait=False)
        herald.outbox.stop()
        # Slack heard 200 for clicks still being written and listeners' work after their ack(), Teams
        # for the replies being sent (Herald.answered): finish them first
        try:
            await asyncio.wait_for(herald.settle(), timeout=herald.settings.delivery_lease_seconds)
        except TimeoutError:
            log.warning("stopping with work the platforms were answered for unfinished after %s s",
                        herald.settings.delivery_lease_seconds)
        if warm_up is not None and not warm_up.done():
            warm_up.cancel()  # herald.close() stops the index build (and its child process)
        if worker is not None:  # in-flight requests finish and are recorded, leases released
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(worker, timeout=herald.settings.delivery_lease_seconds)
        if wakeups is not None:
            await wakeups.stop()
        await herald.close()
        if manage_database:
            await storage_db.close()
    return lifecycle

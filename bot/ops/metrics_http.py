"""`GET /metrics` in Prometheus' text format, the inbound request middleware, and the gauges read
from the database at scrape time.

Where metrics are served (`HERALD_METRICS_*`):

- neither a token nor a port: nowhere (`/metrics` answers 404);
- `HERALD_METRICS_TOKEN`: on the main port, only with `Authorization: Bearer <token>`;
- `HERALD_METRICS_PORT`: on a listener of their own (`HERALD_METRICS_HOST:PORT`) meant for a private
  network, and not on the main port; with a token as well, that listener checks it too.

The outbox depth, the age of the oldest undelivered due row (since it became due: `due_since`, which
retries and 429 pauses leave alone; both over `delivery` and
`outbound_message`, the two tables the lanes send from) and the audit chain's length are
computed at scrape time from the database (aggregate queries), so they are right whichever
replica's engine did the work; every replica exports the same value (aggregate with `max`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from tortoise.functions import Count, Min
from tortoise.queryset import ValuesQuery

from bot.common import metrics
from bot.common.clock import Clock
from bot.common.logs import bind_context
from config.settings import Settings
from storage.models import OPEN_DELIVERY_STATUSES, AuditChainHead, Delivery, OutboundMessage

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
READ_SECONDS = 3.0  # as the health check's ping (storage.db.ping)


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _earliest(*moments: datetime | None) -> datetime | None:
    return min((m for m in moments if m is not None), default=None)


def open_outbox(model: type[Delivery] | type[OutboundMessage]) -> ValuesQuery:
    """Per platform: the rows not yet delivered or failed, the earliest moment one became due
    (`due_since`, which retries and 429 pauses leave alone: a stuck broadcast ages) and the
    earliest `next_attempt_at` (for rows written without `due_since`). Read from the open rows
    only (the index on status), never the delivered history."""
    return (model.filter(status__in=OPEN_DELIVERY_STATUSES)
            .annotate(depth=Count("id"), first_due=Min("due_since"), next_try=Min("next_attempt_at"))
            .group_by("platform").values("platform", "depth", "first_due", "next_try"))


class DatabaseGauges(Collector):
    """Gauges whose truth is the database. `refresh()` (async) reads them; `collect()` (called by
    prometheus_client while rendering, synchronously) reports the last reading."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._outbox: dict[str, tuple[int, float]] = {}
        self._chain_length: int | None = None
        self._ok = False

    async def refresh(self) -> None:
        """Read the gauges, within `READ_SECONDS`: a database that stops answering (a failover, a
        partition) must show as `herald_database_up 0` in an answer Prometheus gets before its
        scrape timeout (10 s by default), with the process counters, not as a scrape that hangs."""
        try:
            await asyncio.wait_for(self._read(), READ_SECONDS)
        except Exception:  # noqa: BLE001 - a scrape must answer even when the database does not
            log.warning("metrics: could not read the outbox and audit gauges", exc_info=True)
            self._ok = False

    async def _read(self) -> None:
        now = self.clock.now()
        outbox: dict[str, tuple[int, float]] = {}
        for model in (Delivery, OutboundMessage):  # notices' copies, and every other message in the lanes
            for row in await open_outbox(model):
                oldest = _earliest(_as_datetime(row["first_due"]), _as_datetime(row["next_try"]))
                age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
                depth, older = outbox.get(row["platform"], (0, 0.0))
                outbox[row["platform"]] = (depth + int(row["depth"]), max(age, older))
        head = await AuditChainHead.all().order_by("id").values_list("seq", flat=True)
        self._outbox, self._chain_length, self._ok = outbox, int(head[0]) if head else 0, True

    def collect(self):  # noqa: ANN201 - prometheus_client's protocol
        up = GaugeMetricFamily("herald_database_up", "1 when the last scrape could read the database")
        up.add_metric([], 1 if self._ok else 0)
        yield up
        if not self._ok:
            return
        depth = GaugeMetricFamily("herald_outbox_depth", "Outbox rows not yet delivered or failed (pending or "
                                  "in flight): notice copies and the other messages in the lanes (escalations, "
                                  "hand-offs, relays, journey messages, digests), by platform; the same on every "
                                  "replica", labels=["platform"])
        age = GaugeMetricFamily("herald_outbox_oldest_due_age_seconds", "How long the oldest undelivered outbox "
                                "row has been due, by platform (0 when none is due)", labels=["platform"])
        for platform in sorted(set(metrics.PLATFORMS) | set(self._outbox)):
            rows, seconds = self._outbox.get(platform, (0, 0.0))
            label = platform if platform in metrics.PLATFORMS else metrics.OTHER
            depth.add_metric([label], rows)
            age.add_metric([label], seconds)
        yield depth
        yield age
        chain = GaugeMetricFamily("herald_audit_chain_length", "Events in the audit trail's hash chain")
        chain.add_metric([], self._chain_length or 0)
        yield chain


def metrics_handler(gauges: DatabaseGauges, token: str | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    expected = f"Bearer {token}".encode() if token else None

    async def handle(request: web.Request) -> web.Response:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.Response(status=401, text="metrics need Authorization: Bearer <HERALD_METRICS_TOKEN>\n",
                                    headers={"WWW-Authenticate": 'Bearer realm="herald-metrics"',
                                             "Cache-Control": "no-store"})
        await gauges.refresh()
        body = generate_latest(metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

    return handle


def register_gauges(clock: Clock) -> DatabaseGauges:
    """The database gauges, registered once per process (several apps in one test process share them)."""
    global _GAUGES
    if _GAUGES is None:
        _GAUGES = DatabaseGauges(clock)
        metrics.REGISTRY.register(_GAUGES)
    _GAUGES.clock = clock
    return _GAUGES


_GAUGES: DatabaseGauges | None = None


def route_label(request: web.Request) -> str:
    """The matched route's template (`/api/v1/notices/{notice_id}`), never the raw path."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None:
        return metrics.OTHER
    return resource.canonical


@web.middleware
async def observe_requests(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    bind_context(request_id=uuid.uuid4().hex[:16])  # each request runs in its own task: no reset needed
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.request_observed(route_label(request), request.method, status, time.perf_counter() - started)


def add_metrics(app: web.Application, settings: Settings, clock: Clock) -> web.Application | None:
    """Add the request middleware; serve /metrics on `app`, or return the separate metrics app
    to run on `HERALD_METRICS_PORT` (None when it is not configured)."""
    metrics.set_build_info()
    app.middlewares.append(observe_requests)
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    gauges = register_gauges(clock)
    if settings.metrics_port:
        private = web.Application()
        private.router.add_get(METRICS_PATH, metrics_handler(gauges, token))
        return private
    if token:
        app.router.add_get(METRICS_PATH, metrics_handler(gauges, token))
    return None

"""Prometheus metrics: the metric objects and one small function per event.

The rest of Herald calls `delivery_recorded("slack", "delivered", "delivered")`, `throttled("teams",
2.0)`, ... and never builds label values itself, so every label stays bounded: platforms, outcomes
and route templates, never member, notice or workspace ids.

Counters and histograms are per process: with several replicas each exports its own and
Prometheus adds them up (`sum by (platform) (rate(...))`). Gauges read from the database at scrape
time (outbox depth, audit chain length) live in `bot.ops.metrics_http`; every replica exports the
same value for them, so they must be aggregated with `max`, never `sum`.
"""

from __future__ import annotations

from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

disable_created_metrics()  # no `_created` series beside every counter: half the series, nothing lost
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

PLATFORMS = ("slack", "teams")
DELIVERY_OUTCOMES = ("delivered", "failed", "retried", "deferred")
OTHER = "other"

_ACK_BUCKETS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)
_RETRY_AFTER_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

BUILD = Info("herald_build", "Herald's version", registry=REGISTRY)
DELIVERIES = Counter("herald_deliveries", "Outbox sends recorded, by platform and outcome "
                     "(retried: will be tried again; deferred: not attempted, the workspace was rate-limited)",
                     ["platform", "outcome"], registry=REGISTRY)
RATE_LIMITED = Counter("herald_rate_limited", "HTTP 429 answers from a platform", ["platform"], registry=REGISTRY)
LEASE_FENCED = Counter("herald_delivery_lease_fenced", "Sends not started because this replica's lease on the "
                       "workspace/tenant was lost or running out (put back, not attempted)", ["platform"],
                       registry=REGISTRY)
OUTCOMES_ABANDONED = Counter("herald_delivery_outcomes_abandoned", "Send outcomes that could not be written after "
                             "every retry (their rows come back in doubt when the claim runs out), by source",
                             ["source"], registry=REGISTRY)
RETRY_AFTER = Histogram("herald_rate_limit_retry_after_seconds", "Retry-After a platform asked for with a 429",
                        ["platform"], buckets=_RETRY_AFTER_BUCKETS, registry=REGISTRY)
ACK_LATENCY = Histogram("herald_acknowledgement_latency_seconds",
                        "Time from a must-know notice's delivery to the member's acknowledgement",
                        ["platform"], buckets=_ACK_BUCKETS, registry=REGISTRY)
HTTP_REQUESTS = Counter("herald_http_requests", "Inbound HTTP requests, by route template, method and status",
                        ["route", "method", "status"], registry=REGISTRY)
HTTP_LATENCY = Histogram("herald_http_request_duration_seconds", "Inbound HTTP request latency by route template",
                         ["route", "method"], buckets=_HTTP_BUCKETS, registry=REGISTRY)
ASSISTANT = Counter("herald_assistant_questions", "Questions to the onboarding assistant, by result "
                    "(answered, abstained) and hand-offs to a CAM (handed_off)", ["result"], registry=REGISTRY)
JOURNEY_STEPS = Counter("herald_journey_messages_sent", "Onboarding journey messages delivered, by kind",
                        ["kind"], registry=REGISTRY)
TOKEN_REFRESHES = Counter("herald_slack_token_refreshes", "Slack token rotations, by outcome",
                          ["outcome"], registry=REGISTRY)
TICK_JOB_FAILURES = Counter("herald_tick_job_failures", "Jobs of the periodic tick that raised (logged with the "
                            "traceback; the tick's other jobs still ran), by job", ["job"], registry=REGISTRY)
SOCKET_MODE = Gauge("herald_slack_socket_mode_connected", "1 while the Slack Socket Mode connection is up",
                    registry=REGISTRY)


def _platform(platform: str) -> str:
    return platform if platform in PLATFORMS else OTHER


def set_build_info() -> None:
    try:
        version = metadata.version("herald")
    except metadata.PackageNotFoundError:
        version = "unknown"
    BUILD.info({"version": version})


def delivery_recorded(platform: str, status: str, reported: str, count: int = 1) -> None:
    """`count` outbox rows' sends were recorded: `status` is the rows' new status (delivered,
    failed, pending), `reported` the channel's outcome kind (delivered, retry, failed, deferred)."""
    if status in ("delivered", "failed"):
        outcome = status
    else:
        outcome = "deferred" if reported == "deferred" else "retried"
    DELIVERIES.labels(_platform(platform), outcome).inc(count)


def throttled(platform: str, retry_after: float | None) -> None:
    """A platform answered 429; `retry_after` is its Retry-After in seconds (None when absent)."""
    platform = _platform(platform)
    RATE_LIMITED.labels(platform).inc()
    if retry_after is not None and retry_after >= 0:
        RETRY_AFTER.labels(platform).observe(retry_after)


def lease_fenced(platform: str) -> None:
    """A send was put back because the replica no longer safely held the lane's lease."""
    LEASE_FENCED.labels(_platform(platform)).inc()


OUTBOX_SOURCES = ("notices", "messages")  # the lane sources (bot.core.delivery); anything else counts as other


def delivery_outcomes_abandoned(source: str, count: int) -> None:
    OUTCOMES_ABANDONED.labels(source if source in OUTBOX_SOURCES else "other").inc(count)


def acknowledged(platform: str, seconds_since_delivery: float) -> None:
    ACK_LATENCY.labels(_platform(platform)).observe(max(seconds_since_delivery, 0.0))


def request_observed(route: str, method: str, status: int, seconds: float) -> None:
    """`route` must be a route template (``/api/v1/notices/{notice_id}``) or ``other``."""
    method = method if method in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH") else OTHER
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_LATENCY.labels(route, method).observe(seconds)


def question_answered(abstained: bool) -> None:
    ASSISTANT.labels("abstained" if abstained else "answered").inc()


def question_handed_off() -> None:
    ASSISTANT.labels("handed_off").inc()


def journey_message_sent(kind: str) -> None:
    """kind: step, nudge, milestone or cam (the CAM told of a completed journey)."""
    JOURNEY_STEPS.labels(kind if kind in ("step", "nudge", "milestone", "cam") else OTHER).inc()


def token_refreshed(outcome: str) -> None:
    """outcome: refreshed, failed, or waited (another replica refreshed it)."""
    TOKEN_REFRESHES.labels(outcome if outcome in ("refreshed", "failed", "waited") else OTHER).inc()


TICK_JOBS = ("published", "reminders", "escalations", "escalation_messages", "handoffs_announced", "handoffs_reminded",
             "digests", "journeys", "surveys_closed", "notices_completed", "kb_reloaded", "expired_forgotten",
             "engagement_refreshed")


def tick_job_failed(job: str) -> None:
    """A job of Herald.tick raised; `job` is its name in TICK_JOBS."""
    TICK_JOB_FAILURES.labels(job if job in TICK_JOBS else OTHER).inc()


def socket_mode_connected(up: bool) -> None:
    SOCKET_MODE.set(1 if up else 0)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample (0.0 when absent): for tests and `herald doctor`."""
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value

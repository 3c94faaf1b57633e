"""Comparing the variants of an A/B test: acknowledgement rate (must-know), button interactions and
the median time to acknowledge, each with a significance test from SciPy.

Rates are compared on the table of (yes, no) per variant among members the variant was delivered
to. With every expected cell count at least 5 that is Pearson's chi-square test of independence
(for two variants the same as the two-proportion z-test: chi-square = z squared); with any expected
count under 5 it is Fisher's exact test (SciPy's exact test for 2x2 and, since SciPy 1.15, larger
tables). Times to acknowledge are compared with the Mann-Whitney U test (two variants) or the
Kruskal-Wallis H test (three or four): ranks, because response times are skewed. Each rate also
gets a Wilson 95% confidence interval.

Below a stated minimum the comparison says so instead of testing: each variant needs at least
MIN_DELIVERED members it was delivered to, and MIN_ACKNOWLEDGED acknowledgements for the times.

Only the experiment's members are compared: those given a variant at the send. The members held
back by `share:` and sent the winner by the rollout (copies marked `rolled_out`) were never
randomised between the variants; counted with the winner they would inflate its figures and
skew the tests, so they are reported apart, as the rollout.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scipy import stats
from scipy.stats.contingency import expected_freq

from tortoise.functions import Count

from bot.common.errors import NotFound, PermissionDenied
from bot.core.compliance.reports import can_read_notice, iso
from bot.core.directory.permissions import require_viewer
from storage.models import (
    Acknowledgement,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Notice,
    NoticeExperiment,
    NoticeInteraction,
    NoticeVariant,
    Staff,
    StaffRole,
)

MIN_DELIVERED = 20
MIN_ACKNOWLEDGED = 5
ALPHA = 0.05


@dataclass
class VariantStats:
    label: str
    title: str
    assigned: int = 0  # members given this variant at the send (the rollout's: members it released)
    delivered: int = 0
    acknowledged: int = 0
    interacted: int = 0  # members who pressed any button: Acknowledge or the link
    ack_seconds: list[float] = field(default_factory=list)

    def count(self, delivered_at: datetime, acknowledged_at: datetime | None, pressed: bool) -> None:
        """One member delivered to, and what they did."""
        self.delivered += 1
        if acknowledged_at is not None:
            self.acknowledged += 1
            self.ack_seconds.append(max((acknowledged_at - delivered_at).total_seconds(), 0.0))
        if acknowledged_at is not None or pressed:
            self.interacted += 1

    def rollout_dict(self, must_know: bool) -> dict[str, Any]:
        """The figures of the rollout (`assigned`: the held-back members it released)."""
        out: dict[str, Any] = {"variant": self.label, "members": self.assigned, "delivered": self.delivered,
                               "interacted": self.interacted}
        return (out | {"acknowledged": self.acknowledged}) if must_know else out

    def as_dict(self, must_know: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"variant": self.label, "title": self.title, "assigned": self.assigned,
                               "delivered": self.delivered, "interacted": self.interacted,
                               "interaction_rate": _rate(self.interacted, self.delivered),
                               "interaction_ci95": _wilson(self.interacted, self.delivered)}
        if must_know:
            out |= {"acknowledged": self.acknowledged, "ack_rate": _rate(self.acknowledged, self.delivered),
                    "ack_rate_ci95": _wilson(self.acknowledged, self.delivered),
                    "median_seconds_to_ack": statistics.median(self.ack_seconds) if self.ack_seconds else None}
        return out


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _wilson(part: int, whole: int) -> list[float] | None:
    if not whole:
        return None
    interval = stats.binomtest(part, whole).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(float(interval.low), 4), round(float(interval.high), 4)]


def compare_rates(metric: str, counts: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """counts: variant -> (yes, delivered). The test result, or why there is none yet."""
    labels = sorted(counts)
    short = [f"{label} {counts[label][1]}" for label in labels if counts[label][1] < MIN_DELIVERED]
    base: dict[str, Any] = {"metric": metric, "minimum_per_variant": MIN_DELIVERED}
    if short:
        return base | {"enough_data": False, "note": (
            f"not enough data yet: each variant needs at least {MIN_DELIVERED} members it was delivered to "
            f"(now {', '.join(short)})")}
    table = [[counts[label][0], counts[label][1] - counts[label][0]] for label in labels]
    if any(sum(column) == 0 for column in zip(*table, strict=True)):
        same = "everyone responded" if table[0][1] == 0 else "nobody responded"
        return base | {"enough_data": True, "test": None, "p_value": 1.0, "significant": False,
                       "note": f"{same} in every variant: nothing to tell apart"}
    if expected_freq(table).min() < 5:
        name, p_value = "Fisher's exact test", float(stats.fisher_exact(table).pvalue)
    else:
        result = stats.chi2_contingency(table, correction=False)
        name, p_value = "Pearson's chi-square test", float(result.pvalue)
    leader = max(labels, key=lambda label: counts[label][0] / counts[label][1])
    significant = p_value < ALPHA
    note = (f"variant {leader} does best and the difference is significant (p = {p_value:.3g})" if significant
            else f"no significant difference yet (p = {p_value:.3g}); variant {leader} is ahead")
    return base | {"enough_data": True, "test": name, "p_value": round(p_value, 6), "significant": significant,
                   "leader": leader, "note": note}


def compare_times(samples: dict[str, list[float]]) -> dict[str, Any]:
    """Seconds from delivery to acknowledgement per variant: a rank test, or why there is none."""
    labels = sorted(samples)
    base: dict[str, Any] = {"metric": "time_to_acknowledge", "minimum_per_variant": MIN_ACKNOWLEDGED}
    short = [f"{label} {len(samples[label])}" for label in labels if len(samples[label]) < MIN_ACKNOWLEDGED]
    if short:
        return base | {"enough_data": False, "note": (
            f"not enough data yet: each variant needs at least {MIN_ACKNOWLEDGED} acknowledgements "
            f"(now {', '.join(short)})")}
    groups = [samples[label] for label in labels]
    if len({value for group in groups for value in group}) == 1:
        return base | {"enough_data": True, "test": None, "p_value": 1.0, "significant": False,
                       "note": "every acknowledgement took the same time: nothing to tell apart"}
    if len(groups) == 2:
        name, p_value = "Mann-Whitney U test", float(stats.mannwhitneyu(*groups, alternative="two-sided").pvalue)
    else:
        name, p_value = "Kruskal-Wallis H test", float(stats.kruskal(*groups).pvalue)
    fastest = min(labels, key=lambda label: statistics.median(samples[label]))
    significant = p_value < ALPHA
    note = (f"variant {fastest} is acknowledged fastest and the difference is significant (p = {p_value:.3g})"
            if significant else f"no significant difference yet (p = {p_value:.3g}); variant {fastest} is fastest")
    return base | {"enough_data": True, "test": name, "p_value": round(p_value, 6), "significant": significant,
                   "leader": fastest, "note": note}


@dataclass
class _Members:
    """Per member: the variant of their copies and when the first of them was delivered."""

    variant_of: dict[int, str] = field(default_factory=dict)
    delivered_at: dict[int, datetime] = field(default_factory=dict)

    def add(self, row: dict[str, Any]) -> None:
        member = row["member_id"]
        self.variant_of[member] = row["variant"]
        if row["status"] == DeliveryStatus.DELIVERED.value and row["delivered_at"] is not None:
            first = self.delivered_at.get(member)
            self.delivered_at[member] = row["delivered_at"] if first is None else min(first, row["delivered_at"])


async def _first_acknowledgements(notice: Notice) -> dict[int, datetime]:
    """member id -> their first acknowledgement of the notice's current acknowledgement revision."""
    acked: dict[int, datetime] = {}
    for ack in await Acknowledgement.filter(notice_id=notice.id, revision__gte=notice.ack_revision).values(
            "member_id", "acknowledged_at"):
        first = acked.get(ack["member_id"])
        acked[ack["member_id"]] = ack["acknowledged_at"] if first is None else min(first, ack["acknowledged_at"])
    return acked


async def _gather(notice: Notice, by_label: dict[str, VariantStats], rollout: VariantStats | None) -> int:
    """Fill the per-variant counts of the experiment's members from the notice's rows, and
    `rollout` from the rows the rollout released; returns the members still held back."""
    experiment, released, held = _Members(), _Members(), set()
    for row in await Delivery.filter(notice_id=notice.id, kind=DeliveryKind.NOTICE.value).values(
            "member_id", "variant", "status", "delivered_at", "rolled_out"):
        if row["status"] == DeliveryStatus.HELD.value:
            held.add(row["member_id"])
        if row["variant"] in by_label:
            (released if row["rolled_out"] else experiment).add(row)
    acked = await _first_acknowledgements(notice)
    pressed = set(await NoticeInteraction.filter(notice_id=notice.id).values_list("member_id", flat=True))
    for label in experiment.variant_of.values():
        by_label[label].assigned += 1
    for member, at in experiment.delivered_at.items():
        by_label[experiment.variant_of[member]].count(at, acked.get(member), member in pressed)
    if rollout is not None:
        rollout.assigned = len(released.variant_of)
        for member, at in released.delivered_at.items():
            rollout.count(at, acked.get(member), member in pressed)
    return len(held - set(experiment.variant_of) - set(released.variant_of))


async def variant_results(notice_id: int, staff: Staff | None, *, operator: bool = False) -> dict[str, Any]:
    """The A/B comparison of a notice: per variant counts and rates, and the tests. `operator`: the
    command line at the server, which reads everything."""
    notice = await Notice.filter(id=notice_id).select_related("author").first()
    if notice is None:
        raise NotFound(f"notice {notice_id} does not exist")
    if not operator and not await can_read_notice(staff, notice):
        raise PermissionDenied("Only compliance, admins and the notice's CAM can see its A/B results.")
    variants = await NoticeVariant.filter(notice_id=notice.id).order_by("label")
    if not variants:
        raise NotFound(f"notice #{notice.id} has no variants")
    experiment = await NoticeExperiment.get_or_none(notice_id=notice.id)
    by_label = {v.label: VariantStats(v.label, v.title) for v in variants}
    winner = experiment.winner if experiment is not None and experiment.winner in by_label else ""
    rollout = VariantStats(winner, by_label[winner].title) if winner else None
    held = await _gather(notice, by_label, rollout)
    must_know = notice.importance == "must-know"
    comparisons = []
    if must_know:
        comparisons.append(compare_rates("ack_rate", {k: (v.acknowledged, v.delivered) for k, v in by_label.items()}))
    comparisons.append(compare_rates("interaction_rate", {k: (v.interacted, v.delivered) for k, v in by_label.items()}))
    if must_know:
        comparisons.append(compare_times({k: v.ack_seconds for k, v in by_label.items()}))
    return {
        "notice_id": notice.id, "title": notice.title, "importance": notice.importance, "status": notice.status,
        "share_percent": experiment.share_percent if experiment else None, "held": held,
        "winner": (experiment.winner or None) if experiment else None,
        "rolled_out_at": iso(experiment.rolled_out_at) if experiment else None,
        "variants": [by_label[label].as_dict(must_know) for label in sorted(by_label)],
        "rollout": rollout.rollout_dict(must_know) if rollout is not None else None,
        "comparisons": comparisons, "alpha": ALPHA,
    }



async def list_experiments(staff: Staff | None, *, before: int | None = None, limit: int = 50
                           ) -> tuple[list[dict[str, Any]], int | None]:
    """The A/B tests a person may read (the reports' rule: compliance and admins all, a CAM their
    own), newest first, with `before` for the next page (None on the last)."""
    staff = require_viewer(staff)
    query = NoticeExperiment.all().select_related("notice")
    if staff.role == StaffRole.CAM.value:
        query = query.filter(notice__author_id=staff.id)
    if before is not None:
        query = query.filter(notice_id__lt=before)
    found = await query.order_by("-notice_id").limit(limit + 1)
    page = found[:limit]
    counts = {r["notice_id"]: r["n"] for r in await NoticeVariant.filter(
        notice_id__in=[e.notice.id for e in page]).annotate(n=Count("id")).group_by("notice_id").values(
        "notice_id", "n")}
    items = [{"id": e.notice.id, "title": e.notice.title, "importance": e.notice.importance,
              "status": e.notice.status, "sent_at": e.notice.sent_at, "variants": counts.get(e.notice.id, 0),
              "share_percent": e.share_percent, "winner": e.winner or None, "rolled_out_at": e.rolled_out_at}
             for e in page]
    return items, page[-1].notice.id if len(found) > limit and page else None

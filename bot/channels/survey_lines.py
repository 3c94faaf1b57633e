"""Survey and A/B results as lines of text, shared by the Slack and Teams renderers (as
`status_lines`): the platforms pass their bold marker, escaping and bullet; the wording is here.

Everything shown comes from the core's result objects, which have already applied the anonymity
rules; nothing here looks at member-level data the results did not include.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.core.commands.runner import SurveyResults, SurveyStages, VariantResults
from bot.core.notices.rollout import RolloutResult
from bot.core.notices.views import format_time
from bot.core.surveys.answers import CloseResult
from bot.core.surveys.creating import SurveyPreview
from bot.core.surveys.results import DIMENSIONS, MIN_SEGMENT_ANSWERS

Bold = Callable[[str], str]
Escape = Callable[[str], str]
MAX_SEGMENTS = 12  # per breakdown in chat; the CLI, API and CSV have them all
MAX_COMMENTS = 10


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _figures(row: dict[str, Any]) -> str:
    """`mean 3.8 · NPS +12 · Yes 60% · No 40%` for a total or segment row."""
    parts = []
    if row.get("mean") is not None:
        parts.append(f"mean {row['mean']:.2f}")
    if row.get("nps"):
        parts.append(f"NPS {row['nps']['score']:+d}")
    if row.get("mean") is None and row.get("distribution"):
        parts += [f"{c['label']} {_pct(c['share'])}" for c in row["distribution"] if c["count"]]
    return " · ".join(parts)


def survey_result_lines(results: dict[str, Any], *, bold: Bold, escape: Escape, bullet: str) -> list[str]:
    doc, total = results["survey"], results["total"]
    state = "open" if doc["open"] else f"closed {doc['closed_at'][:16].replace('T', ' ')} UTC"
    if doc["open"] and doc["closes_at"]:
        state = f"open until {doc['closes_at'][:16].replace('T', ' ')} UTC"
    title = f"Survey #{doc['id']}: {escape(doc['question'])}"
    lines = [bold(title),
             f"{'Anonymous · ' if results['anonymous'] else ''}{state} · "
             f"answered {bold(str(total['answered']))} of {total['recipients']} delivered "
             f"({_pct(total['response_rate'])}) · changed answers: {total['changed_answers']}"]
    if results["scope"] != "all":
        lines.append("Only your partners' answers are counted.")
    if results["suppressed"]:
        lines.append(f"Anonymous: results appear once {MIN_SEGMENT_ANSWERS} people have answered.")
        return lines
    for choice in total["distribution"] or []:
        lines.append(f"{bullet} {escape(choice['label'])}: {choice['count']} ({_pct(choice['share'])})")
    if total.get("mean") is not None:
        lines.append("Mean: " + bold(f"{total['mean']:.2f}"))
    if total.get("nps"):
        nps = total["nps"]
        lines.append("NPS: " + bold(f"{nps['score']:+d}") + f" (promoters {nps['promoters']}, "
                     f"passives {nps['passives']}, detractors {nps['detractors']})")
    for dim in DIMENSIONS:
        rows = results["breakdowns"].get(dim) or []
        if not rows:
            continue
        lines.append(bold(f"By {dim}"))
        for row in rows[:MAX_SEGMENTS]:
            lines.append(f"{bullet} {escape(row['segment'])}: {row['answered']}/{row['recipients']} "
                         f"({_pct(row['response_rate'])}) {escape(_figures(row))}".rstrip())
        if len(rows) > MAX_SEGMENTS:
            lines.append(f"{bullet} … and {len(rows) - MAX_SEGMENTS} more (see `herald survey results {doc['id']}`)")
    if results["anonymous"]:
        lines.append(f"Anonymous: no names, and no group with fewer than {MIN_SEGMENT_ANSWERS} answers.")
    comments = results["comments"]
    if comments:
        lines.append(bold(f"Comments ({len(comments)})"))
        for comment in comments[:MAX_COMMENTS]:
            text = comment if isinstance(comment, str) else f"{comment['member']}: {comment['comment']}"
            lines.append(f"{bullet} \"{escape(one_line(text)[:300])}\"")
    return lines


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of whitespace folded into single spaces: a comment is
    one line of the results, so none of it can start a line that reads as another member's
    comment. The CSV, the API and the console keep the text as written."""
    return " ".join(text.split())


def stages_lines(stages: list[dict[str, Any]], *, bold: Bold, escape: Escape, bullet: str) -> list[str]:
    if not stages:
        return ["No journey surveys have gone out yet."]
    lines = [bold("Journey surveys by stage")]
    for s in stages:
        where = ", ".join(f"{escape(p['journey'])} step {p['position']} (day {p['after_days']})" for p in s["journeys"])
        figures = "results appear at 5 answers" if s["suppressed"] else _figures(s)
        lines.append(f"{bullet} #{s['survey_id']} {escape(s['step'])}: {where or 'no longer in the journeys'} · "
                     f"{s['answered']}/{s['recipients']} ({_pct(s['response_rate'])}) {escape(figures)}".rstrip())
    lines.append("`survey results <id>` shows one stage in full.")
    return lines


def variant_lines(results: dict[str, Any], *, bold: Bold, escape: Escape, bullet: str) -> list[str]:
    title = f"A/B test of notice #{results['notice_id']}: {escape(results['title'])}"
    lines = [bold(title)]
    if results["share_percent"]:
        state = (f"variant {results['winner']} rolled out" if results["winner"]
                 else f"{results['held']} held back for the winner")
        lines.append(f"First sent to {results['share_percent']}% · {state}")
    for v in results["variants"]:
        parts = [f"delivered {v['delivered']}"]
        if "ack_rate" in v:
            median = v["median_seconds_to_ack"]
            parts.append(f"acknowledged {v['acknowledged']} ({_pct(v['ack_rate'])})")
            parts.append(f"median time to acknowledge {_duration(median)}")
        parts.append(f"pressed a button {v['interacted']} ({_pct(v['interaction_rate'])})")
        lines.append(f"{bullet} {bold(v['variant'])} {escape(v['title'])}: " + " · ".join(parts))
    if results.get("rollout"):
        lines.append(rollout_line(results["rollout"]))
    names = {"ack_rate": "Acknowledgement rate", "interaction_rate": "Button presses",
             "time_to_acknowledge": "Time to acknowledge"}
    for c in results["comparisons"]:
        test = f" ({c['test']})" if c.get("test") else ""
        lines.append(f"{names[c['metric']]}: {c['note']}{test}")
    return lines


def rollout_line(rollout: dict[str, Any]) -> str:
    """The winner's rollout to the held-back members: apart from the experiment's figures."""
    n = rollout["members"]
    parts = [f"delivered {rollout['delivered']}"]
    if "acknowledged" in rollout:
        parts.append(f"acknowledged {rollout['acknowledged']}")
    parts.append(f"pressed a button {rollout['interacted']}")
    return (f"Rollout of variant {rollout['variant']} to {n} held-back member{'s' if n != 1 else ''} "
            f"(not counted above or in the tests): " + " · ".join(parts))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def survey_preview_lines(preview: SurveyPreview, *, bold: Bold, escape: Escape, bullet: str) -> list[str]:
    spec, notice = preview.spec, preview.notice
    n = preview.recipients
    lines = [bold(f"Preview of survey #{notice.id}") + f" · {escape(preview.topic.title)}",
             bold(escape(spec.question))]
    lines += [f"{bullet} {escape(label)}" for _, label in spec.choices()] if not spec.scale else [
        f"Scale {spec.scale[0]}–{spec.scale[1]}" + (" (with the Net Promoter Score)" if spec.is_nps else "")]
    if spec.follow_up:
        lines.append(f"Follow-up: {escape(spec.follow_up)}")
    if spec.anonymous:
        lines.append(f"Anonymous: results show no names and no group under {MIN_SEGMENT_ANSWERS} answers")
    if preview.survey.closes_at:
        lines.append(f"Closes {format_time(preview.survey.closes_at)}")
    if notice.scheduled_at:
        lines.append(f"Goes out at {format_time(notice.scheduled_at)}")
    lines.append(f"Audience {escape(notice.audience)} → {bold(f'{n} recipient' + ('s' if n != 1 else ''))}")
    lines += [f"⚠ {escape(w)}" for w in preview.warnings]
    return lines


def experiment_text(result: Any, *, bold: Bold, escape: Escape, bullet: str, join: str = "\n") -> str | None:
    """The reply to a survey or A/B command (None: not one of those results)."""
    if isinstance(result, SurveyResults):
        return join.join(survey_result_lines(result.results, bold=bold, escape=escape, bullet=bullet))
    if isinstance(result, SurveyStages):
        return join.join(stages_lines(result.stages, bold=bold, escape=escape, bullet=bullet))
    if isinstance(result, VariantResults):
        return join.join(variant_lines(result.results, bold=bold, escape=escape, bullet=bullet))
    if isinstance(result, CloseResult):
        if result.already:
            return f"Survey #{result.notice.id} was already closed."
        return f"Survey #{result.notice.id} is closed: no more answers; the messages lose their buttons."
    if isinstance(result, RolloutResult):
        if result.already:
            return f"Variant {result.variant} of notice #{result.notice.id} was already rolled out; nothing new was sent."
        return (f"Rolling out variant {result.variant} of notice #{result.notice.id} to "
                f"{result.released} held-back recipient{'s' if result.released != 1 else ''}.")
    return None

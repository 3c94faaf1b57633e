"""Onboarding journeys: small steps Herald sends a new partner member, one a day, with a Done button.

`config/journeys.yaml` (see the comments there) names a journey per partner role plus a `default`,
each an ordered list of steps due `after_days` after the member joined Herald (`Member.joined_at`,
so a member who joins late starts at step one), a nudge delay and recognition milestones.

Every message is a `JourneyStep` row, written before anything is sent (an outbox):

* the steps themselves: `step_key` is the step's key, `position` its 1-based place in the journey;
* milestone messages to the member: `step_key` "milestone:half", "milestone:complete", "milestone:25%";
* the note to the member's CAM when the member completes: `step_key` "cam:complete".

Milestone and CAM rows have `position` 0 and never count as steps. The unique (member, step_key)
key makes each of them happen once per journey, however many replicas run `run_journeys` at the
same moment; a member who completes a second journey after a role change gets them again, keyed
with the journey's name ("milestone:complete:support", "cam:complete:support").

Sending claims a row with a conditional update (pending -> sending, `sent_at` = when it was queued)
and, in the same transaction, queues its message in the outbox (bot.core.delivery.messages), which
sends it in the workspace's lane after any notices, under the platform's limits, and records the
result through `_message_result`. A message interrupted by a crash may or may not have gone out,
so it is never sent again: an interrupted step counts as sent (the nudge follows up if the member
never saw it); an interrupted milestone or CAM note is recorded as failed.

While Herald is removed from the workspace of every account a member has, or the member removed
Herald (Teams, `app_installs`) from each, their journey waits: no new step is planned, and steps
and nudges already due stay unsent. A step refused because Herald was removed from the workspace
(`workspaces.removed_reason`) goes back to pending once the member can be reached again, and is
that day's step; one refused because the member removed Herald goes back to pending when they
add it again (`app_installs.app_added`).

Nudges: a step not done `nudge_after_days` after it was sent gets exactly one nudge (`nudged_at`,
claimed with a conditional update), in the member's working hours, at most one nudge per member a
day. Paused organisations get no nudges while the pause lasts; steps keep being sent to them
(they are the journey itself, not reminders), and a nudge that fell due is sent after the pause.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from bot.common import metrics
from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.common.schedule import member_zone, next_working_moment
from bot.core.commands.parser import command_hint
from bot.core.compliance.audit import audit_event, record
from bot.core.directory.permissions import named_as_cam
from bot.core.directory.reach import choose_account, unreachable_workspaces
from bot.core.directory.staff import cam_for_organisation
from bot.core.directory.workspaces import failed_because_removed
from bot.core.notices.reminders import is_paused
from bot.core.delivery.messages import (
    ClaimVerdict,
    MessageResult,
    Priority,
    ResultKind,
    Target,
    addressed_by,
    enqueue,
    message_from_json,
    on_result,
    staff_addressee,
    staff_target,
)
from bot.core.ports import Button, Channel, DirectMessage, MessageRef
from bot.core.surveys.creating import enqueue_journey_survey, journey_survey
from bot.core.surveys.spec import SurveySpec, spec_from_config
from storage.models import (
    JourneyStep,
    Member,
    MessagePurpose,
    Organisation,
    OutboundMessage,
    PlatformAccount,
    Staff,
    StaffRole,
)

log = logging.getLogger(__name__)

DONE_ACTION = "herald_journey_done"
NO_ACTIVE_CAM = "the organisation has no active CAM on file"
NO_CAM_ACCOUNT = "the CAM has no Slack or Teams account on file"
DEFAULT_JOURNEY = "default"
DEFAULT_NUDGE_AFTER_DAYS = 3
MILESTONE_PREFIX = "milestone:"
CAM_COMPLETE_KEY = "cam:complete"

LEASE = timedelta(minutes=5)  # a row `sending` this long without an outbound message was interrupted
SEND_BATCH = 200  # messages one run queues at most; the rest wait for the next tick
PENDING_PAGE = 1000  # pending rows read at a time while looking for those that can go now

# row statuses
PENDING, SENDING, SENT, FAILED, DONE = "pending", "sending", "sent", "failed", "done"

_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
_MAX_TITLE, _MAX_MESSAGE, _MAX_LINK, _MAX_STEPS = 120, 1500, 500, 30
_TOP_FIELDS = ("nudge_after_days", "milestones", "journeys", "enrol_joined_after", "surveys")
_JOURNEY_FIELDS = ("steps",)
_STEP_FIELDS = ("key", "title", "message", "link", "after_days", "survey")
_MILESTONE_FIELDS = ("at", "message")
_NAMED_MILESTONES = {"half": 50, "complete": 100}


# ---- the configuration ------------------------------------------------------------------------

class JourneyConfigError(Exception):
    """The journeys file is malformed (an operator problem); the message says where and how."""


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    message: str
    after_days: int
    position: int  # 1-based
    link: str = ""
    survey: SurveySpec | None = None  # a pulse survey sent when the member reaches this step


@dataclass(frozen=True)
class Journey:
    name: str
    steps: tuple[Step, ...]

    def step(self, key: str) -> Step | None:
        return next((s for s in self.steps if s.key == key), None)

    def done_count(self, done_keys: Collection[str]) -> int:
        """How many of this journey's steps are done, given the keys of every step the member has
        done: only keys in this journey count (after a role change, a step of the earlier journey
        counts when the new one has the same key)."""
        return sum(1 for step in self.steps if step.key in done_keys)


@dataclass(frozen=True)
class Milestone:
    at: str  # "half", "complete" or "NN%"
    percent: int
    message: str

    @property
    def key(self) -> str:
        return MILESTONE_PREFIX + self.at


@dataclass(frozen=True)
class JourneyCatalog:
    journeys: dict[str, Journey]
    nudge_after_days: float = DEFAULT_NUDGE_AFTER_DAYS
    milestones: tuple[Milestone, ...] = ()
    enrol_joined_after: datetime | None = None  # only members who joined on or after this take part

    def for_role(self, role: str) -> Journey:
        return self.journeys.get((role or "").strip().lower()) or self.journeys[DEFAULT_JOURNEY]

    def find_step(self, key: str, journey: str = "") -> Step | None:
        """The step with this key: from the named journey if it has it, else from any journey."""
        preferred = self.journeys.get(journey)
        found = preferred.step(key) if preferred else None
        if found is None:
            found = next((j.step(key) for j in self.journeys.values() if j.step(key)), None)
        return found

    def step_keys_by_role(self) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
        """The step keys of each role's own journey, and of the default journey (every other
        role's, as `for_role` picks): for queries that count `Journey.done_count` in SQL."""
        named = {name: tuple(s.key for s in j.steps) for name, j in self.journeys.items() if name != DEFAULT_JOURNEY}
        return named, tuple(s.key for s in self.journeys[DEFAULT_JOURNEY].steps)

    def enrolled(self, member: Member) -> bool:
        return self.enrol_joined_after is None or member.joined_at >= self.enrol_joined_after


def milestone_percent(label: str) -> int | None:
    """50 for "half", 100 for "complete", NN for "NN%"; None when the label is not one of those."""
    label = label.strip().lower()
    if label in _NAMED_MILESTONES:
        return _NAMED_MILESTONES[label]
    match = re.fullmatch(r"(\d{1,3})\s*%", label)
    if match and 1 <= int(match.group(1)) <= 100:
        return int(match.group(1))
    return None


def parse_journeys(data: Any, *, source: str = "journeys file") -> JourneyCatalog:
    """Validate the parsed YAML; raises JourneyConfigError naming the journey, step and field."""

    def fail(where: str, problem: str) -> JourneyConfigError:
        return JourneyConfigError(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")

    def check_fields(spec: Any, allowed: tuple[str, ...], where: str) -> dict:
        if not isinstance(spec, dict):
            raise fail(where, f"expected a mapping with {', '.join(allowed)}, got {_kind(spec)}")
        for name in spec:
            if name not in allowed:
                hint = difflib.get_close_matches(str(name), allowed, n=1)
                raise fail(where, f"unknown field '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                           + f"; allowed: {', '.join(allowed)}")
        return spec

    def text(spec: dict, name: str, where: str, *, limit: int, required: bool = True) -> str:
        value = spec.get(name)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            raise fail(where, f"'{name}' must be non-empty text")
        value = " ".join(value.split()) if name == "title" else value.strip()
        if len(value) > limit:
            raise fail(where, f"'{name}' is {len(value)} characters long; at most {limit}")
        return value

    data = check_fields(data, _TOP_FIELDS, "")

    nudge = data.get("nudge_after_days", DEFAULT_NUDGE_AFTER_DAYS)
    if isinstance(nudge, bool) or not isinstance(nudge, (int, float)) or not 0 < nudge <= 365:
        raise fail("nudge_after_days", f"must be a number of days between 1 and 365, got {nudge!r}")

    enrol = data.get("enrol_joined_after")
    enrol_after = _as_datetime(enrol) if enrol is not None else None
    if enrol is not None and enrol_after is None:
        raise fail("enrol_joined_after", f"must be a date such as 2026-01-01, got {enrol!r}")

    raw_milestones = data.get("milestones") or []
    if not isinstance(raw_milestones, list):
        raise fail("milestones", f"must be a list of {{at, message}}, got {_kind(raw_milestones)}")
    milestones: list[Milestone] = []
    for number, spec in enumerate(raw_milestones, 1):
        where = f"milestone {number}"
        spec = check_fields(spec, _MILESTONE_FIELDS, where)
        at = str(spec.get("at", "")).strip().lower()
        percent = milestone_percent(at)
        if percent is None:
            raise fail(where, f"'at' must be half, complete or a percentage such as 25%, got {spec.get('at')!r}")
        at = at.replace(" ", "")
        if any(m.percent == percent for m in milestones):
            raise fail(where, f"two milestones are at {percent}%")
        milestones.append(Milestone(at=at, percent=percent, message=text(spec, "message", where, limit=_MAX_MESSAGE)))

    surveys = _parse_surveys(data.get("surveys"), fail)
    raw_journeys = data.get("journeys")
    if not isinstance(raw_journeys, dict) or not raw_journeys:
        raise fail("journeys", "must map role names (and 'default') to journeys")
    journeys: dict[str, Journey] = {}
    for raw_name, spec in raw_journeys.items():
        name = str(raw_name).strip().lower()
        if not _NAME.match(name):
            raise fail(f"journey '{raw_name}'", "the name must be a role: lower-case letters, digits, '-' or '_'")
        if name in journeys:
            raise fail(f"journey '{raw_name}'", "is defined twice")
        spec = check_fields(spec, _JOURNEY_FIELDS, f"journey '{name}'")
        raw_steps = spec.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise fail(f"journey '{name}'", "'steps' must be a non-empty list")
        if len(raw_steps) > _MAX_STEPS:
            raise fail(f"journey '{name}'", f"has {len(raw_steps)} steps; at most {_MAX_STEPS}")
        steps: list[Step] = []
        for position, step_spec in enumerate(raw_steps, 1):
            key_hint = f" ('{step_spec.get('key')}')" if isinstance(step_spec, dict) and step_spec.get("key") else ""
            where = f"journey '{name}', step {position}{key_hint}"
            step_spec = check_fields(step_spec, _STEP_FIELDS, where)
            key = step_spec.get("key")
            if not isinstance(key, str) or not _KEY.match(key):
                raise fail(where, "'key' must be lower-case letters, digits, '-' or '_' (at most 60 characters)")
            if any(s.key == key for s in steps):
                raise fail(where, f"the key '{key}' is used twice in this journey")
            after = step_spec.get("after_days")
            if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= 3650:
                raise fail(where, f"'after_days' must be a whole number of days (0 or more), got {after!r}")
            if steps and after < steps[-1].after_days:
                raise fail(where, f"'after_days' ({after}) is lower than the step before's "
                                  f"({steps[-1].after_days}); list steps in the order they fall due")
            link = text(step_spec, "link", where, limit=_MAX_LINK, required=False)
            if link and (not re.match(r"^https?://\S+$", link)):
                raise fail(where, f"'link' must be an http(s):// address without spaces, got {link!r}")
            steps.append(Step(key=key, title=text(step_spec, "title", where, limit=_MAX_TITLE),
                              message=text(step_spec, "message", where, limit=_MAX_MESSAGE),
                              after_days=after, position=position, link=link,
                              survey=_step_survey(step_spec.get("survey"), surveys, where, fail)))
        journeys[name] = Journey(name=name, steps=tuple(steps))
    if DEFAULT_JOURNEY not in journeys:
        raise fail("journeys", f"a '{DEFAULT_JOURNEY}' journey is required (for roles without their own)")
    _check_shared_steps(journeys, fail)
    return JourneyCatalog(journeys=journeys, nudge_after_days=nudge, milestones=tuple(milestones),
                          enrol_joined_after=enrol_after)


def _parse_surveys(raw: Any, fail: Any) -> dict[str, SurveySpec]:
    """The `surveys:` map (name -> survey) that steps may name with `survey: <name>`."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail("surveys", f"must map survey names to surveys, got {_kind(raw)}")
    found = {}
    for name, spec in raw.items():
        try:
            found[str(name)] = spec_from_config(spec)
        except ValueError as exc:
            raise fail(f"survey '{name}'", str(exc)) from None
    return found


def _step_survey(raw: Any, surveys: dict[str, SurveySpec], where: str, fail: Any) -> SurveySpec | None:
    """A step's `survey`: the name of one in `surveys:`, or a survey written inline."""
    if raw is None:
        return None
    if isinstance(raw, str):
        if raw not in surveys:
            hint = difflib.get_close_matches(raw, list(surveys), n=1)
            raise fail(where, f"'survey' names '{raw}', which is not under surveys:"
                       + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        return surveys[raw]
    try:
        return spec_from_config(raw)
    except ValueError as exc:
        raise fail(where, str(exc)) from None


def _check_shared_steps(journeys: dict[str, Journey], fail: Any) -> None:
    """A step key in several journeys is one task, so it carries one survey (or none) everywhere."""
    seen: dict[str, tuple[str, SurveySpec | None]] = {}
    for journey in journeys.values():
        for step in journey.steps:
            if step.key in seen and seen[step.key][1] != step.survey:
                raise fail(f"journey '{journey.name}', step '{step.key}'",
                           f"asks a different survey than the same step in journey '{seen[step.key][0]}'")
            seen.setdefault(step.key, (journey.name, step.survey))


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _as_datetime(datetime.fromisoformat(value.strip()))
        except ValueError:
            return None
    return None


def default_journeys_path() -> Path:
    from config.settings import CONFIG_DIR

    return CONFIG_DIR / "journeys.yaml"


# the catalog last read from each file, with the file's (modification time, size) then
_loaded: dict[Path, tuple[tuple[int, int], JourneyCatalog]] = {}


def load_journeys(path: Path | None = None) -> JourneyCatalog:
    """The journeys file (default `config/journeys.yaml`), read and validated again whenever it
    changes (its modification time or size), so a running server follows an edit at its next
    tick without a restart. An edit that cannot be read or is invalid raises JourneyConfigError
    on a first read (startup, `herald doctor`); once a version was read, the server logs the
    problem once and keeps that version until the file is fixed."""
    source = Path(path or default_journeys_path())
    known = _loaded.get(source)
    try:
        stat = source.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        if known is not None and known[0] == version:
            return known[1]
        catalog = _read_journeys(source)
    except (OSError, JourneyConfigError) as exc:
        problem = exc if isinstance(exc, JourneyConfigError) else JourneyConfigError(
            f"cannot read journeys file {source}: {exc}")
        if known is None:
            raise problem from None
        _report_once(f"the journeys file changed but cannot be used, keeping the version read before: {problem}")
        return known[1]
    _loaded[source] = (version, catalog)
    if known is not None:
        log.info("journeys file %s changed: %d journeys read again", source, len(catalog.journeys))
    return catalog


def _read_journeys(source: Path) -> JourneyCatalog:
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise JourneyConfigError(f"cannot read journeys file {source}: {exc}") from None
    return parse_journeys(data, source=f"journeys file {source}")


_reported: set[str] = set()


def _report_once(problem: str) -> None:
    if problem not in _reported:  # once per problem, not every tick
        _reported.add(problem)
        log.error("%s", problem)


def _catalog_or_none(catalog: JourneyCatalog | None) -> JourneyCatalog | None:
    if catalog is not None:
        return catalog
    try:
        return load_journeys()
    except JourneyConfigError as exc:
        _report_once(f"onboarding journeys are off: {exc}")
        return None


# ---- the periodic run -------------------------------------------------------------------------

def _counts() -> dict[str, int]:
    return {"steps": 0, "nudges": 0, "milestones": 0, "cam": 0, "failed": 0}


async def run_journeys(channels: dict[str, Channel], now: datetime, *,
                       catalog: JourneyCatalog | None = None) -> dict[str, int]:
    """Plan and queue what is due now: new steps (one a day per member, in working hours), nudges,
    milestone messages and completion notes to CAMs; the outbox sends them. Safe to run on every
    replica at once.

    Returns messages handled by kind: steps, nudges, milestones, cam (queued) and failed.
    """
    counts = _counts()
    catalog = _catalog_or_none(catalog)
    if catalog is None:
        return counts
    await _recover_interrupted(now)
    await _plan(channels, catalog, now)
    await _send_pending(channels, catalog, now, counts)
    await _send_nudges(channels, catalog, now, counts)
    return counts


def _working(member: Member | dict, now: datetime) -> bool:
    get = member.get if isinstance(member, dict) else lambda name: getattr(member, name)
    moment = next_working_moment(now, get("timezone"), quiet_start=get("quiet_start_hour"),
                                 quiet_end=get("quiet_end_hour"))
    return moment <= now


def _local_day(moment: datetime, zone: str) -> date:
    return moment.astimezone(member_zone(zone)).date()


async def _plan(channels: dict[str, Channel], catalog: JourneyCatalog, now: datetime) -> None:
    """Create the pending rows for steps due now, and any milestone rows a sweep finds missing.

    A member Herald cannot reach (no account on a configured platform, or only accounts in
    workspaces Herald was removed from) gets no new step: their journey waits, and once they can
    be reached again the steps that failed because Herald was removed are sent first."""
    members = Member.filter(active=True, joined_at__lte=now)
    if catalog.enrol_joined_after is not None:
        members = members.filter(joined_at__gte=catalog.enrol_joined_after)
    rows = await members.order_by("id").values("id", "role", "timezone", "quiet_start_hour", "quiet_end_hour",
                                               "joined_at")
    accounts = await _chat_accounts(channels)
    unreachable = await unreachable_workspaces()
    for start in range(0, len(rows), 1000):
        chunk = rows[start:start + 1000]
        steps: dict[int, list[dict]] = defaultdict(list)
        for row in await JourneyStep.filter(member_id__in=[m["id"] for m in chunk]).values(
                "id", "member_id", "journey", "step_key", "position", "status", "error", "created_at", "sent_at", "done_at"):
            steps[row["member_id"]].append(row)
        for member in chunk:
            journey = catalog.for_role(member["role"])
            mine = steps.get(member["id"], [])
            await _plan_milestones(member["id"], journey, mine, catalog, now)
            places = accounts.get(member["id"], [])
            if not any(place not in unreachable for place in places):
                continue  # nobody to write to yet: the journey waits
            if not await _retry_removed_steps(member["id"], mine, places, now):
                await _plan_next_step(member, journey, mine, now)


async def _chat_accounts(channels: dict[str, Channel]) -> dict[int, list[tuple[str, str]]]:
    """Each member's accounts, as (platform, workspace), on the platforms Herald is configured for,
    but not those whose member removed Herald (Teams, `app_installs`): a step could only fail there."""
    found: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for member_id, platform, workspace in await PlatformAccount.filter(
            platform__in=list(channels), app_removed_at__isnull=True).values_list(
            "member_id", "platform", "workspace_external_id"):
        found[member_id].append((platform, workspace))
    return found


async def _retry_removed_steps(member_id: int, rows: list[dict], places: list[tuple[str, str]],
                               now: datetime) -> bool:
    """Steps that failed only because Herald had been removed from the member's workspace go back
    to pending now that the member can be reached (audit `journey.step_requeued`): they are part of
    the journey, not taken. Returns whether any did (they are today's step)."""
    retried = False
    for row in rows:
        if row["position"] < 1 or row["status"] != FAILED or not any(
                failed_because_removed(row["error"], platform, workspace) for platform, workspace in places):
            continue
        async with in_transaction() as conn:
            moved = await JourneyStep.filter(id=row["id"], status=FAILED).using_db(conn).update(status=PENDING, error="")
            if moved:
                await record([audit_event("journey.step_requeued", now=now, member_id=member_id, journey=row["journey"],
                                          step=row["step_key"],
                                          step_id=row["id"], reason="Herald can reach the member again")],
                             using_db=conn)
        retried = retried or bool(moved)
    return retried


async def _plan_next_step(member: dict, journey: Journey, rows: list[dict], now: datetime) -> None:
    today = _local_day(now, member["timezone"])
    for row in rows:
        if row["position"] < 1:
            continue
        if row["status"] == PENDING:
            return  # a step still waiting to go out holds the next one back
        if any(t is not None and _local_day(t, member["timezone"]) == today for t in (row["created_at"], row["sent_at"])):
            return  # trickle: one step a day
    have = {row["step_key"] for row in rows}
    step = next((s for s in journey.steps if s.key not in have), None)
    if step is None or member["joined_at"] + timedelta(days=step.after_days) > now or not _working(member, now):
        return
    survey = await journey_survey(step.key, step.survey, now=now) if step.survey is not None else None
    await _create_row(member["id"], journey.name, step.key, step.position, now, survey=survey)


async def _plan_milestones(member_id: int, journey: Journey, rows: list[dict], catalog: JourneyCatalog,
                           now: datetime) -> None:
    """Create the milestone row (the highest newly reached one only) and, on completion, the CAM
    note and the journey.completed event, once per journey: a member whose role changed is
    recognised again for the new journey (`_journey_key`). Idempotent: the unique key keeps each
    to one row."""
    done_keys = {r["step_key"] for r in rows if r["position"] >= 1 and r["done_at"] is not None}
    total = len(journey.steps)
    done = journey.done_count(done_keys)
    if not total or not done:
        return
    this_journey = [r for r in rows if r["journey"] == journey.name]
    top = max((milestone_percent(_milestone_label(r["step_key"])) or 0 for r in this_journey
               if _row_kind(r["step_key"]) == "milestone"), default=0)
    reached = [m for m in catalog.milestones if done * 100 >= m.percent * total and m.percent > top]
    if reached:
        milestone = max(reached, key=lambda m: m.percent)
        await _create_row(member_id, journey.name, _journey_key(milestone.key, journey, rows), 0, now)
    if done == total and not any(_row_kind(r["step_key"]) == "cam" for r in this_journey):
        await _create_row(member_id, journey.name, _journey_key(CAM_COMPLETE_KEY, journey, rows), 0, now, events=[
            audit_event("journey.completed", now=now, member_id=member_id, journey=journey.name, steps=total)])


def _journey_key(key: str, journey: Journey, rows: list[dict]) -> str:
    """The row key of a milestone or CAM note for `journey`: the plain key ("milestone:half",
    "cam:complete"), or, when the member already has that for an earlier journey (their role
    changed), the key with the journey's name after a colon ("cam:complete:support")."""
    return f"{key}:{journey.name}" if any(r["step_key"] == key for r in rows) else key


def _milestone_label(key: str) -> str:
    """"half" of "milestone:half" and of "milestone:half:support"."""
    return key[len(MILESTONE_PREFIX):].partition(":")[0]


async def _create_row(member_id: int, journey: str, key: str, position: int, now: datetime, *,
                      events: list | None = None, survey: Any = None) -> bool:
    """The row, and with a step that asks a survey the member's outbox row for it, in one transaction."""
    try:
        async with in_transaction() as conn:
            await JourneyStep.create(member_id=member_id, journey=journey, step_key=key, position=position,
                                     status=PENDING, created_at=now, using_db=conn)
            if survey is not None:
                events = [*(events or []), *await enqueue_journey_survey(survey, member_id, now=now, using_db=conn)]
            await record(events or [], using_db=conn)
    except IntegrityError:
        return False  # another replica (or an earlier run) created it
    return True


# ---- sending ----------------------------------------------------------------------------------

def _row_kind(key: str) -> str:
    if key.startswith(MILESTONE_PREFIX):
        return "milestone"
    if key == CAM_COMPLETE_KEY or key.startswith(CAM_COMPLETE_KEY + ":"):
        return "cam"
    return "step"


async def _send_pending(channels: dict[str, Channel], catalog: JourneyCatalog, now: datetime,
                        counts: dict[str, int], *, member_id: int | None = None) -> None:
    """Queue pending rows, oldest first, a page at a time (keyset on id) until SEND_BATCH are
    handled or every pending row has been looked at: rows that wait (a member outside working
    hours, or no longer active) must not hide the rows behind them."""
    query = JourneyStep.filter(status=PENDING)
    if member_id is not None:
        query = query.filter(member_id=member_id)
    sent, after = 0, 0
    while sent < SEND_BATCH:
        page = await query.filter(id__gt=after).order_by("id").limit(PENDING_PAGE).select_related(
            "member__organisation")
        for row in page:
            if sent >= SEND_BATCH:
                break
            sent += await _send_row(row, channels, catalog, now, counts, member_acting=member_id is not None)
        if len(page) < PENDING_PAGE:
            break
        after = page[-1].id


async def _send_row(row: JourneyStep, channels: dict[str, Channel], catalog: JourneyCatalog, now: datetime,
                    counts: dict[str, int], *, member_acting: bool = False) -> int:
    """Render the row's message and queue it for the outbox, in the transaction that claims the
    row (pending -> sending). Returns 1 when the row was handled (queued or failed).
    `member_acting`: the member has just pressed Done, so a milestone reached answers them at once,
    whatever the hour (queued as a person waiting, which the outbox does not hold for the member's
    hours); otherwise (the tick) it waits for their working hours, as steps do."""
    member: Member = row.member
    kind = _row_kind(row.step_key)
    journey = catalog.journeys.get(row.journey) or catalog.for_role(member.role)
    if kind == "step":
        step = catalog.find_step(row.step_key, row.journey)
        if step is None or catalog.for_role(member.role).step(row.step_key) is None:
            problem = ("the step is no longer in the journeys file" if step is None
                       else "the step is not in the member's journey any more (their role changed)")
            await _settle(row, kind, now, failed=problem, expect=PENDING)
            counts["failed"] += 1
            return 0
        if not member.active or not _working(member, now):
            return 0  # a retry waiting for working hours (or a member who left)
        message = step_message(row, step, journey)
    elif kind == "milestone":
        milestone = next((m for m in catalog.milestones if m.at == _milestone_label(row.step_key)), None)
        if milestone is None:
            await _settle(row, kind, now, failed="the milestone is no longer in the journeys file", expect=PENDING)
            counts["failed"] += 1
            return 0
        if not member.active or not (member_acting or _working(member, now)):
            return 0  # found by the tick (e.g. milestones added to the journeys file) at night
        message = await milestone_message(member, milestone, journey)

    extra: dict[str, Any] = {}
    if kind == "cam":
        cam = await cam_for_organisation(member.organisation)
        target = await staff_target(cam, channels) if cam is not None else None
        message = await completion_message(member, journey, platform=target.platform if target else "")
        problem = NO_ACTIVE_CAM if cam is None else NO_CAM_ACCOUNT
        extra = {"cam": cam.email if cam else None}
        purpose, staff_id, member_id = MessagePurpose.JOURNEY_CAM, cam.id if cam else None, None
    else:
        account, removed = await _member_target(member.id, channels, prefer=row.platform or member.preferred_platform)
        if removed:
            return 0  # Herald was removed from the member's workspace: the message waits for it to come back
        target = Target.of_account(account, display_name=member.name) if account else None
        problem = "the member has no Slack or Teams account Herald can reach"
        purpose, staff_id, member_id = MessagePurpose.JOURNEY_STEP, None, member.id
    if target is None:
        await _settle(row, kind, now, failed=problem, expect=PENDING, **extra)
        counts["failed"] += 1
        return 1
    async with in_transaction() as conn:
        claimed = await JourneyStep.filter(id=row.id, status=PENDING).using_db(conn).update(
            status=SENDING, sent_at=now, platform=target.platform)
        if not claimed:
            return 0  # another replica has it
        await enqueue(key=_message_key(purpose, row), purpose=purpose, reference=row.id, target=target,
                      message=message, now=now, member_id=member_id, staff_id=staff_id, using_db=conn,
                      priority=Priority.PERSON_WAITING if member_acting else None)
    counts[{"step": "steps", "milestone": "milestones", "cam": "cam"}[kind]] += 1
    return 1


@addressed_by(MessagePurpose.JOURNEY_CAM)
async def _cam_note_addressee(message: OutboundMessage, channels: dict[str, Channel],
                              now: datetime) -> ClaimVerdict | None:
    """When the outbox takes the note that a member completed their journey: None while it is for
    the organisation's CAM; else it goes to whoever is the CAM now (the command it names in their
    platform's form), or fails with why (`journey.cam_readdressed`, then the usual events). The
    rule is the organisation's CAM only (`cam_for_organisation`): unlike an escalation, a note
    about a member's progress has no author to fall back on."""
    row = await JourneyStep.get_or_none(id=message.reference).select_related("member__organisation")
    if row is None:
        return None
    organisation: Organisation = row.member.organisation
    now_for = await staff_addressee(message, await cam_for_organisation(organisation), channels,
                                    nobody=NO_ACTIVE_CAM, no_account=NO_CAM_ACCOUNT)
    if now_for is None:
        return None
    cam, before, target = now_for.staff, now_for.before, now_for.target

    async def record_it() -> None:
        await record([audit_event("journey.cam_readdressed", now=now, member_id=row.member_id,  # type: ignore[attr-defined]
                                  journey=row.journey, step=row.step_key, step_id=row.id,
                                  from_cam=before.email if before is not None else None,
                                  cam=cam.email if cam is not None else None,
                                  reason=now_for.why("the partner's CAM changed or is no longer active staff"))])
    reworded = _hinted_for(message, organisation, target.platform) if target is not None else None
    return now_for.readdress(record_it, reworded)


def _hinted_for(message: OutboundMessage, organisation: Organisation, platform: str) -> DirectMessage:
    """The queued CAM note with its `progress` command in the form typed on `platform`."""
    queued = message_from_json(message.message)
    words = f"progress {organisation.external_id}"
    old, new = command_hint(message.platform, words), command_hint(platform, words)
    return replace(queued, lines=tuple(line.replace(old, new, 1) if line.startswith(old) else line
                                       for line in queued.lines))


def _message_key(purpose: MessagePurpose, row: JourneyStep) -> str:
    """The outbox key of the row's message. A row sent before (`sent_at`: a step retried after
    Herald was removed from the member's workspace) needs a new one: the failed message keeps its own."""
    key = f"{purpose.value}:{row.id}"
    return key if row.sent_at is None else f"{key}:again:{row.sent_at.astimezone(UTC):%Y%m%dT%H%M%S.%f}"


@on_result(MessagePurpose.JOURNEY_STEP)
@on_result(MessagePurpose.JOURNEY_CAM)
async def _message_result(message: OutboundMessage, result: MessageResult) -> None:
    """The outbox's outcome for a step, milestone or CAM note (the journey row's status and event)."""
    row = await JourneyStep.get_or_none(id=message.reference)
    if row is None:
        return
    kind = _row_kind(row.step_key)
    extra: dict[str, Any] = {}
    if kind == "cam":
        staff = await Staff.get_or_none(id=message.staff_id) if message.staff_id else None  # type: ignore[attr-defined]
        extra = {"cam": staff.email if staff else None}
    if result.kind is ResultKind.INTERRUPTED:
        await _interrupted(row, result.now)
    elif result.kind is ResultKind.CANCELLED and kind != "cam":
        await _wait_for_member(row, kind, result.now, result.reason)
    elif result.sent:
        await _settle(row, kind, result.now, ref=result.ref, platform=message.platform, **extra)
    else:
        await _settle(row, kind, result.now, failed=result.reason or "the platform refused the message",
                      platform=message.platform, **extra)


_EVENTS = {"step": ("journey.step_sent", "journey.step_failed"),
           "milestone": ("journey.milestone_sent", "journey.milestone_failed"),
           "cam": ("journey.cam_told", "journey.cam_not_told")}


async def _settle(row: JourneyStep, kind: str, now: datetime, *, ref: MessageRef | None = None, failed: str = "",
                  platform: str = "", expect: str = SENDING, **extra: Any) -> None:
    """Store a send's result and its audit event in one transaction."""
    async with in_transaction() as conn:
        if ref is not None:
            values = dict(platform=platform, channel_id=ref.channel_id, message_id=ref.message_id, sent_at=now, error="")
            moved = await JourneyStep.filter(id=row.id, status=expect).using_db(conn).update(status=SENT, **values)
            if not moved:  # marked done while we were sending: keep `done`, store where it went
                await JourneyStep.filter(id=row.id).using_db(conn).update(**values)
        else:
            moved = await JourneyStep.filter(id=row.id, status=expect).using_db(conn).update(
                status=FAILED, platform=platform, error=failed[:2000])
            if not moved:
                return
        name = _EVENTS[kind][0 if ref is not None else 1]
        await record([audit_event(name, now=now, member_id=row.member_id, journey=row.journey,  # type: ignore[attr-defined]
                                  step=row.step_key, step_id=row.id, platform=platform or None,
                                  channel=ref.channel_id if ref else None, message_id=ref.message_id if ref else None,
                                  reason=failed or None, **extra)], using_db=conn)
    if ref is not None:
        metrics.journey_message_sent(kind)


async def _wait_for_member(row: JourneyStep, kind: str, now: datetime, reason: str) -> None:
    """The outbox did not send the row's message: the member is no longer active. The row goes
    back to pending, where the tick passes over inactive members, so a member the directory
    brings back still gets it (audit `journey.step_cancelled` / `journey.milestone_cancelled`)."""
    async with in_transaction() as conn:
        moved = await JourneyStep.filter(id=row.id, status=SENDING).using_db(conn).update(status=PENDING, error=reason)
        if moved:
            await record([audit_event(f"journey.{kind}_cancelled", now=now, member_id=row.member_id,  # type: ignore[attr-defined]
                                      journey=row.journey, step=row.step_key, step_id=row.id, reason=reason)],
                         using_db=conn)


async def _recover_interrupted(now: datetime) -> None:
    """Rows claimed for a direct send before Herald queued journey messages in the outbox (an
    upgrade mid-send): `sending` without an outbound message."""
    stale = await JourneyStep.filter(status=SENDING, sent_at__lt=now - LEASE).values_list("id", flat=True)
    if not stale:
        return
    queued_ids = set(await OutboundMessage.filter(reference__in=stale, purpose__in=[
        MessagePurpose.JOURNEY_STEP.value, MessagePurpose.JOURNEY_CAM.value]).values_list("reference", flat=True))
    for row in await JourneyStep.filter(id__in=[i for i in stale if i not in queued_ids]):
        await _interrupted(row, now)


async def _interrupted(row: JourneyStep, now: datetime) -> None:
    """A send that may or may not have gone out: never send it again. A step counts as sent (its
    nudge follows up); a milestone or CAM note is recorded as failed."""
    kind = _row_kind(row.step_key)
    reason = "Herald stopped while sending this; it may not have arrived and is not sent again"
    async with in_transaction() as conn:
        if kind == "step":
            moved = await JourneyStep.filter(id=row.id, status=SENDING).using_db(conn).update(status=SENT, error=reason)
        else:
            moved = await JourneyStep.filter(id=row.id, status=SENDING).using_db(conn).update(status=FAILED, error=reason)
        if moved:
            await record([audit_event("journey.send_interrupted", now=now, member_id=row.member_id,  # type: ignore[attr-defined]
                                      journey=row.journey, step=row.step_key, step_id=row.id)], using_db=conn)


async def _member_target(member_id: int, channels: dict[str, Channel], *,
                         prefer: str = "") -> tuple[PlatformAccount | None, bool]:
    """The member's account to write to, among the platforms Herald is configured for
    (`reach.choose_account`), and whether Herald cannot reach it: it is in a workspace Herald was
    removed from, or the member removed Herald (Teams). Then every account is (the choice puts
    those last): the message can only fail there, so it waits for the reconnection or the install."""
    accounts = [a for a in await PlatformAccount.filter(member_id=member_id).order_by("id") if a.platform in channels]
    unreachable = await unreachable_workspaces() if accounts else frozenset()
    account = choose_account(accounts, preferred=prefer, unreachable=unreachable)
    return account, account is not None and ((account.platform, account.workspace_external_id) in unreachable
                                             or account.app_removed_at is not None)


# ---- nudges -----------------------------------------------------------------------------------

async def _send_nudges(channels: dict[str, Channel], catalog: JourneyCatalog, now: datetime,
                       counts: dict[str, int]) -> None:
    after = timedelta(days=catalog.nudge_after_days)
    not_paused = Q(member__organisation__paused_at__isnull=True) | Q(member__organisation__paused_until__lte=now)
    due = await JourneyStep.filter(not_paused, position__gte=1, status=SENT, done_at__isnull=True,
                                   nudged_at__isnull=True, sent_at__lte=now - after, member__active=True,
                                   ).select_related("member__organisation").order_by("sent_at", "id")
    if not due:
        return
    recent = await JourneyStep.filter(member_id__in=list({r.member_id for r in due}),  # type: ignore[attr-defined]
                                      nudged_at__gte=now - timedelta(days=2)).values("member_id", "nudged_at")
    zones = {r.member_id: r.member.timezone for r in due}  # type: ignore[attr-defined]
    nudged_days = {(r["member_id"], _local_day(r["nudged_at"], zones[r["member_id"]])) for r in recent}
    for row in due:
        member: Member = row.member
        today = _local_day(now, member.timezone)
        if (member.id, today) in nudged_days or is_paused(member.organisation, now) or not _working(member, now):
            continue
        step = catalog.for_role(member.role).step(row.step_key)
        if step is None:
            continue  # not in the member's journey (any more: their role changed): it counts for nothing
        account, removed = await _member_target(member.id, channels, prefer=row.platform or member.preferred_platform)
        if removed:
            continue  # Herald was removed from the member's workspace: the nudge waits for it to come back
        async with in_transaction() as conn:  # the claim (one nudge per step) and the message together
            claimed = await JourneyStep.filter(id=row.id, nudged_at__isnull=True, done_at__isnull=True).using_db(
                conn).update(nudged_at=now)
            if claimed and account is not None:
                await enqueue(key=f"{MessagePurpose.JOURNEY_NUDGE.value}:{row.id}", purpose=MessagePurpose.JOURNEY_NUDGE,
                              reference=row.id, target=Target.of_account(account, display_name=member.name),
                              message=nudge_message(row, step), now=now, member_id=member.id, using_db=conn)
        if not claimed:
            continue
        nudged_days.add((member.id, today))
        if account is None:
            await _nudge_result(row, now, failed="the member has no Slack or Teams account Herald can reach")
            counts["failed"] += 1
            continue
        counts["nudges"] += 1


@on_result(MessagePurpose.JOURNEY_NUDGE)
async def _nudge_sent(message: OutboundMessage, result: MessageResult) -> None:
    """A nudge stays claimed (`nudged_at`) whatever happened: at most one per step."""
    row = await JourneyStep.get_or_none(id=message.reference)
    if row is None:
        return
    if result.kind is ResultKind.INTERRUPTED:
        log.warning("nudge for journey row %s was interrupted; it is not sent again", row.id)
        return
    ref = (result.ref.channel_id, result.ref.message_id) if result.ref is not None else None
    await _nudge_result(row, result.now, platform=message.platform, ref=ref,
                        failed="" if ref else result.reason or "refused")


async def _nudge_result(row: JourneyStep, now: datetime, *, platform: str = "", ref: tuple[str, str] | None = None,
                        failed: str = "") -> None:
    async with in_transaction() as conn:
        await record([audit_event("journey.nudged" if ref else "journey.nudge_failed", now=now,
                                  member_id=row.member_id, journey=row.journey, step=row.step_key,  # type: ignore[attr-defined]
                                  step_id=row.id, platform=platform or None, channel=ref[0] if ref else None,
                                  message_id=ref[1] if ref else None, reason=failed or None)], using_db=conn)
    if ref:
        metrics.journey_message_sent("nudge")


# ---- messages ---------------------------------------------------------------------------------

def done_button(row: JourneyStep) -> Button:
    return Button("Done", DONE_ACTION, str(row.id), "primary")


def step_message(row: JourneyStep, step: Step, journey: Journey) -> DirectMessage:
    total = len(journey.steps)
    position = row.position if row.position >= 1 else step.position
    lines = [step.message]
    if step.link:
        lines.append(f"Start here: {step.link}")
    lines.append("Press Done when you have finished it.")
    return DirectMessage(title=f"Onboarding {position}/{total}: {step.title}"[:150], lines=tuple(lines),
                         buttons=(done_button(row),))


def done_message(row: JourneyStep, catalog: JourneyCatalog | None = None) -> DirectMessage:
    """What a step's message, or its nudge, shows once the member pressed Done: the step's title
    (not its internal key) and no button. The same however often Done is pressed."""
    journeys = _catalog_or_none(catalog)
    step = journeys.find_step(row.step_key, row.journey) if journeys is not None else None
    return DirectMessage(title=f"Done: {step.title if step else row.step_key}"[:150],
                         lines=("You marked this onboarding step done. Thank you!",))


def nudge_message(row: JourneyStep, step: Step) -> DirectMessage:
    lines = [f"A few days ago I sent you the onboarding step \"{step.title}\"; it is still open."]
    if step.link:
        lines.append(f"Start here: {step.link}")
    lines.append("Already done? Press Done and I'll stop asking.")
    return DirectMessage(title=f"Reminder: {step.title}"[:150], lines=tuple(lines), buttons=(done_button(row),))


async def _done_count(member_id: int, journey: Journey) -> int:
    done = await JourneyStep.filter(member_id=member_id, done_at__isnull=False, position__gte=1).values_list(
        "step_key", flat=True)
    return journey.done_count(set(done))


async def milestone_message(member: Member, milestone: Milestone, journey: Journey) -> DirectMessage:
    done, total = await _done_count(member.id, journey), len(journey.steps)
    title = {"half": "Onboarding: halfway there", "complete": "Onboarding complete"}.get(
        milestone.at, f"Onboarding: {milestone.percent}% done")
    return DirectMessage(title=title, lines=(milestone.message, f"{done} of {total} steps done."))


async def completion_message(member: Member, journey: Journey, *, platform: str = "") -> DirectMessage:
    """The CAM's note; `platform` is the CAM's, so the command it names is one they can type there."""
    organisation: Organisation = member.organisation
    name = member.name or member.email
    joined = member.joined_at.astimezone(UTC).strftime("%Y-%m-%d")
    return DirectMessage(
        title=f"{name} completed onboarding"[:150],
        lines=(f"{name} <{member.email}> ({member.role}) at {organisation.name} has done all "
               f"{len(journey.steps)} steps of the {journey.name} onboarding journey.",
               f"Joined Herald on {joined}.",
               f"{command_hint(platform, f'progress {organisation.external_id}')} shows everyone at "
               f"{organisation.name}."))


# ---- the Done button --------------------------------------------------------------------------

async def complete_step(step_id: int, *, platform: str, workspace_id: str, user_id: str, now: datetime,
                        channels: dict[str, Channel] | None = None,
                        catalog: JourneyCatalog | None = None) -> JourneyStep:
    """The member pressed **Done** on a step (or its nudge). Only the member the step belongs to
    may (PermissionDenied otherwise); pressing it again changes nothing.

    Reaching a milestone or completing the journey plans the recognition message and the CAM's
    note; they are queued on the next `run_journeys`, or right away when `channels` is given (the
    caller then wakes the outbox).
    """
    row = await JourneyStep.get_or_none(id=step_id)
    if row is None or row.position < 1:
        raise NotFound("That onboarding step no longer exists.")
    if platform == "teams":  # Teams ids arrive in either case; they are stored lower-case
        workspace_id, user_id = workspace_id.lower(), user_id.lower()
    owner = await PlatformAccount.filter(platform=platform, workspace_external_id=workspace_id, user_id=user_id,
                                         member_id=row.member_id).exists()  # type: ignore[attr-defined]
    if not owner:
        raise PermissionDenied("This onboarding step belongs to someone else.")
    if row.done_at is not None:
        return row
    async with in_transaction() as conn:
        changed = await JourneyStep.filter(id=row.id, done_at__isnull=True).using_db(conn).update(status=DONE, done_at=now)
        if changed:
            await record([audit_event("journey.step_done", now=now, actor=f"{platform}:{user_id}",
                                      member_id=row.member_id, journey=row.journey, step=row.step_key,  # type: ignore[attr-defined]
                                      step_id=row.id)], using_db=conn)
    if changed:
        journeys = _catalog_or_none(catalog)
        member = await Member.get(id=row.member_id)  # type: ignore[attr-defined]
        if journeys is not None:
            rows = await JourneyStep.filter(member_id=member.id).values("journey", "step_key", "position", "done_at")
            await _plan_milestones(member.id, journeys.for_role(member.role), rows, journeys, now)
            if channels:
                await _send_pending(channels, journeys, now, _counts(), member_id=member.id)
    return await JourneyStep.get(id=row.id)


# ---- progress for CAMs ------------------------------------------------------------------------

async def progress(staff: Staff | None, org_id: str | None = None, *,
                   catalog: JourneyCatalog | None = None) -> list[dict[str, Any]]:
    """Onboarding progress per member: a CAM sees their own organisations, an admin every one.

    Rows (by organisation, then member): organisation (name), org_id, member (name), email, role,
    journey, done, total, last_step (title of the latest step sent, or None), last_step_status,
    last_sent_at, completed_at (None until every step is done), enrolled (False: left out by
    `enrol_joined_after`, so never sent a step), reachable (False: no chat account, or only in
    workspaces Herald was removed from or accounts the member removed Herald from, so their steps wait).
    """
    if staff is None or not staff.active or staff.role not in (StaffRole.CAM.value, StaffRole.ADMIN.value):
        raise PermissionDenied("Only CAMs and admins can see onboarding progress.")
    in_scope = await _progress_scope(staff, org_id)
    try:
        journeys = catalog or load_journeys()
    except JourneyConfigError as exc:
        raise UserError(f"onboarding journeys are not available: {exc}") from None
    organisations = await in_scope.order_by("name")
    # the members are selected in the database, not passed as ids: a directory's worth of ids
    # is more parameters than PostgreSQL's driver takes (32,767)
    in_progress = Member.filter(organisation_id__in=Subquery(in_scope.values("id")), active=True)
    by_org: dict[int, list[Member]] = defaultdict(list)
    for member in await in_progress.order_by("name", "email"):
        by_org[member.organisation_id].append(member)  # type: ignore[attr-defined]
    member_ids = Subquery(in_progress.values("id"))
    steps: dict[int, list[JourneyStep]] = defaultdict(list)
    for step in await JourneyStep.filter(member_id__in=member_ids, position__gte=1):
        steps[step.member_id].append(step)  # type: ignore[attr-defined]
    reachable = await _reachable(member_ids)
    result = []
    for organisation in organisations:
        for member in by_org.get(organisation.id, []):
            journey = journeys.for_role(member.role)
            mine = steps.get(member.id, [])
            done_at = {s.step_key: s.done_at for s in mine if s.done_at is not None}
            done = journey.done_count(done_at.keys())
            last = max(mine, key=lambda s: (s.sent_at or s.created_at, s.id), default=None)
            last_step = journeys.find_step(last.step_key, last.journey) if last else None
            complete = done == len(journey.steps)
            result.append({
                "organisation": organisation.name, "org_id": organisation.external_id,
                "member": member.name or member.email, "email": member.email, "role": member.role,
                "journey": journey.name, "done": done, "total": len(journey.steps),
                "last_step": (last_step.title if last_step else last.step_key) if last else None,
                "last_step_status": last.status if last else None,
                "last_sent_at": last.sent_at if last else None,
                "completed_at": max(done_at[s.key] for s in journey.steps) if complete else None,
                "enrolled": journeys.enrolled(member),
                "reachable": member.id in reachable,
            })
    return result


async def _progress_scope(staff: Staff, org_id: str | None) -> QuerySet[Organisation]:
    """The organisations whose progress `staff` (a CAM or an admin) asked for: `org_id`'s, else
    every one for an admin and a CAM's own."""
    if org_id:
        organisation = await Organisation.get_or_none(external_id=org_id.strip())
        if organisation is None:
            raise NotFound(f"no partner organisation has the id '{org_id.strip()}'")
        if staff.role != StaffRole.ADMIN.value and not named_as_cam(staff, organisation.cam_email):
            raise PermissionDenied(f"Only {organisation.name}'s CAM or an admin can see its onboarding progress.")
        return Organisation.filter(id=organisation.id)
    if staff.role == StaffRole.ADMIN.value:
        return Organisation.all()
    return Organisation.filter(cam_email__iexact=staff.email.strip())


async def _reachable(member_ids: Subquery) -> set[int]:
    """The members with a chat account in a workspace Herald has not been removed from, and that
    has Herald installed (Teams)."""
    unreachable = await unreachable_workspaces()
    return {member_id for member_id, platform, workspace in await PlatformAccount.filter(
        member_id__in=member_ids, app_removed_at__isnull=True).values_list(
        "member_id", "platform", "workspace_external_id")
        if (platform, workspace) not in unreachable}

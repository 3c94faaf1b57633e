"""Pulse surveys in the core: sent through the outbox, one-click answers, changed answers kept as
history and audited, anonymity (what is stored, what results show), NPS, closing."""

from __future__ import annotations

import asyncio
import contextvars
import csv
import io
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.channels.slack_blocks import notice_blocks
from bot.common.errors import PermissionDenied, UserError
from bot.core.commands.parser import SurveyCommand, parse_command
from bot.core.compliance.verify import verify_chain
from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.core.notices.revisions import edit_notice, retract_notice
from bot.core.surveys import answers
from bot.core.surveys.answers import close_due_surveys, close_survey, comment_on_survey
from bot.core.surveys.creating import create_survey_draft
from bot.core.compliance.reports import _FORMULA_START as FORMULA_START
from bot.core.surveys.results import OTHER, _pooled_cells, results_csv, summarise, survey_results
from bot.core.surveys.spec import SurveySpec, build_spec
from tortoise import connections

from storage.models import AuditEvent, Delivery, Member, Notice, Staff, Survey, SurveyAnswer, SurveyAnswerChange
from tests.support import TEAM, directory_csv
from tests.survey_support import SurveyRig, members


def _buttons(blocks: list[dict]) -> list[dict]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


# ---- the survey definition ---------------------------------------------------------------------

def test_survey_spec_validation() -> None:
    assert build_spec("How satisfied?", ["scale:1-5"]).choices() == [(v, str(v)) for v in range(1, 6)]
    assert build_spec("NPS?", ["scale:0-10"]).is_nps
    assert build_spec("Format?", ["Webinar", "Workshop"]).choices() == [(0, "Webinar"), (1, "Workshop")]
    for options, message in ((["Only one"], "2 to 5 options"), (["a", "b", "c", "d", "e", "f"], "got 6"),
                             (["scale:1-7"], "not a scale"), (["scale:1-5", "Yes"], "not both"),
                             (["Yes", "yes"], "same text")):
        with pytest.raises(UserError, match=message):
            build_spec("Q?", options)
    with pytest.raises(UserError, match="keep it under 150"):
        build_spec("x" * 151, ["scale:1-5"])


def test_inline_survey_syntax() -> None:
    command = parse_command("survey need-to-know support tier:gold anonymous closes:2026-12-01 | "
                            "How satisfied are you with onboarding? | scale:1-5 | follow-up: What could be better?")
    assert isinstance(command, SurveyCommand)
    assert (command.topic, command.audience, command.anonymous) == ("support", "tier:gold", True)
    assert command.answers == ("scale:1-5",) and command.follow_up == "What could be better?"
    assert command.closes_at is not None and command.closes_at.isoformat().startswith("2026-12-01T23:59")
    options = parse_command("survey announcements all | Which format? | Webinar | Workshop | E-learning")
    assert isinstance(options, SurveyCommand) and options.answers == ("Webinar", "Workshop", "E-learning")
    with pytest.raises(UserError, match="topic and the audience"):
        parse_command("survey support | Q? | scale:1-5")
    with pytest.raises(UserError, match="^close date '1-Dec' is not an ISO-8601 date"):  # not "deadline"
        parse_command("survey support all closes:1-Dec | Q? | scale:1-5")


def test_nps_and_distribution() -> None:
    spec = SurveySpec("NPS?", scale=(0, 10))
    summary = summarise(spec, Counter([10, 9, 9, 8, 7, 6, 0, 10]))
    assert summary["nps"] == {"score": 25, "promoters": 4, "passives": 2, "detractors": 2}  # (4 - 2) / 8
    assert summary["mean"] == 7.38
    assert [c["count"] for c in summary["distribution"]][9:] == [2, 2]


def test_small_cells_are_pooled_so_nothing_can_be_subtracted() -> None:
    answered = Counter({("a", "sales"): 7, ("a", "support"): 6, ("b", "sales"): 3, ("c", "sales"): 1})
    recipients = answered + Counter({("d", "sales"): 1})  # d: delivered, never answered: a cell of its own, pooled
    # b and c (4 answers together) would be the total minus the rest: a/support (the smallest) joins
    assert _pooled_cells(recipients, answered) == {("b", "sales"), ("c", "sales"), ("d", "sales"), ("a", "support")}
    lone = Counter({cell: n for cell, n in answered.items() if cell in {("a", "sales"), ("c", "sales")}})
    # one small cell next to one big one: both pooled, or the big one would give the small one away
    assert _pooled_cells(Counter(), lone) == {("a", "sales"), ("c", "sales")}


async def test_anonymous_breakdowns_cannot_be_subtracted_across_dimensions(srig: SurveyRig) -> None:
    """Region amer minus organisation Bolt would be Dash, a one-person partner, if each breakdown hid
    its small segments on its own."""
    extra = directory_csv([
        f"bolt,Bolt Supply,silver,amer,us,security,large,reseller,cam@vendor.example,m5@bolt.example,Member UBOLT5,"
        f"sales,UTC,en,{TEAM},UBOLT5,,",
        f"dash,Dash Ltd,silver,amer,us,security,small,reseller,cam@vendor.example,m1@dash.example,Member UDASH1,"
        f"sales,UTC,en,{TEAM},UDASH1,,"])
    assert not (await import_directory(extra, now=srig.clock.now(), actor="test")).rejected
    for user in ("UBOLT5", "UDASH1"):
        srig.fake.add_user(TEAM, user)
    await Member.filter(organisation__external_id__in=["acme", "bolt"]).update(role="sales")
    survey_id = await srig.survey("announcements all anonymous | How useful is Herald? | scale:1-5")
    await srig.herald.outbox.drain()
    for n in range(1, 6):
        await srig.answer(survey_id, f"UACME{n}", 5)
        await srig.answer(survey_id, f"UBOLT{n}", 5)
    await srig.answer(survey_id, "UDASH1", 1)  # the lone Dash member is unhappy

    results = await survey_results(survey_id, None, operator=True)
    rows = {(dim, r["segment"]): r for dim, found in results["breakdowns"].items() for r in found}
    assert rows[("organisation", "Bolt Supply (bolt)")]["answered"] == 5
    assert rows[("region", "amer")]["answered"] == 5  # Bolt's: Dash's answer is in the pool only
    assert all(r["answered"] >= 5 for r in rows.values() if r["answered"])
    others = {dim: rows[(dim, OTHER)]["answered"] for dim in results["breakdowns"] if (dim, OTHER) in rows}
    assert set(others.values()) == {6} and len(others) == 4  # the same pool in every breakdown


async def _rows_fetched(read: Callable[[], Awaitable[Any]]) -> int:
    """How many rows the database returned to `read` (every statement on the default connection)."""
    client = connections.get("default")
    fetched = 0

    def counting(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(*args: Any) -> Any:
            nonlocal fetched
            result = await method(*args)
            rows = result[1] if isinstance(result, tuple) else result  # execute_query: (count, rows)
            fetched += len(rows)
            return result
        return run

    originals = client.execute_query, client.execute_query_dict
    client.execute_query, client.execute_query_dict = counting(originals[0]), counting(originals[1])
    try:
        await read()
    finally:
        client.execute_query, client.execute_query_dict = originals
    return fetched


async def test_results_are_counted_by_the_database_not_read_answer_by_answer(srig: SurveyRig) -> None:
    """A survey to 100,000 members: its results read one row per segment and answer value, not one
    per answer. Four more answers in the same segments, with the same value, read no more rows."""
    for text in ("announcements all anonymous | How useful? | scale:1-5 | follow-up: Why?",
                 "announcements all | How useful? | scale:1-5 | follow-up: Why?"):
        survey_id = await srig.survey(text)
        await srig.herald.outbox.drain()
        anonymous = "anonymous" in text

        async def results() -> dict:
            return await (survey_results(survey_id, None, operator=True) if anonymous else
                          survey_results(survey_id, None, operator=True, answers_listed=0))

        for user in ("UACME1", "UACME2", "UACME3", "UBOLT1", "UBOLT2", "UBOLT3"):  # each org's three roles
            await srig.answer(survey_id, user, 4, comment="ok" if user == "UACME1" else None)
        six = await _rows_fetched(results)
        for user in ("UACME4", "UACME5", "UACME6", "UBOLT4"):  # the same organisations and roles
            await srig.answer(survey_id, user, 4)
        ten = await _rows_fetched(results)
        assert ten == six, f"{'anonymous' if anonymous else 'named'}: {six} rows read for 6 answers, {ten} for 10"
        found = await results()
        assert found["total"]["answered"] == 10 and found["total"]["distribution"][3]["count"] == 10
        assert found["total"]["mean"] == 4.0 and len(found["comments"]) == 1
        assert found["answers"] == (None if anonymous else [])
        assert len((await survey_results(survey_id, None, operator=True))["answers"] or []) == (0 if anonymous else 10)


# ---- sending and answering ---------------------------------------------------------------------

async def test_survey_goes_through_the_outbox_and_answers_can_change(srig: SurveyRig) -> None:
    survey_id = await srig.survey("announcements org:acme | Which format do you prefer? | Webinar | "
                                  "Workshop <!channel> | E-learning | follow-up: Anything else?")
    assert await Delivery.filter(notice_id=survey_id).count() == 6  # written before anything is sent
    await srig.herald.outbox.drain()
    posts = srig.fake.calls_to("chat.postMessage")
    assert len(posts) == 6
    blocks = posts[0].args["blocks"]
    labels = [b["text"]["text"] for b in _buttons(blocks) if b["action_id"].startswith("herald_survey_answer")]
    assert labels == ["Webinar", "Workshop <!channel>", "E-learning"]  # plain_text: Slack never pings from it
    assert posts[0].args["text"] == "[Survey] Which format do you prefer?"
    assert "Anything else?" in str(blocks)

    first = await srig.answer(survey_id, "UACME1", 1)
    again = await srig.answer(survey_id, "UACME1", 1)  # a double click
    changed = await srig.answer(survey_id, "UACME1", 2)
    assert first.recorded and first.first and not again.recorded and changed.recorded and not changed.first
    answer = await SurveyAnswer.get(survey__notice_id=survey_id)
    assert (answer.value, answer.changes) == (2, 1) and answer.member_id is not None  # type: ignore[attr-defined]
    history = await SurveyAnswerChange.filter(survey_id=answer.survey_id).order_by("id").values_list(  # type: ignore[attr-defined]
        "value", flat=True)
    assert history == [1, 2]
    kinds = await AuditEvent.filter(notice_id=survey_id, kind__startswith="survey.").order_by("seq").values_list(
        "kind", flat=True)
    assert kinds == ["survey.answered", "survey.answer_changed"]
    commented = await comment_on_survey(survey_id, "More <b>demos</b>", platform="slack", workspace_id=TEAM,
                                        user_id="UACME1", now=srig.clock.now())
    assert commented.comment == "More <b>demos</b>" and commented.value == 2
    redrawn = notice_blocks(commented.view(srig.herald.catalog, now=srig.clock.now()))
    assert "Your comment: More &lt;b&gt;demos&lt;/b&gt;" in str(redrawn)  # escaped for Slack
    chosen = [b for b in _buttons(redrawn) if b.get("style") == "primary"]
    assert [b["text"]["text"] for b in chosen] == ["E-learning"]
    assert (await verify_chain()).ok

    with pytest.raises(PermissionDenied, match="not sent to you"):
        await srig.answer(survey_id, "UBOLT1", 0)  # bolt was not in the audience
    with pytest.raises(UserError, match="not one of"):
        await srig.answer(survey_id, "UACME2", 7)


async def test_adding_a_comment_is_not_counted_or_audited_as_a_changed_answer(srig: SurveyRig) -> None:
    """A member who answers Yes and then writes the follow-up comment (in Slack always two steps:
    the button, then the modal) has not changed their answer: it was counted as one (`changes: 1`,
    "changed answers: 1") and audited as `survey.answer_changed` with previous = value. The
    comment is its own event, `survey.commented`; changing the answer later still counts."""
    survey_id = await srig.survey("announcements org:acme | Useful? | Yes | No | follow-up: Why?")
    await srig.herald.outbox.drain()
    await srig.answer(survey_id, "UACME1", 0)
    commented = await comment_on_survey(survey_id, "The recall notices are clear", platform="slack",
                                        workspace_id=TEAM, user_id="UACME1", now=srig.clock.now())
    assert commented.recorded and not commented.first

    async def counted() -> tuple[int, int, list[str]]:
        results = await survey_results(survey_id, None, operator=True)
        kinds = await AuditEvent.filter(notice_id=survey_id, kind__startswith="survey.").order_by(
            "seq").values_list("kind", flat=True)
        return results["total"]["changed_answers"], results["answers"][0]["changes"], kinds

    assert await counted() == (0, 0, ["survey.answered", "survey.commented"])
    event = await AuditEvent.get(notice_id=survey_id, kind="survey.commented")
    assert (event.data["value"], event.data["previous"], event.data["comment_chars"]) == (0, 0, 28)
    await srig.answer(survey_id, "UACME1", 1, comment="Too many")  # the answer changes, with a new comment
    assert await counted() == (1, 1, ["survey.answered", "survey.commented", "survey.answer_changed"])
    assert await SurveyAnswerChange.filter(survey__notice_id=survey_id).count() == 3  # every change kept


async def test_closing_stops_answers_and_redraws_the_messages(srig: SurveyRig) -> None:
    survey_id = await srig.survey("announcements org:bolt closes:2026-01-06 | Ready for Q1? | Yes | No")
    await srig.herald.outbox.drain()
    await srig.answer(survey_id, "UBOLT1", 0)
    srig.clock.advance(days=2)
    with pytest.raises(UserError, match="closed"):
        await srig.answer(survey_id, "UBOLT2", 0)  # the date passed: refused before the tick ran
    assert await close_due_surveys(srig.clock.now()) == 1
    assert await close_due_surveys(srig.clock.now()) == 0  # once
    await srig.herald.outbox.drain()
    updates = srig.fake.calls_to("chat.update")
    assert len(updates) == 4 and all("This survey closed" in str(u.args["blocks"]) for u in updates)
    assert not any(_buttons(u.args["blocks"]) for u in updates)


async def test_a_closed_survey_is_not_sent_to_members_still_waiting_for_it(srig: SurveyRig) -> None:
    """m2@bolt is in quiet hours when the survey goes out and the CAM closes it before their
    morning: their copy is cancelled, not sent ("This survey closed ...", nothing to answer) nor
    counted among the members it was delivered to."""
    await Member.filter(email="m2@bolt.example").update(timezone="Australia/Sydney")
    survey_id = await srig.survey("announcements org:bolt | Ready for Q1? | Yes | No")
    await srig.herald.outbox.drain()
    assert srig.fake.call_count("chat.postMessage") == 3  # the fourth waits for Sydney's morning
    await srig.answer(survey_id, "UBOLT1", 0)
    await close_survey(survey_id, None, now=srig.clock.now(), operator="test")

    srig.clock.advance(hours=14)
    await srig.herald.outbox.drain()

    assert srig.fake.call_count("chat.postMessage") == 3
    waiting = await Delivery.get(notice_id=survey_id, member__email="m2@bolt.example")
    assert (waiting.status, waiting.error) == ("cancelled", "the survey closed before it was sent")
    closed = await AuditEvent.get(notice_id=survey_id, kind="survey.closed")
    assert (closed.data["cancelled"], closed.data["copies"]) == (1, 3)
    assert (await Notice.get(id=survey_id)).status == "sent"  # nothing left to send
    assert (await survey_results(survey_id, None, operator=True))["total"]["recipients"] == 3


async def test_a_survey_past_its_close_date_is_not_sent_before_the_tick_closes_it(srig: SurveyRig) -> None:
    await Member.filter(email="m2@bolt.example").update(timezone="Australia/Sydney")
    survey_id = await srig.survey("announcements org:bolt closes:2026-01-06 | Ready for Q1? | Yes | No")
    await srig.herald.outbox.drain()
    assert srig.fake.call_count("chat.postMessage") == 3

    srig.clock.advance(days=2)  # Sydney's morning came after the close date; the tick has not run
    await srig.herald.outbox.drain()

    assert srig.fake.call_count("chat.postMessage") == 3
    waiting = await Delivery.get(notice_id=survey_id, member__email="m2@bolt.example")
    assert (waiting.status, waiting.error) == ("cancelled", "the survey closed before it was sent")
    [event] = await AuditEvent.filter(notice_id=survey_id, kind="delivery.cancelled")
    assert (event.data["delivery_id"], event.data["reason"]) == (waiting.id, "the survey closed before it was sent")


async def test_an_answer_checked_before_a_close_is_refused_if_the_close_commits_first(
        srig: SurveyRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The close (another replica, the CAM, the close date's tick) commits between the answer's
    check and its write: the write looks again, so no answer lands after `survey.closed` counted
    them, and the member is told the survey closed."""
    survey_id = await srig.survey("announcements org:bolt | Ready for Q1? | Yes | No")
    await srig.herald.outbox.drain()
    record = answers._record

    async def close_then_record(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        await close_survey(survey_id, None, now=srig.clock.now(), operator="test")
        return await record(*args, **kwargs)

    monkeypatch.setattr(answers, "_record", close_then_record)
    with pytest.raises(UserError, match="survey closed at"):
        await srig.answer(survey_id, "UBOLT1", 0)

    closed = await AuditEvent.get(notice_id=survey_id, kind="survey.closed")
    assert await SurveyAnswer.filter(survey__notice_id=survey_id).count() == closed.data["answers"] == 0
    assert not await AuditEvent.filter(notice_id=survey_id, kind="survey.answered").exists()


async def test_a_close_waits_for_an_answer_being_written_and_counts_it(
        srig: SurveyRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The close starts while the answer's transaction is writing: it waits for it, so the answer
    stored is in `survey.closed`'s count (PostgreSQL: the answer holds the survey row FOR SHARE)."""
    survey_id = await srig.survey("announcements org:bolt | Ready for Q1? | Yes | No")
    await srig.herald.outbox.drain()
    append = answers.record
    closing: list[asyncio.Task] = []
    elsewhere = contextvars.copy_context()  # outside the answer's transaction, as another request

    async def close_meanwhile(events, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if not closing and events[0].kind == "survey.answered":
            closing.append(asyncio.create_task(
                close_survey(survey_id, None, now=srig.clock.now(), operator="test"), context=elsewhere))
            await asyncio.sleep(0.3)  # the close runs meanwhile, and waits for this answer
        return await append(events, **kwargs)

    monkeypatch.setattr(answers, "record", close_meanwhile)
    assert (await srig.answer(survey_id, "UBOLT1", 0)).recorded
    await closing[0]

    closed = await AuditEvent.get(notice_id=survey_id, kind="survey.closed")
    assert await SurveyAnswer.filter(survey__notice_id=survey_id).count() == closed.data["answers"] == 1


async def test_only_the_author_or_an_admin_closes_and_surveys_cannot_be_edited(srig: SurveyRig) -> None:
    now = srig.clock.now()
    await add_staff("other@vendor.example", "cam", now=now, actor="test")
    other = await Staff.get(email="other@vendor.example")
    survey_id = await srig.survey("announcements all | Ready? | Yes | No")
    with pytest.raises(PermissionDenied):
        await close_survey(survey_id, other, now=now)
    with pytest.raises(UserError, match="cannot be edited"):
        await edit_notice(survey_id, None, srig.herald.catalog, now=now, title="Changed?", operator="test")
    closed = await close_survey(survey_id, None, now=now, operator="test")
    assert not closed.already and (await close_survey(survey_id, None, now=now, operator="test")).already


async def test_retracted_survey_takes_no_answers_and_is_closed(srig: SurveyRig) -> None:
    """The tick closes a retracted survey (an anonymous one's key is erased) but leaves its
    messages alone: each already shows the retraction, and updating it again cost a chat.update
    per copy (at 3,000 recipients an hour of a workspace's update budget)."""
    survey_id = await srig.survey("announcements org:keys | Still there? | Yes | No")
    await srig.herald.outbox.drain()
    await retract_notice(survey_id, None, reason="sent by mistake", now=srig.clock.now(), operator="test")
    await srig.herald.outbox.drain()
    assert srig.fake.call_count("chat.update") == 2  # each copy shows the retraction
    with pytest.raises(UserError, match="withdrawn"):
        await srig.answer(survey_id, "UKEYS1", 0)
    assert await close_due_surveys(srig.clock.now()) == 1
    await srig.herald.outbox.drain()
    assert srig.fake.call_count("chat.update") == 2, "every retracted copy was updated again"
    assert not await Delivery.filter(notice_id=survey_id, update_pending=True).exists()
    closed = await AuditEvent.get(notice_id=survey_id, kind="survey.closed")
    assert (closed.actor, closed.data["copies"]) == ("scheduler", 0)


async def test_only_need_to_know(srig: SurveyRig) -> None:
    command = parse_command("survey must-know announcements all | Q? | Yes | No")
    with pytest.raises(UserError, match="need-to-know"):
        await create_survey_draft(None, command, srig.herald.catalog, now=srig.clock.now(), operator="t")  # type: ignore[arg-type]


# ---- anonymity ----------------------------------------------------------------------------------

async def test_anonymous_answers_store_no_member_and_unlink_at_close(srig: SurveyRig) -> None:
    survey_id = await srig.survey("announcements all anonymous | How useful is Herald? | scale:0-10")
    await srig.herald.outbox.drain()
    await srig.answer(survey_id, "UACME1", 9)
    await srig.answer(survey_id, "UACME1", 10)  # changed: the same respondent code finds the row
    rows = await SurveyAnswer.all().values("member_id", "respondent", "value", "changes")
    assert rows == [{"member_id": None, "respondent": rows[0]["respondent"], "value": 10, "changes": 1}]
    assert len(rows[0]["respondent"]) == 64 and "member" not in rows[0]["respondent"]
    events = await AuditEvent.filter(notice_id=survey_id, kind__startswith="survey.answer").values("member_id", "actor")
    assert events and all(e["member_id"] is None and e["actor"] == "" for e in events)

    results = await survey_results(survey_id, None, operator=True)
    assert results["suppressed"] and results["total"]["distribution"] is None and results["answers"] is None
    assert results["total"]["answered"] == 1 and results["breakdowns"]["organisation"] == []

    for _, _, user in members()[1:6]:  # five more answers: six in all, all from acme
        await srig.answer(survey_id, user, 7)
    results = await survey_results(survey_id, None, operator=True)
    assert not results["suppressed"] and results["total"]["nps"]["score"] == 17  # 1 promoter of 6, 0 detractors
    by_org = results["breakdowns"]["organisation"]
    # Acme's six answers are two per role: every (organisation, role) cell is under five, so pooled
    assert [r["segment"] for r in by_org] == [OTHER] and by_org[0]["answered"] == 6
    assert all(r["answered"] >= 5 for dim in results["breakdowns"].values() for r in dim)
    assert "m1@acme.example" not in str(results) and "Member" not in str(results)

    await close_survey(survey_id, None, now=srig.clock.now(), operator="test")
    survey = await Survey.get(notice_id=survey_id)
    assert survey.respondent_key == ""  # nothing can turn a member into their code any more
    with pytest.raises(UserError, match="closed"):
        await srig.answer(survey_id, "UACME1", 3)


async def test_results_csv_and_named_answers(srig: SurveyRig) -> None:
    survey_id = await srig.survey("announcements org:bolt | Ready? | Yes | No | follow-up: Why?")
    await srig.herald.outbox.drain()
    await srig.answer(survey_id, "UBOLT1", 0, comment="Stock is =in")
    await srig.answer(survey_id, "UBOLT2", 1)
    results = await survey_results(survey_id, None, operator=True)
    assert results["total"]["response_rate"] == 0.5
    assert [a["email"] for a in results["answers"]] == ["m1@bolt.example", "m2@bolt.example"]
    assert results["comments"] == [{"member": "Member UBOLT1", "email": "m1@bolt.example", "comment": "Stock is =in"}]
    text = results_csv(results)
    assert "dimension,segment,recipients,answered,response_rate,mean,nps,Yes,No" in text
    assert "total,all,4,2,0.5,,,1,1" in text and "tier,silver,4,2,0.5,,,1,1" in text


async def test_a_comment_cannot_put_words_in_another_members_mouth_in_the_chat_results(srig: SurveyRig) -> None:
    """A named survey's chat results list comments as `• "<name>: <comment>"`, one a line. A
    comment's line breaks (the Slack modal's input is multiline) once went through, so member 1
    could write a second line reading exactly like a comment by member 2, who wrote nothing. Chat
    folds them (Slack's and Teams' renderings); the API keeps the comment as written."""
    from bot.channels import slack_blocks, teams_cards
    from bot.channels.survey_lines import survey_result_lines

    survey_id = await srig.survey("announcements org:acme | Useful? | Yes | No | follow-up: Why?")
    await srig.herald.outbox.drain()
    await srig.answer(survey_id, "UACME1", 0)
    await srig.answer(survey_id, "UACME2", 1)
    forged = 'Fine."\n• "Member UACME2: I never read these,\r\n\n  I just click Yes'
    await comment_on_survey(survey_id, forged, platform="slack", workspace_id=TEAM, user_id="UACME1",
                            now=srig.clock.now())

    results = await survey_results(survey_id, None, operator=True)
    assert results["comments"][0]["comment"] == forged  # the API and the CSV keep it as written
    for bold, escape, bullet in ((lambda t: f"*{t}*", slack_blocks.escape, "•"),
                                 (lambda t: f"**{t}**", teams_cards.escape, "-")):
        text = "\n".join(survey_result_lines(results, bold=bold, escape=escape, bullet=bullet))
        comments = text.splitlines()[text.splitlines().index(bold("Comments (1)")) + 1:]
        assert len(comments) == 1 and "Member UACME1: Fine" in comments[0], text
        assert "I never read these, I just click Yes" in comments[0]  # folded into one line


def _formula_cells(text: str) -> list[str]:
    """Cells a spreadsheet would run as a formula (OWASP's CSV-injection starts)."""
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row if cell.startswith(FORMULA_START)]


async def test_results_csv_keeps_a_question_with_a_formula_in_one_text_cell(srig: SurveyRig) -> None:
    survey_id = await srig.survey('announcements org:bolt | Ready?,=HYPERLINK("http://evil.example") | Yes | No')
    await srig.herald.outbox.drain()
    text = results_csv(await survey_results(survey_id, None, operator=True))
    assert _formula_cells(text) == []
    assert ['# question: Ready?,=HYPERLINK("http://evil.example")'] in list(csv.reader(io.StringIO(text)))


async def test_results_csv_keeps_answer_options_that_look_like_formulas_as_text(srig: SurveyRig) -> None:
    survey_id = await srig.survey("announcements org:bolt | Which one? | =1+2 | @SUM(1) | -5")
    await srig.herald.outbox.drain()
    text = results_csv(await survey_results(survey_id, None, operator=True))
    assert _formula_cells(text) == []
    assert "'=1+2,'@SUM(1),'-5" in text


async def test_a_cam_sees_their_own_surveys_only(srig: SurveyRig) -> None:
    now = srig.clock.now()
    await add_staff("other@vendor.example", "cam", now=now, actor="test")
    survey_id = await srig.survey("announcements all | Ready? | Yes | No")
    with pytest.raises(PermissionDenied):
        await survey_results(survey_id, await Staff.get(email="other@vendor.example"))
    await add_staff("audit@vendor.example", "compliance", now=now, actor="test")
    assert (await survey_results(survey_id, await Staff.get(email="audit@vendor.example")))["scope"] == "all"
    srig.clock.advance(hours=1)
    assert srig.clock.now() - now == timedelta(hours=1)


async def test_surveys_wait_for_quiet_hours_and_honour_opt_outs(srig: SurveyRig) -> None:
    from storage.models import Member

    await Member.filter(email="m1@bolt.example").update(topic_opt_outs=["product-updates"])
    await Member.filter(email="m2@bolt.example").update(timezone="Australia/Sydney")  # 20:00 there: quiet hours
    survey_id = await srig.survey("product-updates org:bolt | Did the release notes help? | Yes | No")
    rows = {r["member__email"]: r for r in await Delivery.filter(notice_id=survey_id).values(
        "member__email", "next_attempt_at")}
    assert "m1@bolt.example" not in rows  # opted out of the topic: no row at all
    assert rows["m2@bolt.example"]["next_attempt_at"] > srig.clock.now()  # held until their morning
    await srig.herald.outbox.drain()
    assert srig.fake.call_count("chat.postMessage") == len(rows) - 1

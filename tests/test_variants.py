"""A/B variants in the core: deterministic balanced assignment, held shares, rolling out the winner
exactly once (replays, concurrent commands), the database's one-row-per-member guarantee, the
comparison's tests and minimums, and the reports."""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tortoise.exceptions import IntegrityError

from bot.channels.slack_blocks import SEND_ACTION
from bot.common.errors import UserError
from bot.core.commands.parser import parse_command
from bot.core.compliance.reports import export_summary, notice_summary, report_chunks, summary_csv
from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.core.notices.ab_results import MIN_DELIVERED, compare_rates, compare_times, variant_results
from bot.core.notices import sending
from bot.core.notices.acks import acknowledge
from bot.core.notices.revisions import retract_notice
from bot.core.notices.rollout import LEFT_TOPIC, roll_out
from bot.core.notices.status import notice_status
from bot.core.notices.variants import assign
from bot.service import Herald
from storage.models import AuditEvent, Delivery, Member, Notice, PlatformAccount, Staff
from tests.fakes.slack_signing import event_body, interaction_body
from tests.support import CAM_USER, TEAM, SlackHarness, directory_csv, preview_notice, wait_until
from tests.survey_support import SurveyRig, big_directory, members

AB = "need-to-know announcements all | Title A | Body A || Title B | Body B"


# ---- assignment --------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=8),
       k=st.integers(min_value=2, max_value=4), notice=st.integers(min_value=1, max_value=10**6),
       share=st.one_of(st.none(), st.integers(min_value=1, max_value=99)))
def test_assignment_is_balanced_within_every_organisation(sizes: list[int], k: int, notice: int,
                                                           share: int | None) -> None:
    people = [(org * 1000 + n, org) for org, size in enumerate(sizes) for n in range(size)]
    labels = "ABCD"[:k]
    plan = assign(notice, people, labels, share)
    assert plan == assign(notice, list(reversed(people)), labels, share)  # deterministic, order-free
    first = [m for m, a in plan.items() if not a.held]
    if share is None:
        assert len(first) == len(people)
    else:
        assert len(first) == len(people) * share // 100  # exactly the share, rounded down
    assert all(plan[m].variant in labels for m in first) and all(a.variant == "" for a in plan.values() if a.held)
    overall = Counter(plan[m].variant for m in first)
    assert max(overall.values(), default=0) - min((overall.get(label, 0) for label in labels), default=0) <= 1
    for org in range(len(sizes)):
        mine = Counter(plan[m].variant for m, o in people if o == org and not plan[m].held)
        counts = [mine.get(label, 0) for label in labels]
        assert max(counts) - min(counts) <= 1, (org, counts)


# ---- sending ------------------------------------------------------------------------------------

async def test_each_member_sees_one_variant_and_it_is_audited(srig: SurveyRig) -> None:
    notice_id = await srig.notice(AB)
    rows = await Delivery.filter(notice_id=notice_id).values("member__organisation__external_id", "variant")
    assert len(rows) == 12 and Counter(r["variant"] for r in rows) == {"A": 6, "B": 6}
    by_org = Counter((r["member__organisation__external_id"], r["variant"]) for r in rows)
    assert by_org == {("acme", "A"): 3, ("acme", "B"): 3, ("bolt", "A"): 2, ("bolt", "B"): 2,
                      ("keys", "A"): 1, ("keys", "B"): 1}
    assert await AuditEvent.filter(notice_id=notice_id, kind="notice.variant_assigned").count() == 12
    await srig.herald.outbox.drain()
    shown = Counter(c.args["blocks"][0]["text"]["text"] for c in srig.fake.calls_to("chat.postMessage"))
    assert shown == {"Title A": 6, "Title B": 6}
    bodies = {c.channel: str(c.args["blocks"]) for c in srig.fake.calls_to("chat.postMessage")}
    for row in await Delivery.filter(notice_id=notice_id).values("channel_id", "variant"):
        assert f"Body {row['variant']}" in bodies[row["channel_id"]]
    status = await notice_status(notice_id, now=srig.clock.now())
    assert status.variants == {"A": 6, "B": 6} and status.held == 0


async def test_the_database_allows_one_row_per_member_and_platform(srig: SurveyRig) -> None:
    notice_id = await srig.notice(AB)
    row = await Delivery.filter(notice_id=notice_id).first()
    assert row is not None
    with pytest.raises(IntegrityError):
        await Delivery.create(notice_id=notice_id, member_id=row.member_id, platform=row.platform,  # type: ignore[attr-defined]
                              variant="B" if row.variant == "A" else "A", next_attempt_at=row.next_attempt_at,
                              created_at=row.created_at)


async def test_variants_need_a_direct_message() -> None:
    from bot.core.commands.parser import parse_command

    with pytest.raises(UserError, match="share:"):
        parse_command("send need-to-know announcements all share:20% | T | B")
    with pytest.raises(UserError, match="variant C needs a title and a body"):
        parse_command("send need-to-know announcements all | T | B || T2 | B2 || only a title")


async def test_nice_to_know_cannot_have_variants(srig: SurveyRig) -> None:
    with pytest.raises(UserError, match="direct message"):
        await srig.notice("nice-to-know announcements all | T | B || T2 | B2")


# ---- share and rollout --------------------------------------------------------------------------

async def test_share_holds_the_rest_until_the_rollout_and_nobody_gets_two(srig: SurveyRig) -> None:
    notice_id = await srig.notice("need-to-know announcements all share:50% | Title A | Body A || Title B | Body B")
    statuses = Counter(await Delivery.filter(notice_id=notice_id).values_list("status", flat=True))
    assert statuses == {"pending": 6, "held": 6}
    await srig.herald.outbox.drain()
    assert srig.fake.call_count("chat.postMessage") == 6
    assert (await Notice.get(id=notice_id)).status == "sent"
    summary = await notice_summary(notice_id)
    assert summary["held"] == 6 and [v["variant"] for v in summary["variants"]] == ["A", "B", None]

    first = await roll_out(notice_id, "b", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="test")
    assert (first.variant, first.released, first.already) == ("B", 6, False)
    replay = await roll_out(notice_id, "B", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="test")
    assert replay.already and replay.released == 0
    with pytest.raises(UserError, match="rolled out variant B"):
        await roll_out(notice_id, "A", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="test")
    await srig.herald.outbox.drain()
    posts = srig.fake.calls_to("chat.postMessage")
    per_channel = Counter(c.channel for c in posts)
    assert len(per_channel) == 12 and set(per_channel.values()) == {1}  # everyone exactly once
    assert Counter(c.args["blocks"][0]["text"]["text"] for c in posts) == {"Title A": 3, "Title B": 9}
    assert (await Notice.get(id=notice_id)).status == "sent"
    kinds = Counter(await AuditEvent.filter(notice_id=notice_id).values_list("kind", flat=True))
    assert kinds["notice.rolled_out"] == 1 and kinds["notice.variant_assigned"] == 12 + 6


async def test_two_replicas_rolling_out_at_once_release_each_member_once(srig: SurveyRig) -> None:
    notice_id = await srig.notice("need-to-know announcements all share:25% | A | Body A || B | Body B || C | Body C")
    results = await asyncio.gather(
        roll_out(notice_id, "B", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="replica-1"),
        roll_out(notice_id, "B", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="replica-2"),
        roll_out(notice_id, "C", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="replica-3"),
        return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException) and not r.already]
    assert len(winners) == 1 and winners[0].released == 9
    assert all(isinstance(r, UserError) or r.already for r in results if r is not winners[0])
    other = Herald(srig.herald.settings, clock=srig.clock, catalog=srig.herald.catalog)  # a second replica
    try:
        await asyncio.gather(srig.herald.outbox.drain(), other.outbox.drain())
    finally:
        await other.close()
    per_channel = Counter(c.channel for c in srig.fake.calls_to("chat.postMessage"))
    assert len(per_channel) == 12 and set(per_channel.values()) == {1}
    assert await Delivery.filter(notice_id=notice_id).count() == 12


async def test_retraction_cancels_the_held_rows(srig: SurveyRig) -> None:
    notice_id = await srig.notice("need-to-know announcements all share:50% | A | Body A || B | Body B")
    await retract_notice(notice_id, None, reason="wrong prices", now=srig.clock.now(), operator="test")
    assert await Delivery.filter(notice_id=notice_id, status="held").count() == 0
    with pytest.raises(UserError, match="retracted"):
        await roll_out(notice_id, "A", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="test")


async def test_a_rollout_does_not_send_to_a_member_who_left_the_topic_meanwhile(slack_http: SlackHarness) -> None:
    """The held-back share gets nothing until the rollout, days later maybe; roll_out released
    every held row of an active member without looking at the topic's opt-outs again, so a partner
    who unticked "Incentives" in their App Home after the first share still got the need-to-know
    incentives DM. Their held row is now cancelled (and audited) as publish would have left them out."""
    slack = slack_http
    users = ["UL1", "UL2", "UL3", "UL4"]
    for user in users:
        slack.fake.add_user(TEAM, user)
    result = await import_directory(directory_csv([
        f"lockco,Lock Co,gold,emea,gb,security,small,reseller,cam@vendor.example,{u.lower()}@lockco.example,"
        f"Person {u},sales,UTC,en,{TEAM},{u},," for u in users]), now=slack.clock.now(), actor="test")
    assert not result.rejected

    text, notice_id = await preview_notice(slack, "send need-to-know incentives org:lockco share:50% | Spring rebate | "
                                                  "Up to 5% back || Spring rebate: act now | 5% back until March")
    assert "4 recipients*" in text, text
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()
    held = await Delivery.filter(notice_id=notice_id, status="held").values_list("member_id", flat=True)
    assert len(held) == 2, "the 50% share holds two members back"
    leaver = await Member.get(id=held[0])
    leaver_user = next(u for u in users if f"{u.lower()}@lockco.example" == leaver.email)

    # the held-back member leaves Incentives in their App Home (the checkbox unticked)
    publishes = len(slack.fake.calls_to("views.publish"))
    await slack.post_signed(event_body({"type": "app_home_opened", "user": leaver_user, "tab": "home"}, TEAM))
    await wait_until(lambda: len(slack.fake.calls_to("views.publish")) > publishes, what="the home tab")
    view = slack.fake.calls_to("views.publish")[-1].args["view"]
    [block] = [b for b in view["blocks"] if b.get("accessory", {}).get("action_id") == "herald_pref_topics"]
    kept = [o for o in block["accessory"]["options"] if o["value"] != "incentives"]
    await slack.post_signed(interaction_body({
        "type": "block_actions", "team": {"id": TEAM}, "user": {"id": leaver_user}, "api_app_id": "AHERALD",
        "trigger_id": "t", "container": {"type": "view"}, "view": view,
        "actions": [{"action_id": "herald_pref_topics", "type": "checkboxes", "block_id": block["block_id"],
                     "selected_options": kept}]}))
    await wait_until(lambda: len(slack.fake.calls_to("views.publish")) > publishes + 1, what="the saved home tab")
    assert "incentives" in (await Member.get(id=leaver.id)).topic_opt_outs

    slack.clock.advance(days=3)
    _, _, key = await slack.command(f"rollout {notice_id} B")
    await slack.responses(key)
    await slack.herald.outbox.drain()

    assert [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == f"D{leaver_user}"] == [], (
        "the member who left Incentives was sent the rolled-out incentives notice")
    assert await Delivery.filter(notice_id=notice_id, member_id=held[1]).values_list("status", "variant") == [
        ("delivered", "B")]  # the other held-back member gets the winner
    assert await Delivery.filter(notice_id=notice_id, member_id=leaver.id).values_list("status", "error") == [
        ("cancelled", LEFT_TOPIC)]
    cancelled = await AuditEvent.filter(notice_id=notice_id, kind="delivery.cancelled").values_list("member_id", "data")
    assert [(m, data["reason"]) for m, data in cancelled] == [(leaver.id, LEFT_TOPIC)]
    rolled = await AuditEvent.get(notice_id=notice_id, kind="notice.rolled_out")
    assert (rolled.data["members"], rolled.data["opted_out"]) == (1, 1)


# ---- results ------------------------------------------------------------------------------------

async def test_variant_results_count_acks_and_say_when_there_is_too_little_data(srig: SurveyRig) -> None:
    notice_id = await srig.notice("must-know announcements all | Recall A | Stop A || Recall B | Stop B")
    await srig.herald.outbox.drain()
    rows = await Delivery.filter(notice_id=notice_id).values("member__email", "variant")
    variant_of = {r["member__email"]: r["variant"] for r in rows}
    for _, _, user in members()[:5]:
        srig.clock.advance(minutes=10)
        await acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id=user, now=srig.clock.now())
    await add_staff("audit@vendor.example", "compliance", now=srig.clock.now(), actor="test")
    results = await variant_results(notice_id, await Staff.get(email="audit@vendor.example"))
    by_label = {v["variant"]: v for v in results["variants"]}
    acked = Counter(variant_of[email] for _, email, _ in members()[:5])
    assert {k: v["acknowledged"] for k, v in by_label.items()} == {"A": acked["A"], "B": acked["B"]}
    assert all(v["delivered"] == 6 for v in by_label.values())
    assert by_label["A"]["median_seconds_to_ack"] is not None
    notes = {c["metric"]: c for c in results["comparisons"]}
    assert set(notes) == {"ack_rate", "interaction_rate", "time_to_acknowledge"}
    assert not notes["ack_rate"]["enough_data"] and f"at least {MIN_DELIVERED}" in notes["ack_rate"]["note"]
    report = "".join([c async for c in report_chunks(notice_id, "csv", reader=None, now=srig.clock.now(), actor="t")])
    assert ",variant\n" in report.splitlines(keepends=True)[[i for i, line in enumerate(report.splitlines())
                                                             if line.startswith("organisation_id")][0]]
    assert "# variant: variant=A" in report


async def test_variant_results_after_the_rollout_count_only_the_experiments_members(srig: SurveyRig) -> None:
    """Rolling out the winner sends it to the members held back from the first share. They were
    never in the experiment: its per-variant figures and its tests stay those of the first share,
    and the rollout is shown apart (members it went to, delivered, acknowledged)."""
    notice_id = await srig.notice("must-know announcements all share:50% | Recall A | Stop A || Recall B | Stop B")
    await srig.herald.outbox.drain()
    user_of = {email: user for _, email, user in members()}
    variant_of = dict(await Delivery.filter(notice_id=notice_id, status="delivered").values_list(
        "member__email", "variant"))
    first_wave = sorted(variant_of)
    for email in first_wave[:2]:
        await acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id=user_of[email], now=srig.clock.now())
    before = await variant_results(notice_id, None, operator=True)
    assert before["held"] == 6 and before["rollout"] is None

    await roll_out(notice_id, "B", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="test")
    await srig.herald.outbox.drain()
    held_back = await Delivery.filter(notice_id=notice_id, rolled_out=True).values_list("member__email", flat=True)
    assert len(held_back) == 6 and not set(held_back) & set(first_wave)
    for email in sorted(held_back)[:4]:
        srig.clock.advance(minutes=5)
        await acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id=user_of[email], now=srig.clock.now())

    after = await variant_results(notice_id, None, operator=True)
    assert after["variants"] == before["variants"]  # B's delivered stays 3, not 3 + 6
    assert [v["delivered"] for v in after["variants"]] == [3, 3]
    assert after["comparisons"] == before["comparisons"]
    assert after["held"] == 0
    assert after["rollout"] == {"variant": "B", "members": 6, "delivered": 6, "acknowledged": 4, "interacted": 4}

    summary = await notice_summary(notice_id)  # the report's per-variant summary keeps them apart too
    per_variant = {(v["variant"], v["rolled_out"]): (v["recipients"], v["delivered"], v["acknowledged"])
                   for v in summary["variants"]}
    acked = Counter(variant_of[email] for email in first_wave[:2])
    assert per_variant == {("A", False): (3, 3, acked["A"]), ("B", False): (3, 3, acked["B"]), ("B", True): (6, 6, 4)}
    report = "".join([c async for c in report_chunks(notice_id, "csv", reader=None, now=srig.clock.now(), actor="t")])
    assert "# variant_rollout: variant=B recipients=6 delivered=6" in report


async def test_the_reports_summary_per_variant_counts_members_not_copies(srig: SurveyRig) -> None:
    """With HERALD_PLATFORM_POLICY=all a member with a Slack and a Teams copy is one recipient of
    their variant, by their best copy, as in the notice's totals and in `herald variants`."""
    member = await Member.get(email="m1@acme.example")
    await PlatformAccount.create(member=member, platform="teams", workspace_external_id="tenant-1", user_id="aad-1",
                                 dm_channel="a:conv", service_url="http://127.0.0.1:9/")
    command = parse_command("send need-to-know announcements org:acme | Title A | Body A || Title B | Body B")
    preview = await sending.create_draft(None, command, srig.herald.catalog, now=srig.clock.now(), operator="t")
    await sending.send_draft(preview.notice.id, None, srig.herald.catalog, now=srig.clock.now(), operator="t",
                             platform_policy="all")
    notice_id = preview.notice.id
    assert await Delivery.filter(notice_id=notice_id, member=member).count() == 2  # a Slack and a Teams copy
    await Delivery.filter(notice_id=notice_id).update(status="delivered", delivered_at=srig.clock.now())
    await Delivery.filter(notice_id=notice_id, member=member, platform="teams").update(status="failed")

    summary = await notice_summary(notice_id)
    assert (summary["recipients"], summary["delivered"], summary["failed"]) == (6, 6, 0)  # six members
    compared = {v["variant"]: v["delivered"] for v in (await variant_results(notice_id, None, operator=True))["variants"]}
    assert compared == {"A": 3, "B": 3}  # `herald variants` counts members
    per_variant = {v["variant"]: (v["recipients"], v["delivered"], v["failed"]) for v in summary["variants"]}
    assert per_variant == {"A": (3, 3, 0), "B": (3, 3, 0)}


async def test_the_period_summary_csv_accounts_for_every_recipient(srig: SurveyRig) -> None:
    """An A/B test with `share:50%` holds half its recipients back until the roll-out: the period
    summary's CSV has a `held` column, as its JSON has, so its counts add up to `recipients`."""
    notice_id = await srig.notice("need-to-know announcements all share:50% | Title A | Body A || Title B | Body B")
    await srig.herald.outbox.drain()
    now = srig.clock.now()
    document = await export_summary(since=now - timedelta(days=1), until=now + timedelta(days=1), now=now,
                                    actor="t", fmt="csv")
    [row] = [r for r in document["notices"] if r["id"] == notice_id]
    assert row["recipients"] == 12 and row["held"] == 6
    lines = summary_csv(document).splitlines(keepends=True)
    table = "".join(line for line in lines if not line.startswith(("#", '"#')))  # the table after the # lines
    [line] = [r for r in csv.DictReader(io.StringIO(table)) if r["id"] == str(notice_id)]
    accounted = sum(int(line[k]) for k in ("delivered", "failed", "pending", "digest", "cancelled", "held"))
    assert accounted == int(line["recipients"]) == 12, line


def test_rate_comparisons_pick_the_right_test() -> None:
    big = compare_rates("ack_rate", {"A": (15, 30), "B": (25, 30)})
    assert big["test"] == "Pearson's chi-square test" and big["significant"] and big["leader"] == "B"
    small = compare_rates("ack_rate", {"A": (2, 30), "B": (9, 30), "C": (1, 25)})
    assert small["test"] == "Fisher's exact test" and small["leader"] == "B" and 0.01 < small["p_value"] < 0.05
    same = compare_rates("ack_rate", {"A": (10, 25), "B": (10, 25)})
    assert not same["significant"] and same["p_value"] == 1.0
    none = compare_rates("interaction_rate", {"A": (0, 25), "B": (0, 25)})
    assert none["test"] is None and "nobody responded" in none["note"]
    short = compare_rates("ack_rate", {"A": (5, 19), "B": (9, 30)})
    assert not short["enough_data"] and "A 19" in short["note"]
    times = compare_times({"A": [60, 120, 180, 240, 300, 360], "B": [600, 1200, 1800, 2400, 3000]})
    assert times["test"] == "Mann-Whitney U test" and times["leader"] == "A" and times["significant"]
    three = compare_times({"A": [1, 2, 3, 4, 5], "B": [2, 3, 4, 5, 6], "C": [3, 4, 5, 6, 7]})
    assert three["test"] == "Kruskal-Wallis H test" and not three["significant"]
    assert not compare_times({"A": [1, 2], "B": [1, 2, 3, 4, 5]})["enough_data"]


async def test_reminders_show_the_members_own_variant(srig: SurveyRig) -> None:
    from bot.core.notices.reminders import plan_reminders

    notice_id = await srig.notice("must-know announcements all | Recall A | Stop A || Recall B | Stop B")
    await srig.herald.outbox.drain()
    srig.clock.advance(hours=25)
    assert await plan_reminders(srig.clock.now(), srig.herald.catalog) == 12
    await srig.herald.outbox.drain()
    variant_of = dict(await Delivery.filter(notice_id=notice_id, kind="notice").values_list("member_id", "variant"))
    reminders = await Delivery.filter(notice_id=notice_id, kind="reminder").values("member_id", "variant", "channel_id")
    assert len(reminders) == 12 and all(r["variant"] == variant_of[r["member_id"]] for r in reminders)
    texts = {c.channel: str(c.args["blocks"]) for c in srig.fake.calls_to("chat.postMessage")
             if "Reminder" in c.args["blocks"][0]["text"]["text"]}
    assert all(f"Stop {r['variant']}" in texts[r["channel_id"]] for r in reminders)


async def test_members_removed_from_the_directory_are_not_sent_the_winner(srig: SurveyRig) -> None:
    notice_id = await srig.notice("need-to-know announcements all share:50% | Title A | Body A || Title B | Body B")
    await srig.herald.outbox.drain()
    held = await Delivery.filter(notice_id=notice_id, status="held").values_list("member_id", flat=True)
    gone = set(await Member.filter(id__in=held).values_list("email", flat=True))
    assert gone
    srig.clock.advance(days=7)  # they left their partner: the next import no longer has them
    kept = [line for line in big_directory().splitlines()[1:] if line.split(",")[9] not in gone]
    result = await import_directory(directory_csv(kept), now=srig.clock.now(), actor="test", deactivate_missing=True)
    assert result.deactivated == len(gone)
    assert {r.error for r in await Delivery.filter(notice_id=notice_id, member_id__in=held)} == {
        "removed from the partner directory"}

    await roll_out(notice_id, "B", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="test")
    await srig.herald.outbox.drain()

    assert await Delivery.filter(notice_id=notice_id, member_id__in=held).exclude(status="cancelled").count() == 0


async def test_members_back_in_the_directory_before_the_rollout_are_held_back_again(srig: SurveyRig) -> None:
    """A held-back member left out of one sync and back in the next is held back again (not sent a
    variant early), and gets the winner when it is rolled out, like everyone else held back."""
    notice_id = await srig.notice("need-to-know announcements all share:50% | Title A | Body A || Title B | Body B")
    await srig.herald.outbox.drain()
    held = await Delivery.filter(notice_id=notice_id, status="held").values_list("member_id", flat=True)
    gone = set(await Member.filter(id__in=held).values_list("email", flat=True))
    kept = [line for line in big_directory().splitlines()[1:] if line.split(",")[9] not in gone]
    await import_directory(directory_csv(kept), now=srig.clock.now(), actor="test", deactivate_missing=True)

    back = await import_directory(big_directory(), now=srig.clock.now(), actor="test")

    assert back.restored == len(held)
    assert set(await Delivery.filter(notice_id=notice_id, member_id__in=held).values_list("status", flat=True)) == {
        "held"}
    await roll_out(notice_id, "B", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="test")
    await srig.herald.outbox.drain()
    assert set(await Delivery.filter(notice_id=notice_id, member_id__in=held).values_list("status", "variant")) == {
        ("delivered", "B")}


async def test_members_back_in_the_directory_after_the_rollout_get_the_winner_as_the_rollout(srig: SurveyRig) -> None:
    """A held-back member out of the directory during the rollout and back after it is sent the
    winner then: their copy is marked as the rollout's (not counted in the experiment) and their
    variant is audited like the rollout's members'."""
    notice_id = await srig.notice("need-to-know announcements all share:50% | Title A | Body A || Title B | Body B")
    await srig.herald.outbox.drain()
    held = await Delivery.filter(notice_id=notice_id, status="held").values_list("member_id", flat=True)
    gone = set(await Member.filter(id__in=held).values_list("email", flat=True))
    kept = [line for line in big_directory().splitlines()[1:] if line.split(",")[9] not in gone]
    await import_directory(directory_csv(kept), now=srig.clock.now(), actor="test", deactivate_missing=True)
    before = await variant_results(notice_id, None, operator=True)
    await roll_out(notice_id, "B", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="test")

    await import_directory(big_directory(), now=srig.clock.now(), actor="test")
    await srig.herald.outbox.drain()

    rows = await Delivery.filter(notice_id=notice_id, member_id__in=held).values_list("status", "variant", "rolled_out")
    assert set(rows) == {("delivered", "B", True)}
    after = await variant_results(notice_id, None, operator=True)
    assert after["variants"] == before["variants"]
    assert after["rollout"] == {"variant": "B", "members": 6, "delivered": 6, "interacted": 0}
    audited = await AuditEvent.filter(notice_id=notice_id, kind="notice.variant_assigned", member_id__in=held,
                                      ).values_list("member_id", "data")
    assert {m for m, data in audited if data.get("rollout") and data["variant"] == "B"} == set(held)

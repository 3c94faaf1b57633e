"""Review (audience): who a notice goes to. Each test demonstrates one defect through a real surface
(signed Slack requests to the app, the fake Slack API, the CLI in process) and passes once it is fixed."""

from __future__ import annotations

from bot.channels.slack_blocks import SEND_ACTION
from bot.core.directory.importer import import_directory
from storage.models import Delivery
from tests.support import CAM_USER, TEAM, SlackHarness, directory_csv


def _texts(blocks: list[dict]) -> str:
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            text = element.get("text")
            out.append(text.get("text", "") if isinstance(text, dict) else (text or ""))
    return "\n".join(out)


async def _preview(slack: SlackHarness, text: str) -> tuple[str, int]:
    """`/herald <text>` as the CAM: the preview's text and the draft's id (its Send button)."""
    response, _, key = await slack.command(text)
    assert response.status == 200, response.body
    (call,) = await slack.responses(key)
    blocks = call.args.get("blocks") or []
    notice_id = next((int(e["value"]) for b in blocks if b["type"] == "actions" for e in b["elements"]
                      if e["action_id"] == SEND_ACTION), 0)
    return _texts(blocks) or call.args.get("text", ""), notice_id


async def _add_partner(slack: SlackHarness, row: str, user: str) -> None:
    """One more partner contact (with a Slack account the fake knows) in the seeded directory."""
    slack.fake.add_user(TEAM, user)
    result = await import_directory(directory_csv([row]), now=slack.clock.now(), actor="test")
    assert not result.rejected, result.rejected


# --- 4. an A/B test's rollout reaches members who have left the topic since -----------------------

async def test_a_rollout_does_not_send_to_a_member_who_left_the_topic_meanwhile(slack_http: SlackHarness) -> None:
    """README: "Opt-outs apply to nice- and need-to-know notices only", and a survey/notice goes out
    "... the topic's opt-outs" applied. An A/B test's held-back share gets nothing until
    `rollout`, which can be days later; `roll_out` releases every held row of an active member
    without looking at the topic's opt-outs again. A partner who unticked "Incentives" in their
    App Home after the first share went out (and never got this notice) still gets a need-to-know
    incentives DM when the CAM rolls the winner out. (Digests do drop a topic left meanwhile:
    "Leaving a topic also takes its notices out of a digest not yet sent".)"""
    from tests.fakes.slack_signing import event_body, interaction_body
    from tests.support import wait_until
    from storage.models import DeliveryStatus, Member

    slack = slack_http
    users = ["UL1", "UL2", "UL3", "UL4"]
    for user in users:
        slack.fake.add_user(TEAM, user)
    result = await import_directory(directory_csv([
        f"lockco,Lock Co,gold,emea,gb,security,small,reseller,cam@vendor.example,{u.lower()}@lockco.example,"
        f"Person {u},sales,UTC,en,{TEAM},{u},," for u in users]), now=slack.clock.now(), actor="test")
    assert not result.rejected

    text, notice_id = await _preview(slack, "send need-to-know incentives org:lockco share:50% | Spring rebate | "
                                            "Up to 5% back || Spring rebate: act now | 5% back until March")
    assert "4 recipients*" in text, text
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()
    held = await Delivery.filter(notice_id=notice_id, status=DeliveryStatus.HELD.value).values_list("member_id", flat=True)
    assert held, "the 50% share holds some members back"
    leaver = await Member.get(id=held[0]).prefetch_related("accounts")
    leaver_user = next(u for u in users if u.lower() + "@lockco.example" == leaver.email)

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

    assert [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == f"D{leaver_user}"] == []
    slack.clock.advance(days=3)
    _, _, key = await slack.command(f"rollout {notice_id} B")
    await slack.responses(key)
    await slack.herald.outbox.drain()
    to_leaver = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == f"D{leaver_user}"]
    assert to_leaver == [], "the member who left Incentives was sent the rolled-out incentives notice"

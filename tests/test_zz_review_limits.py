"""Review (area: platform message size and shape limits). Each test demonstrates a defect: a
message Herald builds that Slack or Teams would refuse or silently cut, or a fake kinder than the
platform it stands in for. They fail on the current code and pass once the defect is fixed."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.handlers.slack.common import SORRY
from bot.core.directory.importer import import_directory
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_signing import event_body
from bot.core.commands.parser import SendCommand
from bot.core.notices import sending as notices
from tests.support import TEAM, Rig, SlackHarness, directory_csv, seed_directory, start_harness, stop_harness, wait_until
from tests.teams_support import TeamsRig

pytestmark = pytest.mark.usefixtures("warm_knowledge_base")


# ---- 1. a long link: an apology and a stack trace instead of a clear refusal ----------------------

async def test_a_link_too_long_to_store_is_refused_with_a_clear_message(slack_http: SlackHarness) -> None:
    """`link:` is never length-checked (parser.parse_link, sending.validate), but Notice.link is a
    CharField(max_length=1000) that tortoise validates on save (and PostgreSQL's varchar(1000)
    enforces): a 1,200-character link (a pre-signed download, a SafeLinks-wrapped SharePoint URL)
    makes `/herald send` answer "Sorry, something went wrong" with a traceback in the log. SPEC:
    "bad input gets a clear message, never a stack trace". The same holds for the compose modal's
    Link field and `herald send --link`. (Slack's own cap for a button url is 3,000 characters.)"""
    link = "https://files.vendor.example/recall.pdf?X-Amz-Signature=" + "a" * 1_150
    _, _, key = await slack_http.command(f"send must-know announcements all link:{link} | Recall of LX-200 | Stop")
    (reply,) = await slack_http.responses(key)
    text = reply.args.get("text", "")
    assert text != SORRY and "link" in text.lower(), (
        f"a {len(link)}-character link got {text!r} instead of a refusal naming the link's length")


# ---- 2. chat replies with no bound: `progress` for a CAM with many partner members ---------------

def _many_members(count: int, *, orgs: int = 12, slack: bool = False) -> str:
    """`count` partner members across `orgs` organisations, all managed by cam@vendor.example."""
    rows = []
    for i in range(count):
        org = i % orgs
        ids = f"{TEAM},UBULK{i:05d}" if slack else ","
        rows.append(f"bulk{org:02d},Bulk Partner {org:02d} GmbH,silver,emea,de,retail,medium,reseller,"
                    f"cam@vendor.example,person{i:05d}@bulk{org:02d}.example,Person {i:05d} Lastname,sales,"
                    f"Europe/Berlin,de,{ids},,")
    return directory_csv(rows)


async def test_teams_progress_for_many_members_still_reaches_the_cam(teams: TeamsRig) -> None:
    """Teams refuses a bot message over ~100 KB (the payload counted as UTF-16) with 413
    MessageSizeTooBig (learn.microsoft.com/microsoftteams/platform/bots/how-to/format-your-bot-messages;
    the fake Bot Connector keeps that limit). `progress` answers one Markdown line per active member
    of every organisation the CAM manages (teams_replies.result_markdown → runner.progress_text), with
    no cap: for a CAM with 1,200 partner members the reply is ~250 KB, the connector answers 413, the
    handler only logs a warning (TeamsHandler.reply) and the CAM sees nothing at all."""
    result = await import_directory(_many_members(1_200), now=teams.clock.now(), actor="test")
    assert not result.rejected
    conversation = "a:conv-aad-cam"
    before = len(teams.connector.activities(conversation))
    status, _ = await teams.post(teams.activity("message", "aad-cam", text="progress"))
    assert status == 200
    refused = [c for c in teams.connector.calls if c.conversation_id == conversation and c.status == 413]
    sent = teams.connector.activities(conversation)[before:]
    assert sent and not refused, (
        f"the `progress` reply never reached the CAM: the Bot Connector answered {[c.status for c in refused]} "
        f"({[c.error_code for c in refused]}) and nothing was shown instead")


async def test_slack_progress_for_many_members_is_not_cut_by_slack(slack_http: SlackHarness) -> None:
    """Slack truncates a message's `text` beyond 40,000 characters (docs.slack.dev/reference/methods/
    chat.postMessage, "Truncating content"; the changelog 2018-04 "truncating really long messages").
    `/herald progress` answers one line per member in a single text (replies.render → progress_text)
    with no cap and no "… and N more": for 1,200 members it is ~60,000 characters, so the last third of
    the CAM's partners silently disappear from the answer. (The fake Slack API keeps no text limit,
    which is how this went unnoticed.)"""
    result = await import_directory(_many_members(1_200), now=slack_http.clock.now(), actor="test")
    assert not result.rejected
    _, _, key = await slack_http.command("progress")
    (reply,) = await slack_http.responses(key)
    text = reply.args.get("text", "")
    assert len(text) <= 40_000, f"the `progress` reply is {len(text):,} characters; Slack keeps only the first 40,000"


# ---- 3. the topic catalog vs Block Kit's select and option limits -------------------------------

LONG_TITLE = "Product updates: Industrial Automation, Building Technologies & Smart Infrastructure"  # 84


def _topics_file(tmp_path: Path, topics: dict[str, str]) -> Path:
    lines = ["roles: [sales, support, marketing, technical, executive, operations]", "topics:"]
    for key, title in topics.items():
        lines += [f"  {key}:", f"    title: \"{title}\"", "    roles: [all]", "    opt_out: true"]
    path = tmp_path / "topics.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.asynccontextmanager
async def _slack_with_topics(db: str, tmp_path: Path, topics: dict[str, str]):
    harness = await start_harness(db, extra_settings={"topics_file": _topics_file(tmp_path, topics)})
    await seed_directory(harness.clock)
    try:
        yield harness
    finally:
        await stop_harness(harness)


CATALOGS = {
    # a vendor with a topic per product line: 101 topics
    "101-topics": {"announcements": "Announcements", **{f"line-{i:03d}": f"Product line {i:03d}" for i in range(100)}},
    # one descriptive topic title longer than an option's 75 characters
    "long-title": {"announcements": "Announcements", "automation": LONG_TITLE},
}


@pytest.mark.parametrize("catalog", sorted(CATALOGS))
async def test_the_compose_modal_opens_whatever_the_topic_catalog(db: str, tmp_path: Path, catalog: str) -> None:
    """Block Kit: a static_select holds at most 100 options and an option's text at most 75
    characters (api.slack.com/reference/block-kit/block-elements#static_select, composition-objects#option);
    Slack refuses a view that breaks either (the fake answers invalid_arguments, as Slack does).
    slack_blocks.compose_modal lists every topic in one static_select and cuts option text at 150
    (`_plain(label)`; the survey modal uses 75), and load_catalog checks neither: with such a catalog
    `/herald send` opens nothing and the CAM cannot compose a notice in Slack at all."""
    async with _slack_with_topics(db, tmp_path, CATALOGS[catalog]) as slack:
        await slack.command("send")
        (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="views.open")
        topic_options = opened.args["view"]["blocks"][0]["element"].get("options", [])
        assert opened.error is None, (
            f"Slack refused the compose modal ({opened.error}): {len(topic_options)} topic options, the longest "
            f"{max(len(o['text']['text']) for o in topic_options)} characters")


async def test_the_home_tab_shows_a_topic_with_a_long_title(db: str, tmp_path: Path) -> None:
    """The App Home's topic checkboxes cut each option's text at 150 characters (home_view:
    `_plain(catalog.topics[k].title)`); Slack allows 75 in an option, so one long topic title makes
    views.publish fail and the member's Home tab (their only place to change preferences in Slack)
    stays empty."""
    async with _slack_with_topics(db, tmp_path, CATALOGS["long-title"]) as slack:
        await slack.post_signed(event_body({"type": "app_home_opened", "user": "UANNA", "tab": "home"}, TEAM))
        (published,) = await wait_until(lambda: slack.fake.calls_to("views.publish"), what="the home tab")
        assert published.error is None, f"Slack refused the Home tab: {published.error}"


# ---- 4. the fake Slack API is kinder than Slack ------------------------------------------------

_BUTTON = {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "ok"}, "value": "1"}
_OPTION = {"text": {"type": "plain_text", "text": "One"}, "value": "1"}

# Each is a message Slack refuses with invalid_blocks (api.slack.com/reference/block-kit/blocks and
# /composition-objects): the fake (tests/fakes/block_kit.block_problems) accepts every one.
MESSAGES_SLACK_REFUSES = {
    # "block_id ... Maximum length for this field is 255 characters" (every block)
    "block_id-256": [{"type": "section", "block_id": "b" * 256, "text": {"type": "mrkdwn", "text": "t"}}],
    # section "fields ... Maximum number of items is 10. Maximum length for the text in each item is 2000"
    "section-11-fields": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
    "section-field-2001": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
    # text object "minimum length for this field is 1"
    "section-empty-text": [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}],
    # option object "value ... Maximum length for this field is 150 characters"
    "option-value-151": [{"type": "section", "text": {"type": "mrkdwn", "text": "t"}, "accessory": {
        "type": "static_select", "action_id": "s", "options": [{**_OPTION, "value": "v" * 151}]}}],
    # context elements are text objects: 3,000 characters at most
    "context-text-3001": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c" * 3001}]}],
}

# Each is a modal Slack refuses (api.slack.com/reference/surfaces/views, /blocks#input,
# /block-elements#input): the fake (view_problems) accepts every one.
_INPUT = {"type": "input", "block_id": "i", "label": {"type": "plain_text", "text": "Label"},
          "element": {"type": "plain_text_input", "action_id": "value"}}
VIEWS_SLACK_REFUSES = {
    # view "private_metadata ... Max length of 3000 characters"
    "private_metadata-3001": {"private_metadata": "m" * 3001, "blocks": [_INPUT]},
    # view "callback_id ... Max length of 255 characters"
    "callback_id-256": {"callback_id": "c" * 256, "blocks": [_INPUT]},
    # input block "label ... Maximum length for the text in this field is 2000 characters"
    "input-label-2001": {"blocks": [{**_INPUT, "label": {"type": "plain_text", "text": "l" * 2001}}]},
    # plain_text_input "max_length ... Maximum value is 3000"
    "input-max_length-3001": {"blocks": [{**_INPUT, "element": {**_INPUT["element"], "max_length": 3001}}]},
    # plain_text_input "placeholder ... Maximum length for the text in this field is 150 characters"
    "input-placeholder-151": {"blocks": [{**_INPUT, "element": {
        **_INPUT["element"], "placeholder": {"type": "plain_text", "text": "p" * 151}}}]},
}


@pytest.mark.parametrize("case", sorted(MESSAGES_SLACK_REFUSES))
async def test_the_fake_slack_api_refuses_messages_slack_refuses(case: str) -> None:
    """A fake that accepts what Slack answers with invalid_blocks hides exactly the defect it exists
    to catch: Herald's own tests would pass while real members get nothing."""
    async with FakeSlackAPI() as fake:
        fake.add_workspace("T1", "xoxb-1")
        fake.add_user("T1", "U1")
        client = AsyncWebClient(token="xoxb-1", base_url=fake.url)
        try:
            await client.chat_postMessage(channel="U1", text="t", blocks=MESSAGES_SLACK_REFUSES[case])
        except SlackApiError as exc:
            assert exc.response["error"] == "invalid_blocks"
            return
        pytest.fail(f"the fake Slack API accepted a message Slack refuses with invalid_blocks ({case})")


@pytest.mark.parametrize("case", sorted(VIEWS_SLACK_REFUSES))
async def test_the_fake_slack_api_refuses_views_slack_refuses(case: str) -> None:
    async with FakeSlackAPI() as fake:
        fake.add_workspace("T1", "xoxb-1")
        client = AsyncWebClient(token="xoxb-1", base_url=fake.url)
        view = {"type": "modal", "title": {"type": "plain_text", "text": "Herald"}, **VIEWS_SLACK_REFUSES[case]}
        try:
            await client.views_open(trigger_id="1.1.t", view=view)
        except SlackApiError as exc:
            assert exc.response["error"] == "invalid_arguments"
            return
        pytest.fail(f"the fake Slack API opened a modal Slack refuses ({case})")


async def test_the_fake_slack_api_truncates_text_as_slack_does() -> None:
    """chat.postMessage: "Slack will truncate messages containing more than 40,000 characters". The
    fake keeps all of it, so a test reading the conversation back sees text no member would."""
    async with FakeSlackAPI() as fake:
        fake.add_workspace("T1", "xoxb-1")
        fake.add_user("T1", "U1")
        client = AsyncWebClient(token="xoxb-1", base_url=fake.url)
        posted = await client.chat_postMessage(channel="U1", text="x" * 45_000)
        history = await client.conversations_history(channel=posted["channel"])
        stored = history["messages"][0]["text"]
        assert len(stored) <= 40_000, f"the fake kept all {len(stored):,} characters of the text"


# ---- 5. a must-know title at the documented maximum loses its end in Slack ---------------------

async def test_a_must_know_title_of_150_characters_is_shown_whole_in_slack(rig: Rig) -> None:
    """Titles may be 150 characters (sending.MAX_TITLE; "keep it under 150"). A must-know notice's
    Slack header is "CRITICAL: <title>" (a reminder's "Reminder: <title>"), cut at Block Kit's 150
    (slack_blocks.notice_blocks → `_plain(_heading(view))`), and the title appears nowhere else in
    the blocks: the last ten characters of the title (here: which lots are recalled) never reach
    a Slack member. Teams shows the whole title."""
    title = ("Recall: stop selling and quarantine every LX-200 smart lock shipped since March, the latch "
             "can fail open in cold weather; affected lots no. 4711-47990")
    assert len(title) == 150
    command = SendCommand(importance="must-know", topic="announcements", audience="all", title=title,
                          body="Return them to the distributor.")
    preview = await notices.create_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test")
    await rig.herald.outbox.drain()
    (posted, *_) = rig.fake.calls_to("chat.postMessage")
    shown = json.dumps(posted.args["blocks"], ensure_ascii=False)
    assert title in shown, (
        f"the Slack copy shows {posted.args['blocks'][0]['text']['text']!r}: the title's end "
        f"{title[-12:]!r} is cut off")

"""Slack's external file upload, streamed from a file (bot.channels.slack_upload): the report CSV
of a large notice reaches the requester's DM whole, without being held in memory."""

from __future__ import annotations

import tempfile
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

import pytest

from bot.channels.slack_blocks import SEND_ACTION
from bot.channels.slack_upload import upload_file
from bot.core.compliance.reports import report_chunks
from bot.handlers.slack.common import SORRY
from bot.handlers.slack.replies import SlackCommands
from tests.support import CAM_USER, SlackHarness, listeners_done


class _UploadEndpoint:
    """files.getUploadURLExternal / the upload URL / files.completeUploadExternal, counting the bytes
    posted as they arrive (keeping none), so the measured memory is the sender's."""

    def __init__(self) -> None:
        self.received = 0
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.server: TestServer | None = None
        self.session = None  # AsyncWebClient's attributes upload_file reads
        self.proxy = None
        self.ssl = None
        self.timeout = 30

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/upload/F1", self._upload)
        self.server = TestServer(app)
        await self.server.start_server()

    async def _upload(self, request: web.Request) -> web.Response:
        async for chunk in request.content.iter_chunked(1 << 16):
            self.received += len(chunk)
        return web.Response(text=f"OK - {self.received}")

    async def files_getUploadURLExternal(self, **args: Any) -> dict[str, Any]:  # noqa: N802 - Slack's name
        self.calls.append(("files.getUploadURLExternal", args))
        return {"ok": True, "file_id": "F1", "upload_url": str(self.server.make_url("/upload/F1"))}  # type: ignore[union-attr]

    async def files_completeUploadExternal(self, **args: Any) -> dict[str, Any]:  # noqa: N802
        self.calls.append(("files.completeUploadExternal", args))
        return {"ok": True, "files": [{"id": "F1"}]}


async def test_a_large_file_is_uploaded_in_chunks_not_held_in_memory() -> None:
    """slack_sdk's files_upload_v2 reads the whole file into memory before posting it, and Herald
    built the report CSV as one string first: a 100,000-recipient report sat in memory two or three
    times over. upload_file declares the length, streams the file and shares it: 16 MB go up with
    about a megabyte allocated at the peak (the test server included)."""
    endpoint = _UploadEndpoint()
    await endpoint.start()
    size = 16 * 1024 * 1024
    try:
        with tempfile.TemporaryFile() as source:
            for _ in range(size // 65536):
                source.write(b"x" * 65535 + b"\n")
            tracemalloc.start()
            try:
                await upload_file(endpoint, source, filename="big.csv", title="Big", channel="D1",  # type: ignore[arg-type]
                                  initial_comment="here")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        await endpoint.server.close()  # type: ignore[union-attr]

    assert endpoint.received == size
    assert endpoint.calls == [("files.getUploadURLExternal", {"filename": "big.csv", "length": size}),
                              ("files.completeUploadExternal", {"files": [{"id": "F1", "title": "Big"}],
                                                                "channel_id": "D1", "initial_comment": "here"})]
    assert peak < size // 8, f"{peak} bytes allocated at the peak to upload {size}"  # whole: at least `size`


async def test_the_report_command_shares_the_whole_csv_in_the_requesters_dm(slack: SlackHarness) -> None:
    """`report <id>`: the CSV goes to the requester's DM through the streamed upload, the length
    declared up front the length sent, the content the report's."""
    slack.clock.set(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    _, _, key = await slack.command("send must-know operations tier:gold | Recall | Stop selling LX-200")
    (preview,) = await slack.responses(key)
    notice_id = int(next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions"
                         for e in b["elements"] if e["action_id"] == SEND_ACTION))
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()

    _, _, key = await slack.command(f"report {notice_id}")
    (answer,) = await slack.responses(key)

    (shared,) = slack.fake.shared_files
    expected = "".join([c async for c in report_chunks(notice_id, "csv", reader=None, now=slack.clock.now(), actor="test")])
    assert shared["filename"] == f"notice-{notice_id}-report.csv" and shared["channel_id"] == f"D{CAM_USER}"
    assert shared["length"] == len(shared["content"])
    def without_head(text: str) -> list[str]:  # each export names the audit chain head after its own event
        return [line for line in text.splitlines() if not line.startswith("# audit_chain_head")]

    assert without_head(shared["content"].decode("utf-8")) == without_head(expected)
    assert "direct messages" in answer.args["text"]
    assert [e for e in await _report_events(notice_id) if e[1] != "test"] == [  # "test": `expected` above
        ("report.exported", "cam@vendor.example", None), ("report.delivered", "cam@vendor.example", "slack")]


async def _report_events(notice_id: int) -> list[tuple[str, str, str | None]]:
    """The notice's report events in the audit trail, in order: (kind, actor, platform)."""
    from storage.models import AuditEvent

    events = await AuditEvent.filter(notice_id=notice_id, kind__startswith="report.").order_by("seq")
    return [(e.kind, e.actor, e.data.get("platform")) for e in events]


async def _sent_notice(slack: SlackHarness) -> int:
    _, _, key = await slack.command("send must-know operations tier:gold | Recall | Stop selling LX-200")
    (preview,) = await slack.responses(key)
    notice_id = int(next(e["value"] for b in preview.args["blocks"] if b["type"] == "actions"
                         for e in b["elements"] if e["action_id"] == SEND_ACTION))
    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)
    await slack.herald.outbox.drain()
    return notice_id


def _pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The report's pauses, recorded instead of waited for."""
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(SlackCommands, "sleep", staticmethod(pause))
    return pauses


async def test_a_throttled_report_upload_is_not_reported_as_herald_failing(
        slack_http: SlackHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """`/herald report <id>` opens the CAM's DM (conversations.open, Tier 3, the budget the
    outbox's crash checks use too) and uploads there (Tier 4) straight from the listener. A 429 is
    Slack saying "in N seconds": it used to end in "Sorry, something went wrong on Herald's side"
    and no report; now the step is tried again after the Retry-After and the report arrives."""
    slack = slack_http
    pauses = _pauses(monkeypatch)
    notice_id = await _sent_notice(slack)
    slack.fake.fail_next("conversations.open", retry_after=2)  # Slack: 429, Retry-After: 2
    slack.fake.fail_next("files.completeUploadExternal", retry_after=3)
    _, _, key = await slack.command(f"report {notice_id}")
    (answer,) = await slack.responses(key)
    await listeners_done(slack)
    assert answer.args["text"] != SORRY and "direct messages" in answer.args["text"]
    assert pauses == [2.0, 3.0]
    (shared,) = slack.fake.shared_files
    assert shared["filename"] == f"notice-{notice_id}-report.csv" and shared["channel_id"] == f"D{CAM_USER}"


async def test_a_report_slack_keeps_throttling_says_when_to_try_again(
        slack_http: SlackHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past a few tries (at most a minute of pauses) the CAM gets the summary and "Slack is busy;
    try again in N s", not Herald's own failure."""
    slack = slack_http
    pauses = _pauses(monkeypatch)
    notice_id = await _sent_notice(slack)
    slack.fake.fail_next("conversations.open", retry_after=25, times=10)
    _, _, key = await slack.command(f"report {notice_id}")
    (answer,) = await slack.responses(key)
    await listeners_done(slack)
    assert "Slack is busy" in answer.args["text"] and "try again in 25 s" in answer.args["text"]
    assert "Recall" in answer.args["text"]  # the summary is still there
    assert pauses == [25.0, 25.0] and not slack.fake.shared_files


async def test_a_report_whose_upload_fails_is_audited_as_exported_not_delivered(slack: SlackHarness) -> None:
    """`report.exported` is written as the export starts (the report names a head that includes
    it); whether the CSV reached the requester is its outcome, `report.delivered`. When Slack
    refuses the upload the requester is told and the trail shows an export that was not delivered."""
    notice_id = await _sent_notice(slack)
    slack.fake.fail_next("files.completeUploadExternal", error="internal_error")

    _, _, key = await slack.command(f"report {notice_id}")
    (answer,) = await slack.responses(key)

    assert "went wrong" in answer.args["text"] and not slack.fake.shared_files
    assert await _report_events(notice_id) == [("report.exported", "cam@vendor.example", None)]

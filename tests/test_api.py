"""The reports HTTP API over real HTTP: authentication, roles, streaming reports, errors, OpenAPI."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import build_app
from bot.core.commands.runner import StaffCommands
from bot.handlers.slack.replies import summary_text
from bot.core.compliance.api_tokens import create_token, revoke_token
from bot.common.clock import ManualClock
from config.settings import load_settings
from bot.core.compliance.reports import SUMMARY_COLUMNS
from storage.models import ApiToken, AuditEvent, Organisation, Staff
from tests.test_reports import (
    EXPECTED_HEADER,
    EXPECTED_ROWS,
    NOW,
    Fixture,
    expected_json_rows,
    expected_summary,
    seed_reports,
    split_csv,
)

API = "/api/v1"


@dataclass
class Api:
    client: TestClient
    clock: ManualClock
    fx: Fixture
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def get(self, path: str, who: str | None = None, **kwargs):
        return await self.client.get(path, headers=self.auth(who) if who else kwargs.pop("headers", None), **kwargs)


@pytest.fixture
async def api(db: str) -> AsyncIterator[Api]:
    fx = await seed_reports()
    clock = ManualClock(NOW)
    tokens = {}
    for who, email in [("compliance", "audit@vendor.example"), ("admin", "admin@vendor.example"),
                       ("cam", "cam@vendor.example"), ("other_cam", "other@vendor.example")]:
        tokens[who] = (await create_token(email, now=clock.now()))[1]
    app = build_app(load_settings(database_url=db), clock=clock, run_worker=False, manage_database=False)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, clock, fx, tokens)


async def assert_error(response, status: int, code: str, text: str = "") -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"] == code and isinstance(body["message"], str) and text in body["message"]
    return body


# ---- authentication -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [f"{API}/notices", f"{API}/notices/1", f"{API}/notices/1/report",
                                  f"{API}/reports/summary?since=2026-01-01&until=2026-01-31", f"{API}/audit/verify"])
async def test_every_endpoint_needs_a_token(api: Api, path: str) -> None:
    response = await api.client.get(path)
    await assert_error(response, 401, "unauthorized", "Authorization: Bearer")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for header in ({"Authorization": "Bearer hrld_not-a-real-token"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                   {"Authorization": "Bearer"}, {"Authorization": "Bearer " + "x" * 5000}):
        response = await api.client.get(path, headers=header)
        await assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_token_in_the_query_string_is_refused_saying_how_to_send_it(api: Api) -> None:
    """A BI tool configured with `?access_token=hrld_...` (as some APIs take it) was told 'an API
    token is required', though it had sent one: nothing said the URL is the wrong place, nor that
    a token put in a URL has been through logs and proxies. It is still refused (401), saying so."""
    token = api.tokens["compliance"]
    for query in (f"access_token={token}", f"token={token}", f"api_key={token}", f"t={token}"):
        response = await api.client.get(f"{API}/notices?{query}")
        body = await assert_error(response, 401, "unauthorized", "in the URL is not accepted")
        assert "Authorization: Bearer" in body["message"] and "herald token revoke" in body["message"]
        assert token not in body["message"]
    await assert_error(await api.client.get(f"{API}/notices?limit=5"), 401, "unauthorized", "token is required")


async def test_revoked_token_and_inactive_staff_are_refused(api: Api) -> None:
    assert (await api.get(f"{API}/notices", "cam")).status == 200
    row = await ApiToken.filter(staff_id=api.fx.cam.id).first()
    await revoke_token(row.id, now=NOW)
    response = await api.get(f"{API}/notices", "cam")
    await assert_error(response, 401, "unauthorized", "revoked")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    api.fx.compliance.active = False
    await api.fx.compliance.save()
    await assert_error(await api.get(f"{API}/notices", "compliance"), 401, "unauthorized")


async def test_a_token_reads_with_the_role_it_was_created_with(api: Api) -> None:
    """A CAM's token handed to a dashboard acted with the CAM's current role: once they were made
    admin it listed and opened every notice, with every partner's recipients, and ran the audit
    check. A token keeps the role it was created with; should the person's role change to one that
    reads less, it reads only what both allow."""
    fx = api.fx
    await Staff.filter(id=fx.cam.id).update(role="admin")  # the CAM is promoted
    mine = await (await api.get(f"{API}/notices", "cam")).json()
    assert [n["id"] for n in mine["notices"]] == [fx.draft.id, fx.notice.id]  # still a CAM's list
    await assert_error(await api.get(f"{API}/notices/{fx.other.id}", "cam"), 403, "forbidden")
    await assert_error(await api.get(f"{API}/audit/verify", "cam"), 403, "forbidden")
    fresh = (await create_token("cam@vendor.example", now=api.clock.now()))[1]  # a new token: the new role
    everything = await (await api.client.get(f"{API}/notices", headers={"Authorization": f"Bearer {fresh}"})).json()
    assert [n["id"] for n in everything["notices"]] == [fx.draft.id, fx.other.id, fx.notice.id]

    await Staff.filter(id=fx.admin.id).update(role="cam")  # an admin made a CAM: their token reads as a CAM
    assert (await (await api.get(f"{API}/notices", "admin")).json())["notices"] == []
    await assert_error(await api.get(f"{API}/notices/{fx.notice.id}", "admin"), 403, "forbidden")
    await assert_error(await api.get(f"{API}/audit/verify", "admin"), 403, "forbidden")

    await Staff.filter(id=fx.compliance.id).update(role="admin")  # both read every notice
    assert len((await (await api.get(f"{API}/notices", "compliance")).json())["notices"]) == 3
    assert [t.role for t in await ApiToken.filter(staff_id=fx.cam.id).order_by("id")] == ["cam", "admin"]


async def test_an_expired_token_is_refused_saying_when_and_what_to_do(api: Api) -> None:
    """Tokens never expired: one handed to a tool years ago still read every report. A token now
    expires (365 days after creation by default); past it, a 401 says when it expired and how to
    get a new one, and its use is not recorded."""
    expiry = NOW + timedelta(days=365)
    api.clock.set(expiry - timedelta(seconds=1))
    assert (await api.get(f"{API}/notices", "compliance")).status == 200
    api.clock.set(expiry)
    response = await api.get(f"{API}/notices", "compliance")
    body = await assert_error(response, 401, "token_expired", "this token expired on 2027-01-12 08:00 UTC")
    assert "herald token create" in body["message"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    row = await ApiToken.get(staff_id=api.fx.compliance.id)
    assert row.expires_at == expiry and row.last_used_at == expiry - timedelta(seconds=1)
    _, forever = await create_token("audit@vendor.example", now=api.clock.now(), expires_at=None)
    api.clock.set(NOW + timedelta(days=3650))
    assert (await api.client.get(f"{API}/notices", headers={"Authorization": f"Bearer {forever}"})).status == 200


async def test_token_use_is_recorded(api: Api) -> None:
    await api.get(f"{API}/notices", "admin")
    row = await ApiToken.get(staff_id=api.fx.admin.id)
    assert row.last_used_at == NOW


# ---- notices ------------------------------------------------------------------------------------

async def test_list_is_filtered_by_role_and_paged(api: Api) -> None:
    fx = api.fx
    everything = await (await api.get(f"{API}/notices", "compliance")).json()
    assert [n["id"] for n in everything["notices"]] == [fx.draft.id, fx.other.id, fx.notice.id]
    assert everything["next_before"] is None
    first = everything["notices"][2]
    assert first == {"id": fx.notice.id, "title": "Recall of LX-200", "topic": "operations",
                     "importance": "must-know", "status": "sent", "audience": "tier:gold tier:silver",
                     "author": "cam@vendor.example", "created_at": "2026-01-05T09:00:00Z",
                     "sent_at": "2026-01-05T09:01:00Z", "deadline": "2026-01-10T17:00:00Z", "recipients": 5,
                     "report": f"{API}/notices/{fx.notice.id}/report"}

    mine = await (await api.get(f"{API}/notices", "cam")).json()
    assert [n["id"] for n in mine["notices"]] == [fx.draft.id, fx.notice.id]  # not the other CAM's notice
    theirs = await (await api.get(f"{API}/notices", "other_cam")).json()
    assert [n["id"] for n in theirs["notices"]] == [fx.other.id]

    page = await (await api.get(f"{API}/notices?limit=2", "admin")).json()
    assert [n["id"] for n in page["notices"]] == [fx.draft.id, fx.other.id] and page["next_before"] == fx.other.id
    rest = await (await api.get(f"{API}/notices?limit=2&before={page['next_before']}", "admin")).json()
    assert [n["id"] for n in rest["notices"]] == [fx.notice.id] and rest["next_before"] is None


async def test_a_cam_lists_the_notices_escalated_to_them_as_they_open_them(api: Api) -> None:
    """One rule for reading notices (`reports.can_read_notice`) on every surface: once the directory
    names the other CAM for Bolt, they may open the notice escalated for Bolt (its Open report
    button), and it is in their API list and console list too, with its author in the console's
    author filter. The CAM who wrote it still sees it, as its author."""
    from bot.core.insights.notices import NoticeFilters, list_notices

    fx = api.fx
    await Organisation.filter(external_id="bolt").update(cam_email="Other@vendor.example")
    assert (await api.get(f"{API}/notices/{fx.notice.id}", "other_cam")).status == 200
    theirs = await (await api.get(f"{API}/notices", "other_cam")).json()
    assert [n["id"] for n in theirs["notices"]] == [fx.other.id, fx.notice.id]
    page = await list_notices(await Staff.get(email="other@vendor.example"), NoticeFilters())
    assert [row.notice.id for row in page.rows] == [fx.other.id, fx.notice.id]
    assert page.authors == ["cam@vendor.example", "other@vendor.example"]
    mine = await (await api.get(f"{API}/notices", "cam")).json()
    assert [n["id"] for n in mine["notices"]] == [fx.draft.id, fx.notice.id]  # still the author's


async def test_notice_detail_and_access(api: Api) -> None:
    fx = api.fx
    for who in ("compliance", "admin", "cam"):
        response = await api.get(f"{API}/notices/{fx.notice.id}", who)
        assert response.status == 200, await response.text()
        data = await response.json()
        assert data["notice"]["id"] == fx.notice.id and data["notice"]["author"] == "cam@vendor.example"
        assert data["summary"] == expected_summary(fx.notice.id)
        assert [r["revision"] for r in data["revisions"]] == [1, 2]
    await assert_error(await api.get(f"{API}/notices/{fx.notice.id}", "other_cam"), 403, "forbidden")
    await assert_error(await api.get(f"{API}/notices/{fx.other.id}", "cam"), 403, "forbidden")
    await assert_error(await api.get(f"{API}/notices/999", "compliance"), 404, "not_found", "notice 999 does not exist")


# ---- reports ------------------------------------------------------------------------------------

async def test_csv_report_streams_with_headers(api: Api) -> None:
    fx = api.fx
    response = await api.get(f"{API}/notices/{fx.notice.id}/report?format=csv", "compliance")
    assert response.status == 200
    assert response.content_type == "text/csv" and response.charset == "utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="notice-{fx.notice.id}-report.csv"'
    assert response.headers.get("Transfer-Encoding") == "chunked"
    meta, table = split_csv(await response.text())
    assert table == [EXPECTED_HEADER, *EXPECTED_ROWS]
    assert meta["produced_at"] == "2026-01-12T08:00:00Z" and meta["notice_id"] == str(fx.notice.id)
    event = await AuditEvent.get(kind="report.exported", notice_id=fx.notice.id)
    assert event.actor == "api:audit@vendor.example" and event.data == {"format": "csv"}

    default = await api.get(f"{API}/notices/{fx.notice.id}/report", "cam")  # csv by default; the author may read
    assert default.status == 200 and default.content_type == "text/csv"
    assert list(csv.reader(io.StringIO((await default.text()).split("\norganisation_id,", 1)[1])))[1:] == EXPECTED_ROWS


async def test_a_download_cut_off_is_told_apart_from_one_received_whole(api: Api, monkeypatch) -> None:
    """The audit trail said `report.exported` for every API download, whole or not: a compliance
    tool whose connection dropped halfway left the same trail as one that filed the report, and
    nothing told an auditor the export never completed (chat's reports record `report.delivered`
    once the CSV is in the DM). A download sent whole is now followed by `report.delivered`
    (platform api); one the client walked away from has none."""
    import asyncio

    import bot.api as api_module

    fx = api.fx
    whole = await api.get(f"{API}/notices/{fx.notice.id}/report?format=json", "compliance")
    assert whole.status == 200 and json.loads(await whole.text())["rows"] == expected_json_rows()
    exported = await AuditEvent.get(kind="report.exported")
    delivered = await AuditEvent.get(kind="report.delivered")
    assert (delivered.notice_id, delivered.actor, delivered.data) == (
        fx.notice.id, "api:audit@vendor.example", {"platform": "api", "format": "json"})
    assert delivered.seq > exported.seq

    real, gate, ended = api_module.report_chunks, asyncio.Event(), asyncio.Event()

    async def held_after_the_first_chunk(*args, **kwargs):  # the rest waits until the client has gone
        chunks = real(*args, **kwargs)
        try:
            async for chunk in chunks:
                yield chunk
                await gate.wait()
        finally:
            await chunks.aclose()
            ended.set()

    recorded = []  # called, if at all, before `ended` wakes this test: the handler goes on from aclose() at once

    async def record_delivered(*args, **kwargs):
        recorded.append(kwargs)

    monkeypatch.setattr(api_module, "report_chunks", held_after_the_first_chunk)
    monkeypatch.setattr(api_module, "record_report_delivered", record_delivered)
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(f"GET {API}/notices/{fx.notice.id}/report HTTP/1.1\r\nHost: herald\r\n"
                 f"Authorization: Bearer {api.tokens['admin']}\r\n\r\n".encode())
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.close()
    await writer.wait_closed()
    gate.set()
    await asyncio.wait_for(ended.wait(), 10)
    assert await AuditEvent.filter(kind="report.exported", actor="api:admin@vendor.example").count() == 1
    assert recorded == [], "a download the client walked away from was recorded as delivered"


async def test_json_report(api: Api) -> None:
    fx = api.fx
    response = await api.get(f"{API}/notices/{fx.notice.id}/report?format=json", "admin")
    assert response.status == 200 and response.content_type == "application/json"
    assert response.headers["Content-Disposition"] == f'attachment; filename="notice-{fx.notice.id}-report.json"'
    data = json.loads(await response.text())
    assert data["rows"] == expected_json_rows() and data["summary"] == expected_summary(fx.notice.id)
    event = await AuditEvent.get(kind="report.exported", notice_id=fx.notice.id)
    assert data["audit_chain_head"] == {"seq": event.seq, "hash": event.hash}


async def test_an_escalated_report_gives_a_cam_only_their_own_partners_rows(api: Api) -> None:
    """A CAM who may open a colleague's notice only because it was escalated for a partner the
    directory names them CAM of (its **Open report** button) downloaded the whole notice's report:
    every other partner's contacts (names, e-mail addresses, roles, acknowledgement status), for
    partners the directory gives to another CAM. Everywhere else Herald scopes a CAM to their own
    partners (directory, engagement, survey results). The escalated report lists that CAM's
    partners only, says so, and its export's audit event records the scope; compliance, admins
    and the author still get the whole notice."""
    fx = api.fx
    await Organisation.filter(external_id="bolt").update(cam_email="other@vendor.example")
    response = await api.get(f"{API}/notices/{fx.notice.id}/report?format=csv", "other_cam")
    assert response.status == 200, await response.text()
    meta, table = split_csv(await response.text())
    header, rows = table[0], table[1:]
    orgs = {row[header.index("organisation_id")] for row in rows}
    emails = {row[header.index("email")] for row in rows}
    assert orgs == {"bolt"}, (
        f"other@vendor.example is only Bolt's CAM, yet the report lists {sorted(orgs)} "
        f"with {sorted(e for e in emails if not e.endswith('@bolt.example'))}")
    assert meta["scope"].startswith("limited to your partners: 1 of 2 organisations"), meta.get("scope")
    assert meta["recipients"] == "3" and "Acme" not in "\n".join(meta.values())
    event = await AuditEvent.get(kind="report.exported", actor="api:other@vendor.example")
    assert event.data == {"format": "csv", "scope": "partners", "cam": "other@vendor.example",
                          "organisations": ["bolt"]}

    document = json.loads(await (await api.get(f"{API}/notices/{fx.notice.id}/report?format=json", "other_cam")).text())
    assert {r["organisation_id"] for r in document["rows"]} == {"bolt"}
    assert [o["organisation_id"] for o in document["summary"]["organisations"]] == ["bolt"]
    assert document["summary"]["scope"] == {"cam": "other@vendor.example", "organisations": 1, "of_organisations": 2}
    detail = await (await api.get(f"{API}/notices/{fx.notice.id}", "other_cam")).json()
    assert [o["organisation_id"] for o in detail["summary"]["organisations"]] == ["bolt"]
    ready = await StaffCommands(None, api.clock, wake_outbox=lambda: None).report(  # type: ignore[arg-type]
        fx.notice.id, await Staff.get(email="other@vendor.example"))  # `report` in chat
    assert "Limited to your partners: 1 of 2 organisations" in summary_text(ready)
    assert "Acme" not in summary_text(ready) and "Bolt" in summary_text(ready)

    for who in ("compliance", "cam"):  # compliance and the author: the whole notice, as before
        meta, table = split_csv(await (await api.get(f"{API}/notices/{fx.notice.id}/report", who)).text())
        assert table == [EXPECTED_HEADER, *EXPECTED_ROWS] and "scope" not in meta


async def test_an_escalated_notice_gives_a_cam_their_partners_recipient_count(api: Api) -> None:
    """A CAM reading a colleague's notice escalated for their partner (Bolt: 3 recipients) was told
    `recipients: 5` by the list and `recipient_count: 5` by the notice and its JSON report, next to
    a summary and rows of 3: a count a BI tool cannot reconcile, and the reach of partners the
    directory gives another CAM. They now get their partners' count, as the summary; the author,
    compliance and admins the whole notice's."""
    fx = api.fx
    await Organisation.filter(external_id="bolt").update(cam_email="other@vendor.example")
    listed = await (await api.get(f"{API}/notices", "other_cam")).json()
    assert {n["id"]: n["recipients"] for n in listed["notices"]} == {fx.other.id: 1, fx.notice.id: 3}
    detail = await (await api.get(f"{API}/notices/{fx.notice.id}", "other_cam")).json()
    assert detail["notice"]["recipient_count"] == detail["summary"]["recipients"] == 3
    report = json.loads(await (await api.get(f"{API}/notices/{fx.notice.id}/report?format=json", "other_cam")).text())
    assert report["notice"]["recipient_count"] == report["summary"]["recipients"] == len(report["rows"]) == 3
    for who in ("cam", "compliance"):
        listed = await (await api.get(f"{API}/notices", who)).json()
        assert next(n for n in listed["notices"] if n["id"] == fx.notice.id)["recipients"] == 5
        detail = await (await api.get(f"{API}/notices/{fx.notice.id}", who)).json()
        assert detail["notice"]["recipient_count"] == 5
        report = json.loads(await (await api.get(f"{API}/notices/{fx.notice.id}/report?format=json", who)).text())
        assert report["notice"]["recipient_count"] == 5


async def test_report_errors(api: Api) -> None:
    fx = api.fx
    await assert_error(await api.get(f"{API}/notices/{fx.other.id}/report", "cam"), 403, "forbidden")
    await assert_error(await api.get(f"{API}/notices/999/report", "compliance"), 404, "not_found")
    await assert_error(await api.get(f"{API}/notices/{fx.notice.id}/report?format=xml", "compliance"),
                       400, "bad_request", "format must be csv or json")
    await assert_error(await api.get(f"{API}/notices/abc/report", "compliance"), 400, "bad_request")
    await assert_error(await api.get(f"{API}/notices/99999999999999999999", "compliance"), 400, "bad_request")
    await assert_error(await api.get(f"{API}/notices/0/report", "compliance"), 400, "bad_request")
    head = await api.client.head(f"{API}/notices/{fx.notice.id}/report", headers=api.auth("compliance"))
    assert head.status == 405  # a HEAD would be an export nobody receives
    assert await AuditEvent.filter(kind="report.exported").count() == 0  # refused exports are not exports


async def test_a_wrong_path_or_method_under_the_api_gets_a_json_error(api: Api) -> None:
    """The API's errors are JSON `{"error", "message"}` (OpenAPI: Error); a typo in the path
    (/notice/1, /notices/1/reports) or a POST got aiohttp's text/plain "404: Not Found" / "405:
    Method Not Allowed", which a GRC tool's JSON parser cannot read. Outside /api/v1, unchanged."""
    for path in (f"{API}/notice/1", f"{API}/notices/1/reports", f"{API}/"):
        await assert_error(await api.get(path, "compliance"), 404, "not_found", "no such API path")
    wrong_method = await api.client.post(f"{API}/notices", headers=api.auth("compliance"))
    await assert_error(wrong_method, 405, "method_not_allowed", "POST is not allowed")
    assert "GET" in wrong_method.headers["Allow"]
    head = await api.client.head(f"{API}/notices/{api.fx.notice.id}/report", headers=api.auth("compliance"))
    assert head.status == 405 and head.headers["Allow"] == "GET"
    elsewhere = await api.client.get("/no-such-page")
    assert elsewhere.status == 404 and elsewhere.content_type == "text/plain"


@pytest.mark.parametrize("query, message", [
    ("limit=abc", "limit must be a whole number"), ("limit=0", "limit must be between 1 and 200"),
    ("limit=201", "limit must be between"), ("before=-1", "before must be a whole number"),
    ("before=0", "before must be between 1 and"), ("before=99999999999", "before must be between"),
    ("limit=%D9%A3", "limit must be a whole number"), ("limit=1e3", "whole number"),
])
async def test_list_bad_parameters(api: Api, query: str, message: str) -> None:
    await assert_error(await api.get(f"{API}/notices?{query}", "compliance"), 400, "bad_request", message)


# ---- summary and audit --------------------------------------------------------------------------

async def test_summary_endpoint(api: Api) -> None:
    fx = api.fx
    response = await api.get(f"{API}/reports/summary?since=2026-01-01&until=2026-01-31", "compliance")
    assert response.status == 200
    data = await response.json()
    assert data["since"] == "2026-01-01T00:00:00Z" and data["until"] == "2026-02-01T00:00:00Z"
    assert [(n["id"], n["recipients"], n["acknowledged"], n["rate"]) for n in data["notices"]] == [
        (fx.notice.id, 5, 1, 0.3333), (fx.other.id, 1, 0, 0.0)]
    mine = await (await api.get(f"{API}/reports/summary?since=2026-01-01&until=2026-01-31", "cam")).json()
    assert [n["id"] for n in mine["notices"]] == [fx.notice.id]
    filtered = await (await api.get(
        f"{API}/reports/summary?since=2026-01-01&until=2026-01-31&importance=need-to-know&topic=announcements",
        "admin")).json()
    assert [n["id"] for n in filtered["notices"]] == [fx.other.id]
    assert filtered["topic"] == "announcements" and filtered["importance"] == "need-to-know"
    # an export, as a notice's report is: audited, and it names the chain head it was read at
    exports = await AuditEvent.filter(kind="report.exported").order_by("seq")
    assert [e.actor for e in exports] == ["api:audit@vendor.example", "api:cam@vendor.example",
                                          "api:admin@vendor.example"]
    assert exports[0].data["report"] == "summary" and exports[1].data["author_id"] == fx.cam.id
    assert filtered["audit_chain_head"] == {"seq": exports[2].seq, "hash": exports[2].hash}
    assert filtered["produced_at"]
    head = await api.client.head(f"{API}/reports/summary?since=2026-01-01&until=2026-01-31",
                                 headers=api.auth("compliance"))
    assert head.status == 405  # a link preview's HEAD is not an export
    assert await AuditEvent.filter(kind="report.exported").count() == 3


async def test_the_summary_comes_as_csv_when_asked(api: Api) -> None:
    """`format=csv` was ignored: JSON came back (200) to a compliance system that files the summary
    as CSV, as `herald report --since` writes it, and the export was audited as JSON. It is now
    the CLI's CSV, an attachment, audited as csv; JSON stays the default; another format is a 400."""
    fx = api.fx
    response = await api.get(f"{API}/reports/summary?since=2026-01-01&until=2026-01-31&format=csv", "compliance")
    assert response.status == 200 and response.content_type == "text/csv" and response.charset == "utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="summary-20260101T000000Z-20260201T000000Z.csv"')
    meta, rows = split_csv(await response.text())
    assert meta["since"] == "2026-01-01T00:00:00Z (UTC, inclusive)"
    assert rows[0] == list(SUMMARY_COLUMNS) and [r[0] for r in rows[1:]] == [str(fx.notice.id), str(fx.other.id)]
    event = await AuditEvent.get(kind="report.exported")
    assert event.data["format"] == "csv" and meta["audit_chain_head_seq"] == str(event.seq)
    default = await api.get(f"{API}/reports/summary?since=2026-01-01&until=2026-01-31", "compliance")
    assert default.content_type == "application/json" and len((await default.json())["notices"]) == 2
    await assert_error(await api.get(f"{API}/reports/summary?since=2026-01-01&until=2026-01-31&format=xlsx",
                                     "compliance"), 400, "bad_request", "format must be json or csv")
    assert await AuditEvent.filter(kind="report.exported").count() == 2


async def test_a_basic_form_date_as_until_includes_that_day(api: Api) -> None:
    """`until=20260107` (ISO-8601's basic form, as some schedulers write dates) was read as the
    instant 2026-01-07T00:00, so that day's notices were left out of the nightly pull without a
    word, where `until=2026-01-07` includes the whole day. Any bare date now means the whole day."""
    fx = api.fx
    basic = await (await api.get(f"{API}/reports/summary?since=20260101&until=20260107", "compliance")).json()
    extended = await (await api.get(f"{API}/reports/summary?since=2026-01-01&until=2026-01-07", "compliance")).json()
    assert [n["id"] for n in basic["notices"]] == [n["id"] for n in extended["notices"]] == [fx.notice.id, fx.other.id]
    assert basic["since"] == "2026-01-01T00:00:00Z" and basic["until"] == "2026-01-08T00:00:00Z"
    one_day = await (await api.get(f"{API}/reports/summary?since=20260105&until=20260105", "compliance")).json()
    assert [n["id"] for n in one_day["notices"]] == [fx.notice.id]


async def test_a_time_with_an_unencoded_plus_offset_is_read_as_that_offset(api: Api) -> None:
    """`curl '.../reports/summary?since=2026-01-05T09:00:00+01:00&...'`: the URL decoding made the
    offset's "+" a space, and the pull was refused as "since '2026-01-05T09:00:00 01:00' is not a
    date", though the caller wrote a valid ISO-8601 time. The "+" is read back; a negative offset and
    an encoded %2B were never affected."""
    fx = api.fx
    for since in ("2026-01-05T10:01:00+01:00", "2026-01-05T10:01:00%2B01:00", "2026-01-05T08:01:00-01:00"):
        response = await api.get(f"{API}/reports/summary?since={since}&until=2026-01-06T00:00:00+0100", "compliance")
        assert response.status == 200, await response.text()
        data = await response.json()
        assert (data["since"], data["until"]) == ("2026-01-05T09:01:00Z", "2026-01-05T23:00:00Z")
        assert [n["id"] for n in data["notices"]] == [fx.notice.id]


async def test_a_summary_topic_is_matched_as_stored_and_an_unknown_one_refused(api: Api) -> None:
    """A compliance system pulling `topic=Operations` (as the topic reads in Slack), or a typo,
    got 200 with no notices at all, which it took for 'nothing was sent on that topic'; the
    export was even audited. Topics are matched as notices store them (lower case), and one that
    is neither in the catalog nor on any notice is refused (400), naming the closest; a topic of
    the catalog that no notice has yet is still an empty summary."""
    fx = api.fx
    window = "since=2026-01-01&until=2026-01-31"
    capital = await (await api.get(f"{API}/reports/summary?{window}&topic=%20Operations", "compliance")).json()
    assert [n["id"] for n in capital["notices"]] == [fx.notice.id] and capital["topic"] == "operations"
    exports = await AuditEvent.filter(kind="report.exported").count()
    body = await assert_error(await api.get(f"{API}/reports/summary?{window}&topic=operatoins", "compliance"),
                              400, "bad_request", "unknown topic 'operatoins' (did you mean 'operations'?)")
    assert "announcements" in body["message"]
    assert await AuditEvent.filter(kind="report.exported").count() == exports  # refused: not an export
    unused = await (await api.get(f"{API}/reports/summary?{window}&topic=incentives", "compliance")).json()
    assert unused["notices"] == [] and unused["topic"] == "incentives"  # in config/topics.yaml, never sent


@pytest.mark.parametrize("query, message", [
    ("", "since and until are required"), ("since=2026-01-01", "required"),
    ("since=nope&until=2026-01-02", "is not a date"), ("since=2026-02-01&until=2026-01-01", "until must be after"),
    ("since=2026-01-01&until=2026-01-31&importance=urgent", "importance must be"),
    ("since=9999-12-31&until=9999-12-31", "out of range"), ("since=2026-01-01T25:00&until=2026-01-02", "not a date"),
    ("since=%00&until=2026-01-02", "not a date"), ("since=2026-01-01&until=" + "9" * 300, "not a date"),
])
async def test_summary_bad_parameters(api: Api, query: str, message: str) -> None:
    await assert_error(await api.get(f"{API}/reports/summary?{query}", "compliance"), 400, "bad_request", message)


async def test_audit_verify_is_for_compliance_and_admins(api: Api) -> None:
    await assert_error(await api.get(f"{API}/audit/verify", "cam"), 403, "forbidden")
    await (await api.get(f"{API}/notices/{api.fx.notice.id}/report", "compliance")).text()  # read whole
    for who in ("compliance", "admin"):
        response = await api.get(f"{API}/audit/verify", who)
        assert response.status == 200, await response.text()
        data = await response.json()
        assert set(data) >= {"ok", "events", "head_seq", "head_hash", "first_broken_seq", "reason"}
        event = await AuditEvent.get(kind="report.delivered")  # the download's last event
        assert data["ok"] is True and data["head_seq"] == event.seq and data["head_hash"] == event.hash
        assert data["events"] == event.seq and data["first_broken_seq"] is None
    event = await AuditEvent.get(kind="report.exported")
    anchored = await (await api.get(f"{API}/audit/verify?head={event.seq}:{event.hash}", "compliance")).json()
    assert anchored["ok"] is True
    elsewhere = await (await api.get(f"{API}/audit/verify?head={event.seq + 5}:{event.hash}", "compliance")).json()
    assert elsewhere["ok"] is False and "deleted" in elsewhere["reason"]
    await assert_error(await api.get(f"{API}/audit/verify?head=nope", "compliance"), 400, "bad_request",
                       "is not a chain head")


async def test_a_head_on_audit_verify_is_refused_without_verifying(api: Api, monkeypatch) -> None:
    """HEAD /api/v1/audit/verify ran the GET handler: the whole chain's verification (minutes at
    millions of events) for a response without a body. It is refused, 405, as a report's HEAD is."""
    import bot.api

    runs = []

    async def counted(**kwargs):
        runs.append(kwargs)
        raise AssertionError("verified")

    monkeypatch.setattr(bot.api, "verify_chain", counted)
    head = await api.client.head(f"{API}/audit/verify", headers=api.auth("compliance"))
    assert head.status == 405 and head.headers["Allow"] == "GET" and runs == []


# ---- OpenAPI ------------------------------------------------------------------------------------

async def test_openapi_document_is_public_and_complete(api: Api) -> None:
    response = await api.client.get(f"{API}/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    doc = json.loads(await response.text())
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {f"{API}/notices", f"{API}/notices/{{id}}", f"{API}/notices/{{id}}/report",
                                 f"{API}/reports/summary", f"{API}/audit/verify", f"{API}/openapi.json",
                                 f"{API}/surveys", f"{API}/surveys/stages", f"{API}/surveys/{{id}}",
                                 f"{API}/notices/{{id}}/variants"}
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]}
    assert doc["security"] == [{"bearerAuth": []}] and doc["paths"][f"{API}/openapi.json"]["get"]["security"] == []
    report = doc["paths"][f"{API}/notices/{{id}}/report"]["get"]
    assert {p["name"] for p in report["parameters"]} == {"id", "format"}
    assert set(report["responses"]["200"]["content"]) == {"text/csv", "application/json"}
    assert {"400", "401", "403", "404"} <= set(report["responses"])

    # the counts are members, as README and the summary count them, not copies per platform
    recipients = doc["components"]["schemas"]["Summary"]["properties"]["recipients"]["description"]
    assert "one per recipient and platform" not in recipients and "is one recipient" in recipients

    # every $ref resolves
    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict)

    # routes registered on the app are exactly the documented ones
    registered = {r.resource.canonical for r in api.client.server.app.router.routes()
                  if r.resource is not None and r.resource.canonical.startswith(API)}
    assert registered == set(doc["paths"])

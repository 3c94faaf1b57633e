"""Security review: an attacker on the internet, and a curious partner (or colleague).

Each test fails on the current code for the reason its docstring states, and passes once fixed.
"""

from __future__ import annotations

from tests.console_support import COMPLIANCE, ConsoleHarness
from tests.test_api import API, Api, api  # noqa: F401 - the reports API fixture (seeded, real HTTP)
from tests.test_reports import split_csv
from storage.models import AuditEvent, Organisation

SAMPLE = 1  # the sandbox's sample must-know notice


async def test_an_escalated_report_gives_a_cam_only_their_own_partners_rows(api: Api) -> None:  # noqa: F811
    """A CAM who may open a colleague's notice only because it was escalated for a partner the
    directory names them CAM of (its **Open report** button) downloads the whole notice's report:
    every other partner's contacts (names, e-mail addresses, roles, acknowledgement status), for
    partners the directory gives to another CAM. Everywhere else Herald scopes a CAM to their own
    partners (README "The console": directory and engagement views show "the partners that name
    them as CAM"; survey results: "Only your partners' answers are counted"). The escalated report
    should list the rows of that CAM's partners only (or the summary of the others)."""
    fx = api.fx
    await Organisation.filter(external_id="bolt").update(cam_email="other@vendor.example")
    response = await api.get(f"{API}/notices/{fx.notice.id}/report?format=csv", "other_cam")
    assert response.status == 200, await response.text()
    _, table = split_csv(await response.text())
    header, rows = table[0], table[1:]
    orgs = {row[header.index("organisation_id")] for row in rows}
    emails = {row[header.index("email")] for row in rows}
    assert orgs == {"bolt"}, (
        f"other@vendor.example is only Bolt's CAM, yet the report lists {sorted(orgs)} "
        f"with {sorted(e for e in emails if not e.endswith('@bolt.example'))}")


async def test_a_cross_site_navigation_does_not_export_an_audited_report(console: ConsoleHarness) -> None:
    """The console's report downloads are GETs that export and audit (`report.exported`, actor
    `console:<officer>`). The session cookie is SameSite=Lax, which browsers send on a top-level
    cross-site navigation, so any web page a signed-in compliance officer visits can navigate them
    to /console/notices/1/report.csv: the export runs and the tamper-evident audit trail records
    an export the officer never asked for. Every state-changing console request refuses another
    site (README: "refused from another site"); the audited export should too (refuse a request
    whose Sec-Fetch-Site is cross-site, or make the export a POST with the CSRF token)."""
    robin = await console.signed_in(COMPLIANCE)
    cross_site = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
                  "Referer": "https://evil.example/page"}
    async with robin.session.get(console.url(f"/console/notices/{SAMPLE}/report.csv"),
                                 headers=cross_site) as response:
        status = response.status
        await response.read()
    exports = await AuditEvent.filter(kind="report.exported").values_list("actor", flat=True)
    assert status == 403 and exports == [], (
        f"a cross-site navigation exported the report (HTTP {status}); audit trail: {exports}")

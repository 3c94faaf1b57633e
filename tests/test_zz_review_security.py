"""Security review: an attacker on the internet, and a curious partner (or colleague).

Each test fails on the current code for the reason its docstring states, and passes once fixed.
"""

from __future__ import annotations

from tests.console_support import COMPLIANCE, ConsoleHarness
from storage.models import AuditEvent

SAMPLE = 1  # the sandbox's sample must-know notice


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

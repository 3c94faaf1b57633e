"""`herald teams package`: a Teams app package whose manifest validates against the pinned schema."""

from __future__ import annotations

import json
import struct
import zipfile
from html import escape
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from bot.app import build_app
from bot.cli import main
from bot.teams_package import build_manifest, validate_manifest
from config.settings import load_settings

APP_ID = "6f1c2a4e-8d2b-4c1a-9e3f-0a1b2c3d4e5f"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_package_contains_a_valid_manifest_and_two_icons(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HERALD_TEAMS_APP_ID", raising=False)
    out = tmp_path / "herald-teams.zip"
    result = CliRunner().invoke(main, ["teams", "package", "--url", "https://herald.example.com", "--out", str(out),
                                       "--app-id", APP_ID])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as package:
        assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(package.read("manifest.json"))
        assert _png_size(package.read("color.png")) == (192, 192)
        assert _png_size(package.read("outline.png")) == (32, 32)
    assert validate_manifest(manifest) == []
    (bot,) = manifest["bots"]
    assert bot["botId"] == APP_ID and bot["scopes"] == ["personal"]
    assert {c["title"] for c in bot["commandLists"][0]["commands"]} >= {"send", "status", "report", "help"}
    assert manifest["validDomains"] == ["herald.example.com"]


def test_the_app_id_defaults_to_the_configured_one(tmp_path, monkeypatch) -> None:
    """README's Teams setup sets HERALD_TEAMS_APP_ID first, then runs `herald teams package`
    without --app-id: the package names the configured app."""
    monkeypatch.setenv("HERALD_TEAMS_APP_ID", APP_ID)
    monkeypatch.setenv("HERALD_TEAMS_APP_PASSWORD", "secret")
    out = tmp_path / "herald-teams.zip"
    result = CliRunner().invoke(main, ["teams", "package", "--url", "https://herald.example.com", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as package:
        assert json.loads(package.read("manifest.json"))["bots"][0]["botId"] == APP_ID


def test_the_teams_command_menu_offers_partners_their_own_command() -> None:
    """The manifest's commandLists is the menu every user of the personal app sees, and partners are
    most of them: besides the CAMs' commands (a partner is refused those) it offers `preferences`,
    the one command README documents for partners in Teams, within Teams' limit of 10."""
    manifest = build_manifest(app_id=APP_ID, public_url="https://herald.example.com")
    titles = [c["title"] for c in manifest["bots"][0]["commandLists"][0]["commands"]]
    assert "preferences" in titles and "help" in titles, f"the Teams command menu offers {titles}"
    assert validate_manifest(manifest) == []


def test_a_re_package_can_carry_a_higher_app_version(tmp_path, monkeypatch) -> None:
    """`herald teams package` always wrote version 1.0.0 unless told otherwise by an undocumented
    option, and an operator re-packaging after an upgrade could not upload it as an update (Teams
    replaces an uploaded app only with a higher version). `--app-version` sets it, and says so."""
    monkeypatch.delenv("HERALD_TEAMS_APP_ID", raising=False)
    runner, out = CliRunner(), tmp_path / "herald-teams.zip"
    args = ["teams", "package", "--url", "https://herald.example.com", "--app-id", APP_ID, "--out", str(out)]
    first = runner.invoke(main, args)
    assert first.exit_code == 0 and "app version 1.0.0" in first.output, first.output
    help_text = runner.invoke(main, ["teams", "package", "--help"]).output
    assert "--app-version" in help_text and "higher version" in help_text
    update = runner.invoke(main, [*args, "--app-version", "1.2.0"])
    assert update.exit_code == 0, update.output
    with zipfile.ZipFile(out) as package:
        assert json.loads(package.read("manifest.json"))["version"] == "1.2.0"
    for not_semver in ("2", "1.2", "v1.2.0", "1.02.0", "1.2.0-beta"):
        refused = runner.invoke(main, [*args, "--app-version", not_semver])
        assert refused.exit_code == 1 and "MAJOR.MINOR.PATCH" in refused.output, (not_semver, refused.output)


def _packaged_manifest(tmp_path, *options: str) -> dict:
    out = tmp_path / "herald-teams.zip"
    result = CliRunner().invoke(main, ["teams", "package", "--url", "https://herald.example.com", "--out", str(out),
                                       "--app-id", APP_ID, *options])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as package:
        return json.loads(package.read("manifest.json"))


def _without_policy_settings(monkeypatch) -> None:
    for name in ("HERALD_TEAMS_APP_ID", "HERALD_PRIVACY_URL", "HERALD_TERMS_URL"):
        monkeypatch.delenv(name, raising=False)


def test_the_package_links_herald_s_own_privacy_and_terms_pages(tmp_path, monkeypatch) -> None:
    """Teams and its admin centre show the manifest's privacy and terms links to users and admins;
    both named /healthz, a JSON health check. Without settings they name Herald's own pages."""
    _without_policy_settings(monkeypatch)
    developer = _packaged_manifest(tmp_path)["developer"]
    assert developer["privacyUrl"] == "https://herald.example.com/privacy", developer
    assert developer["termsOfUseUrl"] == "https://herald.example.com/terms", developer


def test_the_package_links_the_operator_s_own_privacy_and_terms_pages(tmp_path, monkeypatch) -> None:
    """HERALD_PRIVACY_URL and HERALD_TERMS_URL (the organisation's own statements) go into the
    manifest; `--privacy-url` / `--terms-url` win over them; what is not an https URL is refused."""
    _without_policy_settings(monkeypatch)
    monkeypatch.setenv("HERALD_PRIVACY_URL", "https://vendor.example/legal/privacy")
    monkeypatch.setenv("HERALD_TERMS_URL", "https://vendor.example/legal/partner-terms")
    manifest = _packaged_manifest(tmp_path)
    assert manifest["developer"]["privacyUrl"] == "https://vendor.example/legal/privacy"
    assert manifest["developer"]["termsOfUseUrl"] == "https://vendor.example/legal/partner-terms"
    assert validate_manifest(manifest) == []
    given = _packaged_manifest(tmp_path, "--privacy-url", "https://vendor.example/p", "--terms-url",
                               "https://vendor.example/t")["developer"]
    assert (given["privacyUrl"], given["termsOfUseUrl"]) == ("https://vendor.example/p", "https://vendor.example/t")
    refused = CliRunner().invoke(main, ["teams", "package", "--url", "https://herald.example.com", "--app-id", APP_ID,
                                        "--out", str(tmp_path / "x.zip"), "--terms-url", "http://vendor.example/t"])
    assert refused.exit_code == 1 and "--terms-url must be an https URL" in refused.output, refused.output
    monkeypatch.setenv("HERALD_PRIVACY_URL", "vendor.example/privacy")
    bad_setting = CliRunner().invoke(main, ["teams", "package", "--url", "https://herald.example.com",
                                            "--app-id", APP_ID, "--out", str(tmp_path / "x.zip")])
    assert bad_setting.exit_code == 2 and "HERALD_PRIVACY_URL must be an https URL" in bad_setting.output


async def test_the_privacy_and_terms_pages_the_package_links_are_served(db: str) -> None:
    """The manifest's links lead to pages Herald serves without a sign-in: what it stores about a
    member and why, and whom to ask."""
    manifest = build_manifest(app_id=APP_ID, public_url="https://herald.example.com")
    app = build_app(load_settings(database_url=db, sandbox="off"), run_worker=False, manage_database=False)
    async with TestClient(TestServer(app)) as client:
        privacy = await client.get(urlsplit(manifest["developer"]["privacyUrl"]).path)
        assert privacy.status == 200 and privacy.content_type == "text/html"
        text = await privacy.text()
        for stored in ("e-mail address", "Slack or Teams user id", "quiet hours", "acknowledge",
                       "questions you ask", "survey", "audit trail"):
            assert stored in text, stored
        assert "ask the organisation that runs this Herald" in text
        assert 'href="/terms"' in text
        terms = await client.get(urlsplit(manifest["developer"]["termsOfUseUrl"]).path)
        assert terms.status == 200 and terms.content_type == "text/html"
        assert "acknowledge" in await terms.text() and 'href="/privacy"' in await terms.text()
        assert "default-src 'none'" in terms.headers["Content-Security-Policy"]


async def test_the_built_in_pages_link_the_configured_ones_escaped(db: str) -> None:
    """Herald's privacy page links the organisation's terms when configured (and the other way
    round), escaped as HTML."""
    terms_url = "https://vendor.example/terms?lang=en&v=\"2\"><script>alert(1)</script>"
    settings = load_settings(database_url=db, sandbox="off", terms_url=terms_url,
                             privacy_url="https://vendor.example/privacy")
    app = build_app(settings, run_worker=False, manage_database=False)
    async with TestClient(TestServer(app)) as client:
        privacy = await (await client.get("/privacy")).text()
        assert f'href="{escape(terms_url)}"' in privacy and "<script>" not in privacy
        terms = await (await client.get("/terms")).text()
        assert 'href="https://vendor.example/privacy"' in terms


def test_the_schema_rejects_a_broken_manifest() -> None:
    manifest = build_manifest(app_id=APP_ID, public_url="https://herald.example.com")
    manifest["bots"][0]["scopes"] = ["galaxy"]
    del manifest["name"]
    errors = validate_manifest(manifest)
    assert any("name" in e for e in errors) and any("galaxy" in e for e in errors)


def test_bad_inputs_are_refused_with_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HERALD_TEAMS_APP_ID", raising=False)
    runner = CliRunner()
    no_https = runner.invoke(main, ["teams", "package", "--url", "http://herald.example.com", "--app-id", APP_ID,
                                    "--out", str(tmp_path / "x.zip")])
    assert no_https.exit_code == 1 and "public https URL" in no_https.output
    bad_id = runner.invoke(main, ["teams", "package", "--url", "https://h.example.com", "--app-id", "herald",
                                  "--out", str(tmp_path / "x.zip")])
    assert bad_id.exit_code == 1 and "GUID" in bad_id.output
    missing = runner.invoke(main, ["teams", "package", "--url", "https://h.example.com"])
    assert missing.exit_code == 2 and "HERALD_TEAMS_APP_ID" in missing.output

"""`herald teams package`: a Teams app package whose manifest validates against the pinned schema."""

from __future__ import annotations

import json
import struct
import zipfile

from click.testing import CliRunner

from bot.cli import main
from bot.teams_package import build_manifest, validate_manifest

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

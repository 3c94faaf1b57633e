"""The Teams app package: a manifest (schema 1.17) and two icons in a zip, validated against the
Teams manifest schema pinned in `config/teams/`."""

from __future__ import annotations

import json
import re
import struct
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft4Validator

from bot.common.errors import UserError
from config.settings import CONFIG_DIR, MAX_POLICY_URL_LENGTH, is_policy_url

SCHEMA_FILE = CONFIG_DIR / "teams" / "MicrosoftTeams.v1.17.schema.json"
MANIFEST_VERSION = "1.17"
ACCENT = "#1F4E79"
# The app's own version: Teams replaces an uploaded app only with a package of a higher one.
_APP_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")

# Herald's own privacy statement and terms of use (bot/handlers/policies.py), linked when the
# organisation names none of its own (HERALD_PRIVACY_URL, HERALD_TERMS_URL).
PRIVACY_PATH = "/privacy"
TERMS_PATH = "/terms"

# The personal app's command menu, for everyone who has the app: partners (most of them) have
# `preferences` and `help`; the rest are the CAMs' (a partner is told so if they try one). Teams
# shows at most 10.
COMMANDS = [
    ("preferences", "Your topics, digest, quiet hours and time zone"),
    ("send", "Compose a notice to partners (or: send <importance> <topic> <audience> | <title> | <body>)"),
    ("status", "Delivery and acknowledgement counts: status [notice-id]"),
    ("scheduled", "Notices waiting for their send time"),
    ("report", "Acknowledgement report: report <notice-id>"),
    ("edit", "Correct a sent notice: edit <id> [material] | <title> | <body>"),
    ("retract", "Withdraw a notice: retract <notice-id> <reason>"),
    ("pause", "Pause reminders for a partner: pause <org-id> [until YYYY-MM-DD] [reason]"),
    ("resume", "Resume reminders for a partner: resume <org-id>"),
    ("help", "What Herald can do for you"),
]


def build_manifest(*, app_id: str, public_url: str, version: str = "1.0.0", name: str = "Herald",
                   developer: str = "Herald", privacy_url: str | None = None,
                   terms_url: str | None = None) -> dict[str, Any]:
    """The manifest; its privacy and terms links are `privacy_url` and `terms_url` when given (the
    organisation's own pages), else Herald's own pages under `public_url`."""
    try:
        uuid.UUID(app_id)
    except ValueError:
        raise UserError("the Teams app id must be the bot's Microsoft app id (a GUID)") from None
    if not _APP_VERSION.fullmatch(version):  # the schema only says "semver"; it checks nothing
        raise UserError(f"--app-version must be MAJOR.MINOR.PATCH (e.g. 1.0.1), got {version!r}")
    parts = urlsplit(public_url)
    if parts.scheme != "https" or not parts.hostname:
        raise UserError("--url must be Herald's public https URL, e.g. https://herald.example.com")
    base = public_url.rstrip("/")
    privacy_url = _policy_url(privacy_url, "--privacy-url") or base + PRIVACY_PATH
    terms_url = _policy_url(terms_url, "--terms-url") or base + TERMS_PATH
    return {
        "$schema": f"https://developer.microsoft.com/en-us/json-schemas/teams/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json",
        "manifestVersion": MANIFEST_VERSION,
        "version": version,
        "id": app_id,
        "developer": {"name": developer, "websiteUrl": base, "privacyUrl": privacy_url,
                      "termsOfUseUrl": terms_url},
        "name": {"short": name, "full": f"{name} partner notices"},
        "description": {
            "short": "Partner notices with one-click acknowledgement.",
            "full": ("Herald delivers your vendor's partner notices by importance, asks for acknowledgement of "
                     "must-know notices and keeps an audit trail. Channel account managers send and follow notices "
                     "with commands such as send, status and report."),
        },
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": ACCENT,
        "bots": [{
            "botId": app_id,
            "scopes": ["personal"],
            "isNotificationOnly": False,
            "supportsFiles": False,
            "commandLists": [{"scopes": ["personal"],
                              "commands": [{"title": t, "description": d[:128]} for t, d in COMMANDS]}],
        }],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": [parts.hostname],
    }


def _policy_url(value: str | None, option: str) -> str | None:
    if value is None or not value.strip():
        return None
    if not is_policy_url(value.strip()):
        raise UserError(f"{option} must be an https URL of at most {MAX_POLICY_URL_LENGTH} characters "
                        "(the page Teams shows as the app's privacy statement or terms of use)")
    return value.strip()


def validate_manifest(manifest: dict[str, Any]) -> list[str]:
    """Schema errors as readable lines (empty when the manifest is valid)."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator = Draft4Validator(schema)
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))]


def write_package(out: Path, *, app_id: str, public_url: str, version: str = "1.0.0",
                  privacy_url: str | None = None, terms_url: str | None = None) -> dict[str, Any]:
    manifest = build_manifest(app_id=app_id, public_url=public_url, version=version, privacy_url=privacy_url,
                              terms_url=terms_url)
    errors = validate_manifest(manifest)
    if errors:
        raise UserError("the Teams manifest does not validate: " + "; ".join(errors[:5]))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", json.dumps(manifest, indent=2))
        package.writestr("color.png", _png(192, 192, opaque=True))
        package.writestr("outline.png", _png(32, 32, opaque=False))
    return manifest


def _png(width: int, height: int, *, opaque: bool) -> bytes:
    """A simple icon: a filled square (colour icon) or a white 'H' on transparency (outline icon),
    as Teams requires (192x192 colour, 32x32 white-on-transparent outline)."""
    accent = tuple(int(ACCENT[i:i + 2], 16) for i in (1, 3, 5))
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter: none
        for x in range(width):
            in_h = (width // 4 <= x < width // 4 + width // 8 or 5 * width // 8 <= x < 3 * width // 4
                    or (width // 4 <= x < 3 * width // 4 and 7 * height // 16 <= y < 9 * height // 16))
            in_h = in_h and height // 5 <= y < 4 * height // 5
            if opaque:
                row += bytes((255, 255, 255, 255)) if in_h else bytes((*accent, 255))
            else:
                row += bytes((255, 255, 255, 255)) if in_h else bytes((0, 0, 0, 0))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
            + chunk(b"IEND", b""))

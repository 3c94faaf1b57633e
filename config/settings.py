"""Herald configuration: `HERALD_*` environment variables and an optional `.env` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG_DIR = Path(__file__).resolve().parent

_DB_SCHEMES = {"sqlite", "postgres", "postgresql", "asyncpg"}

# The delivery engine starts no send in a lane once less than this is left of its lease (fencing:
# bot.core.delivery.lanes.LaneSettings.send_margin), and renews a lease before a claim once half of
# it has passed: a lease must be more than twice this, or a lane would stop sending before renewing.
DELIVERY_SEND_MARGIN_SECONDS = 3.0
MIN_DELIVERY_LEASE_SECONDS = 7


MAX_POLICY_URL_LENGTH = 2048  # the Teams manifest schema's limit for privacyUrl and termsOfUseUrl


def is_policy_url(value: str) -> bool:
    """Whether `value` may be linked as a privacy statement or terms of use: https, with a host."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed [ in the host
        return False
    return (parts.scheme == "https" and bool(host) and len(value) <= MAX_POLICY_URL_LENGTH
            and not any(c.isspace() for c in value))


class ConfigError(Exception):
    """Configuration is unusable; the message is one line a person can act on."""


class Settings(BaseSettings):
    # env_ignore_empty: `HERALD_X=` (a line of .env.example uncommented to fill in later, compose's
    # `${X:-}`) is the same as not set, as README says of every variable, in the environment and in .env.
    model_config = SettingsConfigDict(
        env_prefix="HERALD_", env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    database_url: str = "sqlite://herald.db"
    # PostgreSQL connections per process (a `maxsize` in the URL wins). Inbound clicks share them
    # with the delivery engine, which may run 64 lane claims at once (LaneSettings.claims): with
    # tortoise's default pool of 5, such a burst queued every click's statements behind it.
    database_pool_size: int = Field(default=20, ge=2)
    host: str = "0.0.0.0"
    port: int = Field(default=3978, ge=1, le=65535)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # "Add to Slack" (OAuth v2) installs: /slack/install and /slack/oauth_redirect.
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_oauth_base_url: str = "https://slack.com"
    public_url: str | None = None  # e.g. https://herald.example.com; the OAuth redirect_uri is built from it
    # Encrypts bot tokens at rest and signs install links; required with a Slack client secret.
    secret_key: SecretStr | None = None
    # While rotating HERALD_SECRET_KEY: the key(s) it replaced, comma-separated. They still open and
    # verify what they sealed and signed; nothing new uses them (`herald secrets rotate`, README).
    secret_key_previous: SecretStr | None = None

    # The privacy statement and terms of use the Teams app package links (Teams and its admin centre
    # show them to users and admins): the organisation's own pages; unset, Herald's /privacy and /terms.
    privacy_url: str | None = None
    terms_url: str | None = None

    teams_app_id: str | None = None
    teams_app_password: SecretStr | None = None
    teams_tenant_id: str | None = None
    # Only send to Microsoft's Bot Connector hosts over https (an SSRF guard). Turn off only to
    # test against a local connector.
    teams_check_service_url: bool = True
    # Where to open a 1:1 chat with a member Herald has never talked to (their AAD id is known
    # from the directory). Every later reply uses the serviceUrl Teams sends with activities.
    teams_service_url: str = "https://smba.trafficmanager.net/teams/"

    topics_file: Path = CONFIG_DIR / "topics.yaml"
    kb_dir: Path = CONFIG_DIR / "kb"  # the onboarding assistant's knowledge base (*.yaml)
    # The assistant's embedding model (about 0.6 GB of memory, 30-40 ms of CPU per question). Off:
    # keyword search alone, which answers far fewer indirectly phrased questions.
    kb_semantic: bool = True
    # Keeps the knowledge base's embedded vectors between restarts (about 4 MB per version of the
    # knowledge base), so start-up does not spend 20 s of CPU embedding the same texts again.
    cache_dir: Path = Path("herald-cache")

    # A member on both Slack and Teams gets one copy on their preferred platform ("preferred"),
    # or one copy on each ("all"); one acknowledgement settles every copy.
    platform_policy: str = Field(default="preferred", pattern="^(preferred|all)$")

    # Delivery engine (bot/core/delivery): requests in flight per replica (all lanes together);
    # per lane (one workspace/tenant) in flight and claimed ahead; lanes one replica works at once;
    # a lane's lease (a dead replica's lanes move to another after it) and its heartbeat;
    # delivery_batch_size: an upper bound on the rows one claim takes (the lane cap is lower).
    delivery_concurrency: int = Field(default=64, ge=1, le=1024)
    delivery_lane_inflight: int = Field(default=8, ge=1, le=256)
    delivery_max_lanes: int = Field(default=128, ge=1, le=10000)
    delivery_batch_size: int = Field(default=200, ge=1, le=5000)
    delivery_lease_seconds: int = 10  # at least MIN_DELIVERY_LEASE_SECONDS (_check_delivery_lease)
    # On SIGTERM, `herald serve` keeps serving but answers /healthz 503 "draining" for this long
    # before it closes its listener, so a proxy takes the replica out of its rotation first.
    drain_seconds: float = Field(default=5.0, ge=0, le=60)
    delivery_heartbeat_seconds: float = Field(default=3.0, gt=0)  # under the lease minus the send margin
    delivery_max_attempts: int = Field(default=6, ge=1)
    outbox_poll_seconds: float = Field(default=5.0, gt=0)
    # Requests per second per workspace/tenant (0 = no pacing; Slack's 429 + Retry-After still apply).
    teams_max_per_second: float = Field(default=50.0, ge=0)
    slack_max_per_second: float = Field(default=0.0, ge=0)
    # Slack's chat.update (copies updated in place after an acknowledgement, edit or retraction) is
    # Tier 3: about 50 a minute per workspace. 0 = no budget (429 + Retry-After only).
    slack_updates_per_minute: float = Field(default=50.0, ge=0)
    # How often scheduled notices, reminders and escalations are looked at.
    tick_seconds: float = Field(default=60.0, gt=0)
    # A hand-off nobody has answered this many hours after its CAM got it: the CAM is reminded
    # (once per CAM) and the partner told it is still with them (0 = off).
    handoff_remind_hours: float = Field(default=24.0, ge=0)

    log_level: str = Field(default="INFO", pattern="(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    # "text": one human-readable line per record; "json": one JSON object per line for log shippers.
    log_format: str = Field(default="text", pattern="^(text|json)$")

    # Prometheus metrics (GET /metrics): off unless a bearer token is set, or a separate port for a
    # private network is given (then served only there).
    metrics_token: SecretStr | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "0.0.0.0"

    # `herald serve` applies pending migrations before it serves. Turn off when a separate step runs
    # `herald db upgrade` (docker-compose.yml does), so replicas never migrate at once; the server
    # then refuses to start on a database that is not up to date.
    migrate_on_start: bool = True

    # Slack over Socket Mode (an app-level token, xapp-...): no public URL needed for Slack.
    slack_app_token: SecretStr | None = None
    # Microsoft Entra ID, where Teams credentials get their tokens (a sovereign cloud differs).
    teams_authority_url: str = "https://login.microsoftonline.com"

    # The sandbox (the console's try-it-in-a-browser mode): `auto` = on when neither Slack
    # (HERALD_SLACK_SIGNING_SECRET or HERALD_SLACK_APP_TOKEN) nor Teams (HERALD_TEAMS_APP_ID) is
    # configured; `on`, `off`.
    # It runs on its own database, seeded with a sample directory on first start.
    sandbox: str = Field(default="auto", pattern="^(auto|on|off)$")
    sandbox_database_url: str = "sqlite://herald-sandbox.db"

    @field_validator("database_url", "sandbox_database_url")
    @classmethod
    def _check_database_url(cls, value: str, info: ValidationInfo) -> str:
        name = f"HERALD_{(info.field_name or 'database_url').upper()}"
        parts = urlsplit(value)
        if parts.scheme not in _DB_SCHEMES:
            raise ValueError(f"{name} must start with sqlite:// or postgres://, got {value.split(':', 1)[0]!r}")
        if parts.scheme == "sqlite":
            if not value.startswith("sqlite://") or value in ("sqlite://", "sqlite:///"):
                raise ValueError(f"{name}: sqlite URL needs a file path, e.g. sqlite://herald.db")
        elif not parts.hostname or not parts.path.strip("/"):
            raise ValueError(f"{name}: postgres URL needs a host and a database name")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("HERALD_SLACK_API_URL must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("metrics_token", "slack_app_token", "slack_signing_secret", "slack_bot_token",
                     "teams_app_password")
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """An empty value is unset: an uncommented `HERALD_X=` line in .env, or compose passing a
        variable that is not set. Taken as a secret, an empty signing secret turned Slack on and
        crashed `serve` in slack_sdk while the doctor called the configuration valid."""
        if value is None or not value.get_secret_value().strip():
            return None
        if info.field_name == "slack_app_token" and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("HERALD_SLACK_APP_TOKEN must be an app-level token (xapp-...) with connections:write")
        if info.field_name == "slack_bot_token" and value.get_secret_value().startswith("xoxe"):
            # token rotation: `xoxe.xoxb-` expires in 12 hours, `xoxe-` is a refresh token; Herald
            # renews only tokens it stored with their refresh token (bot.channels.slack_tokens)
            raise ValueError("HERALD_SLACK_BOT_TOKEN is an expiring (token rotation) token, dead within 12 hours: "
                             "connect the workspace through \"Add to Slack\" (HERALD_SLACK_CLIENT_ID and "
                             "HERALD_SLACK_CLIENT_SECRET), which stores its refresh token, or use a "
                             "non-expiring xoxb- token")
        if info.field_name == "metrics_token" and len(value.get_secret_value()) < 16:
            raise ValueError("HERALD_METRICS_TOKEN must be at least 16 characters")
        return value

    @field_validator("metrics_port", "teams_app_id", "teams_tenant_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("teams_service_url")
    @classmethod
    def _check_teams_service_url(cls, value: str) -> str:
        if not value.strip():
            return cls.model_fields["teams_service_url"].default
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("HERALD_TEAMS_SERVICE_URL must be an http(s) URL, e.g. https://smba.trafficmanager.net/teams/")
        return value.strip()

    @field_validator("teams_authority_url")
    @classmethod
    def _check_authority(cls, value: str) -> str:
        if urlsplit(value).scheme != "https" or not urlsplit(value).hostname:
            raise ValueError("HERALD_TEAMS_AUTHORITY_URL must be an https URL, e.g. https://login.microsoftonline.com")
        return value.rstrip("/")

    @field_validator("slack_oauth_base_url", "public_url")
    @classmethod
    def _check_public_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None if info.field_name == "public_url" else "https://slack.com"
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"HERALD_{info.field_name.upper()} must be an http(s) URL without a query, "
                             "e.g. https://herald.example.com")
        return value.strip().rstrip("/")

    @field_validator("privacy_url", "terms_url")
    @classmethod
    def _check_policy_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        """An https page, as Teams requires of a manifest's privacy and terms links (at most 2,048
        characters, the manifest schema's limit)."""
        if value is None or not value.strip():
            return None
        if not is_policy_url(value.strip()):
            raise ValueError(f"HERALD_{(info.field_name or '').upper()} must be an https URL of at most "
                             f"{MAX_POLICY_URL_LENGTH} characters, e.g. https://vendor.example/privacy")
        return value.strip()

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 32:
            raise ValueError("HERALD_SECRET_KEY must be at least 32 characters "
                             "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")
        return value

    @model_validator(mode="after")
    def _check_previous_secret_keys(self) -> "Settings":
        """Each previous key as long as a key must be, none the current key itself (a rotation that
        kept the old key as HERALD_SECRET_KEY would change nothing and look done)."""
        previous = self.previous_secret_keys
        if not previous:
            self.secret_key_previous = None
            return self
        if not self.secret_key:
            raise ValueError("HERALD_SECRET_KEY_PREVIOUS needs HERALD_SECRET_KEY (the new key)")
        if any(len(key) < 32 for key in previous):
            raise ValueError("HERALD_SECRET_KEY_PREVIOUS: each key must be at least 32 characters")
        if self.secret_key.get_secret_value() in previous:
            raise ValueError("HERALD_SECRET_KEY_PREVIOUS must not contain HERALD_SECRET_KEY "
                             "(set the new key as HERALD_SECRET_KEY and the old one as previous)")
        return self

    @property
    def previous_secret_keys(self) -> tuple[str, ...]:
        """HERALD_SECRET_KEY_PREVIOUS as a list (comma-separated, blanks dropped)."""
        if self.secret_key_previous is None:
            return ()
        keys = (k.strip() for k in self.secret_key_previous.get_secret_value().split(","))
        return tuple(dict.fromkeys(k for k in keys if k))

    @model_validator(mode="after")
    def _check_slack_oauth(self) -> "Settings":
        if self.slack_client_id is not None and not self.slack_client_id.strip():
            self.slack_client_id = None
        if self.slack_client_secret is not None and not self.slack_client_secret.get_secret_value():
            self.slack_client_secret = None
        if bool(self.slack_client_id) != bool(self.slack_client_secret):
            raise ValueError("HERALD_SLACK_CLIENT_ID and HERALD_SLACK_CLIENT_SECRET must be set together")
        if self.slack_client_secret and not self.secret_key:
            raise ValueError("HERALD_SECRET_KEY is required when HERALD_SLACK_CLIENT_SECRET is set "
                             "(it encrypts bot tokens and signs install links)")
        if self.slack_client_id and not self.slack_enabled:  # OAuth v2 itself needs no signing secret
            raise ValueError("HERALD_SLACK_SIGNING_SECRET (or HERALD_SLACK_APP_TOKEN for Socket Mode) is required "
                             "when HERALD_SLACK_CLIENT_ID is set")
        return self

    @model_validator(mode="after")
    def _check_slack_pair(self) -> "Settings":
        if self.slack_bot_token and not (self.slack_signing_secret or self.slack_app_token):
            raise ValueError("HERALD_SLACK_SIGNING_SECRET is required when HERALD_SLACK_BOT_TOKEN is set "
                             "(or HERALD_SLACK_APP_TOKEN for Socket Mode)")
        return self

    @model_validator(mode="after")
    def _check_teams_pair(self) -> "Settings":
        """Every reply, notice and reminder to Teams needs a Bot Connector token, which the app's
        password obtains: without it they are all refused there. Only a local connector (e.g. the
        Bot Framework Emulator, HERALD_TEAMS_CHECK_SERVICE_URL=false) takes requests without one."""
        if self.teams_app_id and not self.teams_app_password and self.teams_check_service_url:
            raise ValueError("HERALD_TEAMS_APP_PASSWORD is required when HERALD_TEAMS_APP_ID is set "
                             "(the app registration's client secret: the Bot Connector refuses messages without it)")
        return self

    @model_validator(mode="after")
    def _check_delivery_lease(self) -> "Settings":
        """A lease and heartbeat the engine can deliver under: it sends in a lane only while more
        than DELIVERY_SEND_MARGIN_SECONDS of the lease is left, so a shorter lease never sent anything."""
        margin = DELIVERY_SEND_MARGIN_SECONDS
        if self.delivery_lease_seconds < MIN_DELIVERY_LEASE_SECONDS:
            raise ValueError(f"HERALD_DELIVERY_LEASE_SECONDS must be at least {MIN_DELIVERY_LEASE_SECONDS} "
                             f"(a replica starts no send with less than {margin:g} s of its lease left), "
                             f"got {self.delivery_lease_seconds}")
        if self.delivery_heartbeat_seconds >= self.delivery_lease_seconds - margin:
            raise ValueError(f"HERALD_DELIVERY_HEARTBEAT_SECONDS must be more than 0 and less than "
                             f"{self.delivery_lease_seconds - margin:g} with HERALD_DELIVERY_LEASE_SECONDS="
                             f"{self.delivery_lease_seconds} (the lease minus the {margin:g} s a replica keeps "
                             f"in hand), got {self.delivery_heartbeat_seconds:g}")
        return self

    @property
    def tortoise_db_url(self) -> str:
        """The URL in the form tortoise-orm expects (it spells PostgreSQL `postgres://`)."""
        scheme, rest = self.database_url.split("://", 1)
        if scheme == "sqlite":
            return self.database_url
        url = "postgres://" + rest
        query = urlsplit(url).query
        if "maxsize" in parse_qs(query):
            return url
        return url + ("&" if query else "?") + f"maxsize={self.database_pool_size}"

    @property
    def slack_enabled(self) -> bool:
        """Slack's listeners run: over HTTP (a signing secret) and/or Socket Mode (an app token)."""
        return self.slack_signing_secret is not None or self.slack_app_token is not None

    @property
    def slack_http_enabled(self) -> bool:
        return self.slack_signing_secret is not None

    @property
    def sandbox_active(self) -> bool:
        """Whether `herald serve` runs the sandbox (see `sandbox`): in `auto`, only while no
        platform is configured, Slack counted as `slack_enabled` counts it (HTTP or Socket Mode)."""
        if self.sandbox != "auto":
            return self.sandbox == "on"
        return not self.slack_enabled and not self.teams_app_id

    @property
    def teams_unauthenticated(self) -> bool:
        """Whether /api/messages takes activities without a token: only without an app id, and then
        only against a local connector (HERALD_TEAMS_CHECK_SERVICE_URL=false) or in the sandbox.
        Otherwise, without an app id, it refuses every request: a deployment whose Teams credentials
        were left out must not let anyone act (acknowledge, send) in a member's or CAM's name."""
        return not self.teams_app_id and (not self.teams_check_service_url or self.sandbox_active)

    def for_sandbox(self) -> "Settings":
        """These settings as the sandbox runs them: its own database, a quicker clock."""
        return self.model_copy(update={"database_url": self.sandbox_database_url,
                                       "tick_seconds": min(self.tick_seconds, 10.0)})

    @property
    def console_url(self) -> str:
        """Where the console is: HERALD_PUBLIC_URL's, else the local address `serve` listens on."""
        if self.public_url:
            return self.public_url + "/console/"
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/console/"

    @property
    def slack_oauth_enabled(self) -> bool:
        return bool(self.slack_client_id and self.slack_client_secret)


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one readable `ConfigError` line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        field = ".".join(str(p) for p in first.get("loc", ()))
        if field and not message.startswith("HERALD_"):
            message = f"HERALD_{field.upper()}: {message}"
        raise ConfigError(f"invalid configuration: {message}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()

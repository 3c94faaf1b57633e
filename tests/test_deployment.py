"""What can be checked of the deployment without a Docker engine: docker-compose.yml against the
Compose Specification's JSON schema and Herald's own expectations, the Caddyfile with Caddy when
it is installed, .env.example against the settings, and the image's entry point and HEALTHCHECK
run as they are written, in this virtualenv, against a real server process."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from config.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_ONLY = {"HERALD_PUBLISHED_PORT"}  # read by docker-compose.yml, not by Herald


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# a reader sent to a markdown file by the code: `docs/architecture.md`, or a path outside the
# repository; optionally followed by the section, `docs/architecture.md, "Its heading"`
_POINTER = re.compile(r'(?P<path>/work/[\w./-]+\.md|\b(?:docs/)?[\w-]+\.md)(?:, "(?P<section>[^"]+)")?')


def test_the_files_the_code_points_readers_at_ship_with_it() -> None:
    """A docstring that says "see <file>" must name a file of the repository (and a section that is
    in it): one outside it (a brief on the author's machine) is a dead end for the next engineer."""
    dead = []
    for source in sorted([*ROOT.joinpath("bot").rglob("*.py"), *ROOT.joinpath("storage").rglob("*.py")]):
        text = " ".join(source.read_text(encoding="utf-8").split())  # a pointer may wrap across lines
        for found in _POINTER.finditer(text):
            target = ROOT / found["path"] if not found["path"].startswith("/") else Path(found["path"])
            where = f"{source.relative_to(ROOT)}: {found[0]}"
            if ROOT not in target.parents or not target.is_file():
                dead.append(where)
            elif found["section"] and not any(" ".join(line.lstrip("#").split()) == found["section"]
                                              for line in target.read_text(encoding="utf-8").splitlines()
                                              if line.startswith("#")):
                dead.append(f"{where} (no such section)")
    assert not dead, dead


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]
    broken = {**_compose(), "services": {"db": {"image": "postgres:17", "healthcheck": {"test": 5}}}}
    assert list(validator.iter_errors(broken))  # the schema does catch mistakes


def test_compose_runs_postgres_then_one_migration_then_two_replicas_behind_one_port() -> None:
    services = _compose()["services"]
    db, migrate, herald, proxy = (services[n] for n in ("db", "migrate", "herald", "proxy"))
    assert db["image"].startswith("postgres:") and "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"] and "pgdata" in _compose()["volumes"]
    for service in (migrate, herald):
        assert service["build"] == "." and service["depends_on"]["db"]["condition"] == "service_healthy"
        assert service["environment"]["HERALD_DATABASE_URL"].startswith("postgres://")
        assert service["environment"]["HERALD_MIGRATE_ON_START"] == "false"
    assert migrate["command"] == ["herald", "db", "upgrade"] and migrate["restart"] == "no"
    assert herald["command"] == ["herald", "serve"] and herald["deploy"]["replicas"] == 2
    assert herald["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "ports" not in herald  # only the proxy publishes a port
    (published,) = proxy["ports"]
    assert published.endswith(":3978")
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "dynamic a herald 3978" in caddyfile and "health_uri /healthz" in caddyfile
    assert str(Settings().port) == "3978"


def test_compose_gives_a_replica_the_time_its_stop_takes() -> None:
    """Docker kills a container 10 s after SIGTERM unless told otherwise, and a stop that is cut
    short is a kill -9 (work Slack and Teams were answered for is lost). The grace period covers
    the server's own bounds (bot.app.stop_seconds) with the lease compose runs with."""
    from bot.app import stop_seconds

    grace = _compose()["services"]["herald"]["stop_grace_period"]
    seconds = int(re.fullmatch(r"(\d+)s", grace).group(1))  # type: ignore[union-attr]
    lease = _compose()["x-herald"]["environment"].get("HERALD_DELIVERY_LEASE_SECONDS")
    settings = Settings(**({"delivery_lease_seconds": int(lease)} if lease else {}))
    assert seconds >= stop_seconds(settings) > 10
    assert f"--stop-timeout {seconds}" in (ROOT / "Dockerfile").read_text()


@pytest.mark.skipif(shutil.which("caddy") is None, reason="Caddy is not installed (apt-get install caddy)")
def test_the_caddyfile_is_valid_for_caddy(tmp_path: Path) -> None:
    ok = subprocess.run(["caddy", "validate", "--config", str(ROOT / "deploy" / "Caddyfile"), "--adapter",
                         "caddyfile"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr[-2000:]
    broken = tmp_path / "Caddyfile"
    broken.write_text((ROOT / "deploy" / "Caddyfile").read_text().replace("lb_policy round_robin", "lb_policy nope"))
    bad = subprocess.run(["caddy", "validate", "--config", str(broken), "--adapter", "caddyfile"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


def test_env_example_lists_every_setting_and_loads() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*(HERALD_[A-Z0-9_]+)=", text, flags=re.M))
    settings = {f"HERALD_{name.upper()}" for name in Settings.model_fields}
    assert settings - listed == set(), "settings missing from .env.example"
    assert listed - settings - COMPOSE_ONLY == set(), ".env.example lists settings that do not exist"
    loaded = Settings(_env_file=ROOT / ".env.example")  # the uncommented lines are valid as they stand
    assert loaded.database_url == "sqlite://herald.db"


def test_a_default_env_example_shows_is_the_default_when_written_out(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """.env.example: "a commented line shows the default" (for a setting with none, an example).
    It showed HERALD_TOPICS_FILE=config/topics.yaml and HERALD_KB_DIR=config/kb, while the defaults
    are the installed package's files: uncommented in a .env read from another working directory
    (the image and compose run in /data), `serve` refused to start ("cannot read topics file
    config/topics.yaml"). Each default shown, written out there, is the setting's default."""
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("HERALD_")]:
        monkeypatch.delenv(key)
    defaults = Settings(_env_file=None)
    shown = re.findall(r"^#\s*(HERALD_[A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), flags=re.M)
    differs = {}
    for name, value in shown:
        field = name.removeprefix("HERALD_").lower()
        if field not in Settings.model_fields or getattr(defaults, field) is None:
            continue  # docker compose's own, or a setting with no default (the line is an example)
        monkeypatch.setenv(name, value)
        written_out = getattr(Settings(_env_file=None), field)
        monkeypatch.delenv(name)
        if written_out != getattr(defaults, field):
            differs[name] = f"{value!r} is {written_out!r}, the default {getattr(defaults, field)!r}"
    assert not differs, f"written out in {tmp_path}, these lines of .env.example are not the default: {differs}"


# ---- the image's entry point and HEALTHCHECK, run without Docker -------------------------------

def _dockerfile_json(instruction: str) -> list[str]:
    """The JSON (exec form) array of the Dockerfile's CMD, or of its HEALTHCHECK's CMD."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith(instruction + " "))
    return json.loads(line[line.index("CMD") + 3:].strip() if instruction == "HEALTHCHECK" else line[len("CMD"):])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    bin_dir = str(Path(sys.executable).parent)
    env.update({"PATH": bin_dir + os.pathsep + env.get("PATH", ""), "HERALD_PORT": str(port),
                "HERALD_HOST": "127.0.0.1", "HERALD_DATABASE_URL": f"sqlite://{tmp_path / 'herald.db'}",
                "HERALD_KB_SEMANTIC": "false", "HERALD_CACHE_DIR": str(tmp_path / "cache"),
                "HERALD_SANDBOX": "off", **extra})  # as docker-compose.yml sets it
    return env


def _healthcheck(env: dict[str, str]) -> int:
    return subprocess.run(_dockerfile_json("HEALTHCHECK"), env=env, capture_output=True, timeout=30).returncode


def _wait_healthy(env: dict[str, str], process: subprocess.Popen, timeout: float = 90) -> None:
    """Wait until the server says it listens (aiohttp prints "Running on" once the socket is bound,
    after start-up), then run the HEALTHCHECK command, which must pass at once."""
    listening = threading.Event()

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            if "Running on" in line:
                listening.set()
        listening.set()  # the output ended: the server exited

    threading.Thread(target=read, daemon=True).start()
    assert listening.wait(timeout), "the server never said it listens"
    assert process.poll() is None, process.stderr.read() if process.stderr else "the server exited"
    assert _healthcheck(env) == 0


def _stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def test_the_image_command_serves_and_its_healthcheck_passes_then_fails(tmp_path: Path) -> None:
    command = _dockerfile_json("CMD")
    assert command == ["herald", "serve"]
    env = _environment(tmp_path, _free_port())
    assert _healthcheck(env) != 0  # nothing listens yet
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        _wait_healthy(env, process)
    finally:
        code = _stop(process)
    assert code == 0
    assert _healthcheck(env) != 0  # and it fails once the server is gone


def test_compose_order_migrate_once_then_serve_without_migrating(tmp_path: Path) -> None:
    """The compose file's sequence: serving a database nobody migrated is refused; `herald db
    upgrade` (the migrate service) then lets the replicas start with HERALD_MIGRATE_ON_START=false."""
    env = _environment(tmp_path, _free_port(), HERALD_MIGRATE_ON_START="false")
    refused = subprocess.run(["herald", "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "run `herald db upgrade` first" in refused.stderr and "Traceback" not in refused.stderr
    migrate = subprocess.run(shlex.split("herald db upgrade"), env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    assert migrate.returncode == 0 and "up to date" in migrate.stdout
    replicas = []
    for _ in range(2):
        replica_env = {**env, "HERALD_PORT": str(_free_port())}
        replicas.append((replica_env, subprocess.Popen(["herald", "serve"], env=replica_env, cwd=tmp_path,
                                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    try:
        for replica_env, process in replicas:
            _wait_healthy(replica_env, process)
    finally:
        codes = [_stop(process) for _, process in replicas]
    assert codes == [0, 0]


# ---- a replica stopping behind the proxy --------------------------------------------------------

def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def _serve(env: dict[str, str], tmp_path: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"serve-{port}.log", "w"))  # noqa: SIM115


async def _status(session, url: str) -> int:  # noqa: ANN001
    import aiohttp

    try:
        async with session.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def test_on_sigterm_healthz_says_draining_before_the_listener_closes(tmp_path: Path) -> None:
    """On SIGTERM `herald serve` closed its listening socket at once (aiohttp's run_app) and
    /healthz never said it was leaving: a proxy kept sending requests to the closed port until its
    next health check. For HERALD_DRAIN_SECONDS it now still serves, /healthz answering 503
    "draining", then stops as before."""
    import aiohttp

    from tests.support import wait_until

    port = _free_port()
    env = _environment(tmp_path, port, HERALD_DRAIN_SECONDS="10", PYTHONPATH=str(ROOT))
    process = _serve(env, tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async def serving() -> bool:
                return await _status(session, f"{url}/healthz") == 200

            await wait_until(serving, timeout=90, what="the replica serving")
            process.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                try:
                    async with session.get(f"{url}/healthz") as response:
                        return response.status == 503 and (await response.json())["status"] == "draining"
                except aiohttp.ClientError:  # the listener closed at once
                    return False

            await wait_until(draining, timeout=10, what="/healthz saying draining")  # 3 s was missed on a busy CI host
            assert await _status(session, f"{url}/privacy") == 200  # still serving meanwhile
        await wait_until(lambda: _refuses(port), timeout=30, what="the listener closed after the drain")
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.skipif(shutil.which("caddy") is None, reason="Caddy is not installed (apt-get install caddy)")
async def test_a_replica_stopping_behind_the_shipped_proxy_costs_no_request(tmp_path: Path) -> None:
    """README (docker-compose): Caddy spreads requests over the replicas; every stop, restart and
    upgrade sends SIGTERM to one. deploy/Caddyfile neither retried another upstream
    (`lb_try_duration`) nor noticed a refused connection (passive health checks): until its next
    active check Caddy sent every other request to the stopped replica and answered 502 (for
    Slack a lost Acknowledge click, for Teams a message that failed).

    The proxy is deploy/Caddyfile with its Docker-DNS upstream replaced by the two replicas'
    addresses, on plain HTTP, writing nothing outside tmp_path; every other line as shipped."""
    import aiohttp

    from tests.support import wait_until

    env = _environment(tmp_path, 3978, PYTHONPATH=str(ROOT), HERALD_MIGRATE_ON_START="false")  # --port says
    assert subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], env=env, cwd=tmp_path,
                          capture_output=True, timeout=120).returncode == 0
    ports = [_free_port(), _free_port()]
    replicas = [_serve(env, tmp_path, p) for p in ports]
    proxy_port = _free_port()
    config, n = re.subn(r"dynamic a herald 3978 \{[^}]*\}", f"to 127.0.0.1:{ports[0]} 127.0.0.1:{ports[1]}",
                        (ROOT / "deploy" / "Caddyfile").read_text())
    assert n == 1
    config = "{\n\tadmin off\n\tauto_https off\n\tskip_install_trust\n}\n" + config.replace(
        ":3978 {", f"http://127.0.0.1:{proxy_port} {{")
    (tmp_path / "Caddyfile").write_text(config)
    caddy_env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
                 "XDG_CONFIG_HOME": str(tmp_path / "caddy-config")}
    caddy = subprocess.Popen(["caddy", "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
                             cwd=tmp_path, env=caddy_env, stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "caddy.log", "w"))  # noqa: SIM115
    url = f"http://127.0.0.1:{proxy_port}/healthz"
    page = f"http://127.0.0.1:{proxy_port}/privacy"  # a request the draining replica still serves
    try:
        async with aiohttp.ClientSession() as session:
            async def both_serving() -> bool:
                return [await _status(session, url) for _ in range(4)] == [200] * 4

            await wait_until(both_serving, timeout=90, what="both replicas serving through the proxy")
            replicas[0].send_signal(signal.SIGTERM)  # docker compose stop/restart/up of an upgrade
            during = [await _status(session, page) for _ in range(10)]
            await wait_until(lambda: _refuses(ports[0]), timeout=30, what="the stopping replica's listener closed")
            after = [await _status(session, url) for _ in range(10)]
        assert during == after == [200] * 10, (
            f"through the shipped Caddyfile, requests after one replica got SIGTERM were answered {during} while "
            f"it drained and {after} once its listener closed, though the other replica was healthy")
    finally:
        for process in (caddy, *replicas):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (caddy, *replicas):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

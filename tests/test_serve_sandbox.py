"""`herald serve` with nothing configured, as the README's first command runs it: sandbox mode on
its own database, a sign-in link printed at start-up, and a sample notice a newcomer can open and
acknowledge from a sample member's inbox."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from tests.cli_support import herald, serve_until_listening

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Output:
    """A child's output lines, read by a thread so that waiting for a line can time out."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 90) -> str:
        """The first group of the first line, seen already or printed within `timeout`, matching `pattern`."""
        for line in self.seen:
            if match := re.search(pattern, line):
                return match.group(1)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match.group(1)
        raise AssertionError(f"nothing printed matches {pattern!r}:\n" + "".join(self.seen))

    def rest(self, process: subprocess.Popen) -> str:
        """Everything printed, once the process has ended."""
        process.wait(30)
        while (line := self._lines.get(timeout=30)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


async def test_serve_starts_the_sandbox_and_a_newcomer_acknowledges_a_notice(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(PYTHONUNBUFFERED="1", HERALD_KB_SEMANTIC="false", HERALD_CACHE_DIR=str(tmp_path / "cache"),
               HERALD_HOST="127.0.0.1", PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = _Output(process)
    try:
        link = output.wait_for(r"(http://\S+/console/sign-in\?token=hcl_\S+)")
        assert link.startswith(f"http://127.0.0.1:{port}/console/sign-in?token=")
        assert any("SANDBOX MODE" in line for line in output.seen)
        assert (tmp_path / "herald-sandbox.db").exists() and not (tmp_path / "herald.db").exists()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(link) as response:
                page = await response.text()
            pre = re.search(r'name="pre" value="([^"]+)"', page).group(1)
            token = link.split("token=")[1]
            async with session.post(f"http://127.0.0.1:{port}/console/sign-in",
                                    data={"token": token, "pre": pre}) as response:
                assert response.status == 200 and "Recall of NW-200" in await response.text()
            async with session.get(f"http://127.0.0.1:{port}/console/sandbox") as response:
                page = await response.text()
            member = re.search(r'href="/console/sandbox/(\d+)">Lena Fischer', page).group(1)
            csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
            async with session.get(f"http://127.0.0.1:{port}/console/sandbox/{member}") as response:
                inbox = await response.text()  # delivered during start-up, before the link was printed
            assert 'value="herald_ack"' in inbox
            async with session.post(f"http://127.0.0.1:{port}/console/sandbox/{member}/action",
                                    data={"_csrf": csrf, "action_id": "herald_ack", "value": "1"}) as response:
                assert response.status == 200 and "Acknowledged by" in await response.text()
        # what start-up left alive leaves the collector's walks; the knowledge base, loaded after it,
        # does not (it is replaced when an approved phrasing changes it, and must be freed then)
        assert int(output.wait_for(r"start-up heap frozen: (\d+) objects")) > 50_000
        output.wait_for(r"(onboarding assistant ready)")
        lines = "".join(output.seen)
        assert lines.index("start-up heap frozen") < lines.index("onboarding assistant ready")
    finally:
        process.terminate()
    printed = output.rest(process)
    assert "Traceback" not in printed
    assert token not in re.sub(r"sign-in\?token=hcl_\S+", "", printed)  # the access log never shows it


@pytest.mark.parametrize("setting", ["HERALD_SLACK_SIGNING_SECRET", "HERALD_SLACK_APP_TOKEN", "HERALD_TEAMS_APP_ID"])
def test_a_configured_platform_turns_the_sandbox_off(setting: str) -> None:
    from config.settings import load_settings

    value = "xapp-1-A0HERALD-1-x" if setting == "HERALD_SLACK_APP_TOKEN" else "x"
    assert not load_settings(**{setting.removeprefix("HERALD_").lower(): value, "teams_app_password": "x"}).sandbox_active


# README, "Behind a firewall": an app token, an app made with --socket-mode, "the signing secret is
# optional"; plus the bot token of the single workspace, and the default HERALD_SANDBOX.
SOCKET_MODE_ONLY = {"HERALD_SLACK_APP_TOKEN": "xapp-1-A0HERALD-1-firstrun",
                    "HERALD_SLACK_BOT_TOKEN": "xoxb-firstrun-bot-token", "HERALD_SANDBOX": "auto"}


def test_slack_over_socket_mode_without_a_signing_secret_is_served_on_the_real_database(tmp_path: Path) -> None:
    """An operator configuring Slack over Socket Mode exactly as README says got SANDBOX MODE: the
    real workspace served from herald-sandbox.db, seeded with the sample Northwind world and its
    CAM's sign-in link printed, because `sandbox_active` looked at the signing secret and the
    Teams app id only, not at the app token that `slack_enabled` counts."""
    unreachable = f"http://127.0.0.1:{_free_port()}/api/"  # nothing listens there: start-up must not care
    code, output = serve_until_listening(tmp_path, HERALD_SLACK_API_URL=unreachable, **SOCKET_MODE_ONLY)
    assert code is None, output[-600:]
    assert "SANDBOX MODE" not in output, output[:300]
    assert not (tmp_path / "herald-sandbox.db").exists(), "the real Slack workspace ran on the sandbox database"
    assert (tmp_path / "herald.db").exists()


def test_with_slack_over_socket_mode_a_directory_import_goes_to_the_real_database(tmp_path: Path) -> None:
    """The same operator's next README step, `herald directory import partners.csv`, wrote the
    partner directory into the sandbox's database ("sandbox mode ... using the sandbox's database"),
    the file README calls "never your real one"."""
    (tmp_path / "partners.csv").write_text((ROOT / "config" / "sandbox" / "directory.csv").read_text())
    result = herald("directory", "import", "partners.csv", "--quiet", cwd=tmp_path, **SOCKET_MODE_ONLY)
    assert result.returncode == 0, result.stderr
    assert "sandbox" not in result.stderr.lower(), result.stderr
    assert not (tmp_path / "herald-sandbox.db").exists()
    assert (tmp_path / "herald.db").exists()

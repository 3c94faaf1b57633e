"""`herald` as an operator runs it: a child process with a clean environment (no HERALD_* from the
test run), for what only a real process shows: its exit code, what it prints, whether it exits."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent


def in_process_cli(monkeypatch: pytest.MonkeyPatch, db_url: str, **settings: str) -> CliRunner:
    """A CliRunner for `herald` in this process, with none of the test run's HERALD_* settings:
    HERALD_DATABASE_URL=db_url and `settings` (e.g. HERALD_LOG_FORMAT="json")."""
    for key in [k for k in os.environ if k.startswith("HERALD_")]:
        monkeypatch.delenv(key)
    for key, value in {"HERALD_DATABASE_URL": db_url, **settings}.items():
        monkeypatch.setenv(key, value)
    return CliRunner()


def herald_env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    return {**clean, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "HERALD_KB_SEMANTIC": "false",
            "HERALD_SANDBOX": "off", **extra}


def herald(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """`herald ARGS`; a command that does not exit within `timeout` fails the test."""
    try:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True,
                              env=herald_env(**env), timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(f"`herald {' '.join(args)}` did not exit within {timeout:.0f} s; it printed:\n{err[-1500:]}")


def herald_at_a_terminal(*args: str, typed: str, cwd: Path, timeout: float = 120,
                         **env: str) -> subprocess.CompletedProcess:
    """`herald ARGS` run from a terminal: its standard input is a pseudo-terminal on which `typed`
    was typed ahead ("n\\n"; "\\x04" is Ctrl-D, end of input); its output is captured."""
    import pty

    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "bot.cli", *args], stdin=terminal, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=herald_env(**env), cwd=cwd)
        os.write(controller, typed.encode())
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"`herald {' '.join(args)}` did not exit within {timeout:.0f} s; it printed:\n{err[-1500:]}")
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)
    finally:
        os.close(terminal)
        os.close(controller)


def serve_until_listening(cwd: Path, **env: str) -> tuple[int | None, str]:
    """Start `herald serve --port 0`; return (its exit code, everything it printed) once it exits,
    or (None, output) as soon as it says it is listening (then it is stopped): no fixed wait."""
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", "0"], cwd=cwd,
                               env=herald_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 120  # a guard only: either outcome normally comes within seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                return process.wait(30), "".join(seen)
            seen.append(line)
            if "Running on" in line:
                return None, "".join(seen)
        return None, "".join(seen) + "\n[still running, printing nothing, after 120 s]"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)

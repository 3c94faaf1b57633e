"""What the fake platform servers share: an aiohttp application served on a local port."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, Self

from aiohttp import web


class LocalServer:
    """Serves `build_app()` on `host` (port 0: a free one) from `start()` until `stop()`; also an
    async context manager. Subclasses set `_host` and `_bind_port` and build the application."""

    _host: str = "127.0.0.1"
    _bind_port: int = 0
    _runner: web.AppRunner | None = None
    _port: int | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context to serve with (None: plain HTTP)."""
        return None

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._bind_port, backlog=4096, ssl_context=self.ssl_context())
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port


class ScriptedFaults:
    """Faults queued per route (or Web API method) and answer delays, for a fake platform. Each fake
    builds its own fault records in its `fail_next` (what a fault looks like is the platform's); a
    record needs a `remaining` count."""

    _faults: dict[str, deque[Any]]
    _delays: dict[str, float]
    _holds: dict[str, asyncio.Event]

    def _no_faults(self) -> None:
        self._faults, self._delays, self._holds = {}, {}, {}

    def delay(self, route: str, seconds: float) -> None:
        """Answer every later ``route`` call after ``seconds`` (0 removes the delay)."""
        if seconds and seconds > 0:
            self._delays[route] = seconds
        else:
            self._delays.pop(route, None)

    def hold(self, *routes: str) -> None:
        """Keep every later call of these routes waiting, unanswered, until ``release``: a platform
        as slow as a test needs, with no clock involved (the call is recorded when it arrives)."""
        for route in routes:
            self._holds.setdefault(route, asyncio.Event())

    def release(self, *routes: str) -> None:
        """Answer the held calls of these routes (all held routes if none is named), and later ones at once."""
        for route in routes or list(self._holds):
            held = self._holds.pop(route, None)
            if held is not None:
                held.set()

    def clear_faults(self) -> None:
        self._faults.clear()
        self._delays.clear()
        self.release()

    async def _slow_as_told(self, route: str) -> None:
        """What ``delay`` and ``hold`` ask of a call of ``route``, before it is answered."""
        if seconds := self._delays.get(route):
            await asyncio.sleep(seconds)
        if (held := self._holds.get(route)) is not None:
            await held.wait()

    def _take_fault(self, route: str) -> Any:
        """The fault for this call of ``route``, if one is queued (each is used ``times`` times)."""
        queue = self._faults.get(route)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

"""A throwaway database for one benchmark run: a temporary SQLite file, or a fresh PostgreSQL
database created beside the one given (and dropped afterwards unless `keep`)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from storage.db import shown_url


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ScratchDatabase:
    """A fresh database for one run; `url` is what Herald connects to."""

    def __init__(self, given: str | None, keep: bool, *, name: str = "bench") -> None:
        self.given = given
        self.keep = keep
        self.name = name
        self.url = ""
        self.kind = ""
        self._tmpdir: str | None = None
        self._sqlite_path: Path | None = None
        self._pg_admin_url = ""
        self._pg_name = ""

    async def create(self) -> str:
        if not self.given:
            self.kind = "sqlite"
            self._tmpdir = tempfile.mkdtemp(prefix=f"herald-{self.name}-")
            self._sqlite_path = Path(self._tmpdir) / "bench.db"
            self.url = f"sqlite://{self._sqlite_path}"
            return self.url
        scheme = urlsplit(self.given).scheme
        if scheme == "sqlite":
            self.kind = "sqlite"
            path = Path(self.given[len("sqlite://"):])
            if path.exists():
                raise SystemExit(f"{self.name}: {path} exists; give a path that does not exist yet (the run needs "
                                 "an empty database)")
            self._sqlite_path = path
            self.url = self.given
            return self.url
        if scheme in ("postgres", "postgresql", "asyncpg"):
            import asyncpg

            self.kind = "postgres"
            parts = urlsplit(self.given)
            self._pg_admin_url = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
            self._pg_name = f"herald_{self.name}_" + uuid.uuid4().hex[:12]
            conn = await asyncpg.connect(self._pg_admin_url)
            try:
                await conn.execute(f'CREATE DATABASE "{self._pg_name}"')
            finally:
                await conn.close()
            self.url = urlunsplit(("postgres", parts.netloc, "/" + self._pg_name, parts.query, ""))
            return self.url
        raise SystemExit(f"{self.name}: unsupported database URL scheme {scheme!r}")

    async def drop(self) -> None:
        if self.keep:
            progress(f"kept the database: {shown_url(self.url)}")
            return
        if self.kind == "postgres" and self._pg_name:
            import asyncpg

            conn = await asyncpg.connect(self._pg_admin_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)')
            finally:
                await conn.close()
        elif self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        elif self._sqlite_path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(self._sqlite_path) + suffix).unlink(missing_ok=True)

"""Shared fixtures: dates inside Meta's window, a running sandbox, a PostgreSQL server, sample warehouses."""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def yesterday() -> dt.date:
    """The samples' latest finished day (New York), not the UTC date's yesterday: from 00:00 to 05:00 UTC that
    day is not over there yet and a sample of it has events in the future."""
    from capi_pipeline.sample import latest_complete_day

    return latest_complete_day()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL for the session (pgserver's bundled binaries, a Unix socket in a temp dir); yields the
    socket directory. Started on first use (~1 s)."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg")))
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    try:
        yield server.get_uri().split("host=", 1)[1]
    finally:
        server.cleanup()


_databases = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server, as a SQLAlchemy URL (psycopg 3)."""
    import psycopg

    name = f"capi_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(f"host={postgres_server} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@/{name}?host={postgres_server}"


@pytest.fixture
def sandbox() -> Iterator[object]:
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    with run_sandbox(SandboxConfig(host="127.0.0.1", port=0)) as sb:
        yield sb

"""Shared fixtures: dates inside Meta's window, a running sandbox, sample warehouses."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def yesterday() -> dt.date:
    return dt.date.today() - dt.timedelta(days=1)


@pytest.fixture
def sandbox() -> Iterator[object]:
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    with run_sandbox(SandboxConfig(host="127.0.0.1", port=0)) as sb:
        yield sb

"""Fixtures for the fleet tests: processes started by a test, always ended after it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from edgemeter.demo.broker import stop_process


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Append what the test starts (daemons, collectors); each is terminated, then killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        stop_process(proc, timeout_s=15)

"""Fixtures that give tests real services and real models.

A fixture that cannot get its service skips the test on a developer machine but fails it when
``CI=true``, so a green CI never hides a missing install step.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO_ROOT.parent / "shared" / "models"
SHARED_SAMPLES = REPO_ROOT.parent / "shared" / "samples"
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: install it in .ci/run)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not SHARED_MODELS.is_dir():
        unavailable(f"the team's models are not at {SHARED_MODELS}")
    return SHARED_MODELS


@pytest.fixture(scope="session")
def shared_samples() -> Path:
    if not SHARED_SAMPLES.is_dir():
        unavailable(f"the team's samples are not at {SHARED_SAMPLES}")
    return SHARED_SAMPLES


@pytest.fixture(scope="session")
def mosquitto_url() -> Iterator[str]:
    """A private Mosquitto on a free loopback port, for the whole session."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="edgemeter-mosquitto-"))
    conf = workdir / "mosquitto.conf"
    # max_queued_messages: Mosquitto's default of 1000 silently drops QoS 1 messages queued for a
    # slow or absent persistent subscriber; the tests publish bursts larger than that.
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 100000\n"
        "max_inflight_messages 100\n"
        "log_dest stderr\n"
    )
    # Mosquitto drops root privileges before opening a log_dest file, so the fixture opens the log.
    log = (workdir / "mosquitto.log").open("wb")
    proc = subprocess.Popen([str(binary), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_for_port(port):
            unavailable(f"mosquitto did not start on port {port}")
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


POSTGRES_URL = os.environ.get(
    "EDGEMETER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A private, empty schema in the test PostgreSQL, dropped afterwards."""
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed (pip install 'edgemeter[collector]')")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as err:
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_URL}: {err}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

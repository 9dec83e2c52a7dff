"""Fixtures that give tests real services and real models.

A fixture that cannot get its service skips the test on a developer machine but fails it when
``CI=true``, so a green CI never hides a missing install step.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from edgemeter.demo.broker import PrivateBroker, find_mosquitto
from shared.errors import BrokerError

# The `secure_broker` fixture: Mosquitto with TLS, passwords and the fleet ACL from deploy/mosquitto;
# markers from fixtures (mqtt, postgres, subprocess) and the `--offline` guard of `make test-fast`;
# `pytester` runs small suites of their own for tests/test_offline_guard.py.
pytest_plugins = ["tests.secure_broker", "tests.suite", "pytester"]

# Examples per property test (tests/strategies.py): `make test-fast` passes --hypothesis-profile=fast.
settings.register_profile("full", max_examples=200)
settings.register_profile("fast", max_examples=25)
settings.load_profile("full")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO_ROOT.parent / "shared" / "models"
SHARED_SAMPLES = REPO_ROOT.parent / "shared" / "samples"
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: install it in .ci/run)")
    pytest.skip(reason)


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


@pytest.fixture(scope="module")
def mosquitto_url() -> Iterator[str]:
    """A private Mosquitto on a free loopback port, fresh for each test module.

    Per module, not per session: retained messages and persistent sessions that one file leaves
    behind never reach the next, whatever order (and whichever xdist worker) runs them in.

    It is the demo's broker (``edgemeter.demo.broker.PrivateBroker``), whose config raises
    ``max_queued_messages``: the tests publish bursts larger than Mosquitto's default of 1000.
    """
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    broker = PrivateBroker(prefer="mosquitto")
    try:
        broker.start()
    except BrokerError as err:
        unavailable(f"mosquitto did not start: {err}")
    try:
        yield broker.url
    finally:
        broker.stop()


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

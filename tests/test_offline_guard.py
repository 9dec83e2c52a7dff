"""``tests/suite.py``: fixtures mark their tests, and ``--offline`` holds the rest to it.

Each test runs a small suite of its own in a pytest subprocess with the plugin loaded, so the
guard it switches on never touches this run.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[1]

INNER_CONFTEST = '''
import pytest

pytest_plugins = ["tests.suite"]

@pytest.fixture()
def postgres_url():
    return "postgresql://nobody@127.0.0.1:1/none"

@pytest.fixture()
def store(postgres_url):
    return postgres_url
'''


@pytest.fixture()
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    mqtt\n    postgres\n    subprocess\n    slow\n")
    return pytester


@pytest.fixture()
def foreign_listener() -> Iterator[int]:
    """A port that this process listens on: another process, seen from the inner run."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


def test_a_fixture_marks_every_test_that_uses_it_even_through_another_fixture(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(test_marks="""
        def test_direct(postgres_url): pass
        def test_indirect(store): pass
        def test_plain(): pass
    """)

    result = inner.runpytest_subprocess("-m", "postgres", "--collect-only", "-q")

    result.stdout.fnmatch_lines(["*test_direct*", "*test_indirect*", "*2/3 tests collected*"])


def test_offline_deselects_service_tests_and_fails_the_unmarked_ones_that_use_a_service(
    inner: pytest.Pytester, foreign_listener: int,
) -> None:
    inner.makepyfile(test_probe=f"""
        import socket, subprocess, pytest

        def test_marked_by_its_fixture(postgres_url): raise AssertionError("must not run")
        @pytest.mark.subprocess
        def test_marked_itself(): raise AssertionError("must not run")

        def test_spawns(): subprocess.run(["true"])
        def test_reaches_another_process():
            socket.create_connection(("127.0.0.1", {foreign_listener}), timeout=5).close()
        def test_swallows_the_refusal():
            try:
                socket.create_connection(("127.0.0.1", {foreign_listener}), timeout=5).close()
            except BaseException:
                pass
        def test_opens_postgresql():
            import psycopg
            psycopg.connect("postgresql://nobody@127.0.0.1:{foreign_listener}/none?connect_timeout=2")

        def test_own_server_is_fine():
            with socket.socket() as server:
                server.bind(("127.0.0.1", 0))
                server.listen()
                socket.create_connection(server.getsockname(), timeout=5).close()
        def test_nothing_listening_is_fine():
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5)
            import psycopg
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(f"postgresql://nobody@127.0.0.1:{{port}}/none?connect_timeout=2")
    """)
    pytest.importorskip("psycopg")

    result = inner.runpytest_subprocess("--offline", "-p", "no:cacheprovider", "-vv")

    result.assert_outcomes(passed=2, failed=4, deselected=2)
    result.stdout.fnmatch_lines([
        "FAILED*test_spawns*started a child process*",
        "FAILED*test_reaches_another_process*a service another process runs*",
        "FAILED*test_swallows_the_refusal*a service another process runs*",
        "FAILED*test_opens_postgresql*PostgreSQL*",
    ], consecutive=False)


def test_without_offline_nothing_is_refused(inner: pytest.Pytester, foreign_listener: int) -> None:
    inner.makepyfile(test_probe=f"""
        import socket, subprocess
        def test_spawns(): subprocess.run(["true"], check=True)
        def test_reaches_another_process():
            socket.create_connection(("127.0.0.1", {foreign_listener}), timeout=5).close()
    """)

    inner.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)

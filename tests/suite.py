"""How the suite runs: markers that follow a test's fixtures, timeouts, the order of the files,
and ``--offline``, a run that reaches no service at all.

The markers (declared in ``pyproject.toml``):

* ``mqtt``: the test talks to an MQTT broker (a private Mosquitto, the embedded amqtt, NATS);
* ``postgres``: it uses the test PostgreSQL;
* ``subprocess``: it starts a child process (a CLI run, a collector, a tool such as openssl);
* ``slow``: it takes more than a few seconds.

A test gets ``mqtt``/``postgres``/``subprocess`` from the fixtures it uses (directly or through
other fixtures): :data:`FIXTURE_MARKS` says which fixture brings which. A test that starts a
service or a process itself, without such a fixture, carries the marker in its module.

Every test has a timeout (pytest-timeout): ``timeout`` in ``pyproject.toml`` for most, and
:data:`SLOW_TIMEOUT_S` for one marked ``slow`` (a fault test on a busy machine); a test that
needs another limit says ``@pytest.mark.timeout(SECONDS)``. Files run slowest first, as far as
their marks tell (the longest timeout asked for, then the most ``slow`` tests, then the most
service tests), so that with ``make test``'s two workers (``--dist loadfile
--no-loadscope-reorder``) no long file starts last and runs alone.

``pytest --offline`` (``make test-fast``) deselects every test marked ``mqtt``, ``postgres`` or
``subprocess`` and then holds the rest to it: a test that starts a child process, starts a private
broker, connects to a TCP port that another process listens on (the system Mosquitto on 1883, the
PostgreSQL on 5432, ...) or opens a PostgreSQL connection fails, naming what it used and the
marker it lacks. Servers a test runs inside the pytest process (an HTTP app in a thread) are
allowed. So an offline run is offline by its markers, never by luck.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

SERVICE_MARKS = ("mqtt", "postgres", "subprocess")
"""What ``--offline`` deselects."""

SLOW_TIMEOUT_S = 300
"""The timeout of a test marked ``slow`` that names none itself."""

FIXTURE_MARKS: dict[str, tuple[str, ...]] = {
    # tests/conftest.py
    "mosquitto_url": ("mqtt", "subprocess"),
    "postgres_url": ("postgres",),
    # tests/secure_broker.py: openssl, mosquitto_passwd and mosquitto
    "secure_broker": ("mqtt", "subprocess"),
    # tests/scale/conftest.py, tests/cluster/conftest.py
    "roomy_broker": ("mqtt", "subprocess"),
    "nats_cluster": ("mqtt", "subprocess"),
    # module fixtures: tests/demo/test_broker.py, tests/shared/test_mqtt.py,
    # tests/collector/test_backpressure.py
    "mosquitto_broker": ("mqtt", "subprocess"),
    "amqtt_broker": ("mqtt",),
    "auth_broker_url": ("mqtt", "subprocess"),
    "unlimited_broker": ("mqtt", "subprocess"),
    # `collector serve` in a subprocess: tests/http/test_serve.py, tests/browser/conftest.py
    "served": ("subprocess",),
    "dashboard": ("subprocess",),
    # headless Chromium: tests/browser/conftest.py
    "chromium": ("subprocess",),
    # mount(8) of a small tmpfs: tests/reliability/test_spool_disk_full.py
    "small_disk": ("subprocess",),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--offline", action="store_true", default=False,
        help="deselect tests marked mqtt, postgres or subprocess, and fail any other test that "
             "starts a process or a broker, or reaches a service another process runs",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test from its fixtures; with ``--offline``, deselect the service tests.

    ``tryfirst``: the marks must be there before ``-m`` selects on them.
    """
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            for mark in FIXTURE_MARKS.get(fixture, ()):
                item.add_marker(mark)
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))
    _slowest_files_first(items)
    if not config.getoption("offline"):
        return
    kept, dropped = [], []
    for item in items:
        (dropped if any(item.get_closest_marker(m) for m in SERVICE_MARKS) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _slowest_files_first(items: list[pytest.Item]) -> None:
    """Reorder whole files (a file's own order stays), slowest first by what their marks say.

    First the files whose tests ask for the longest timeout, then those with the most ``slow``
    tests, then those with the most service tests.
    """
    weight: dict[str, tuple[float, int, int]] = {}
    for item in items:
        timeout_s, slow, services = weight.get(item.location[0], (0.0, 0, 0))
        mark = item.get_closest_marker("timeout")
        asked_s = float(mark.args[0]) if mark is not None and mark.args else 0.0
        weight[item.location[0]] = (
            max(timeout_s, asked_s),
            slow + bool(item.get_closest_marker("slow")),
            services + any(item.get_closest_marker(m) for m in SERVICE_MARKS),
        )
    items.sort(key=lambda item: tuple(-n for n in weight[item.location[0]]))  # stable


# -- the offline guard ---------------------------------------------------------------------------

class ServiceUsedOffline(BaseException):
    """Raised where an offline test used a service; a ``BaseException`` so no handler eats it."""


_violations: list[str] = []
_own_listening_ports: set[int] = set()


def _violation(what: str) -> ServiceUsedOffline:
    _violations.append(what)
    return ServiceUsedOffline(f"--offline: this test {what}")


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` (any address), from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found


def _own_socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _foreign_listener(port: int) -> bool:
    """Whether another process listens on ``port``: connecting would reach its service."""
    if port in _own_listening_ports:
        return False
    listening = _listening_inodes(port)
    return bool(listening) and not listening & _own_socket_inodes()


def _guard_socket(monkey: pytest.MonkeyPatch) -> None:
    real_listen = socket.socket.listen
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def listen(self: socket.socket, *args: Any) -> None:
        real_listen(self, *args)
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _own_listening_ports.add(int(self.getsockname()[1]))

    def check(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and self.type == socket.SOCK_STREAM:
            port = int(address[1])
            if _foreign_listener(port):
                raise _violation(f"connected to {address[0]}:{port}, a service another process "
                                 "runs (mark it mqtt or postgres, or use the fixture that does)")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    monkey.setattr(socket.socket, "listen", listen)
    monkey.setattr(socket.socket, "connect", connect)
    monkey.setattr(socket.socket, "connect_ex", connect_ex)


def _refuse(what: str) -> Callable[..., Any]:
    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise _violation(what)
    return refused


def _guard_processes(monkey: pytest.MonkeyPatch) -> None:
    spawn = "started a child process (mark it subprocess)"
    monkey.setattr(subprocess.Popen, "_execute_child", _refuse(spawn))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, name):
            monkey.setattr(os, name, _refuse(spawn))


def _guard_brokers_and_databases(monkey: pytest.MonkeyPatch) -> None:
    from edgemeter.demo.broker import PrivateBroker

    # where the embedded amqtt broker comes to life (mosquitto is a child process, refused above)
    monkey.setattr(PrivateBroker, "_serve_amqtt", _refuse("started the embedded amqtt broker (mark it mqtt)"))
    try:
        import psycopg
    except ImportError:
        return
    # libpq connects in C, below the socket guard; psycopg.connect is bound at its import
    for owner, name in ((psycopg, "connect"), (psycopg.Connection, "connect"),
                        (psycopg.AsyncConnection, "connect")):
        real = getattr(owner, name)
        guarded = _guard_postgres(real)
        monkey.setattr(owner, name, guarded if owner is psycopg else classmethod(guarded))


def _guard_postgres(real: Callable[..., Any]) -> Callable[..., Any]:
    """``real`` (a psycopg connect), refused where a PostgreSQL server would answer it.

    Connecting where nothing listens (a test of the error a missing server gives) is allowed.
    """
    from psycopg.conninfo import conninfo_to_dict

    def connect(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], type):  # called as a classmethod
            args = args[1:]
        params = conninfo_to_dict(args[0] if args else "", **kwargs)
        host = str(params.get("host") or "/var/run/postgresql").split(",")[0]
        port = int(str(params.get("port") or 5432).split(",")[0])
        if host.startswith("/"):
            answers = Path(host, f".s.PGSQL.{port}").exists()
        else:
            answers = host in ("localhost", "127.0.0.1", "::1") and _foreign_listener(port)
        if answers:
            raise _violation(f"opened a PostgreSQL connection to {host}:{port} (mark it postgres)")
        return real(*args, **kwargs)

    return connect


@pytest.fixture(scope="session", autouse=True)
def _offline_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """With ``--offline``: refuse processes, brokers and other processes' services all session."""
    if not request.config.getoption("offline"):
        yield
        return
    # The standard library asks `uname -p` once per process and caches it (an xdist worker has
    # already asked while starting); asked now, it is a fact about the host, not a test's process.
    platform.processor()
    with pytest.MonkeyPatch.context() as monkey:
        _guard_socket(monkey)
        _guard_processes(monkey)
        _guard_brokers_and_databases(monkey)
        yield


def pytest_runtest_setup(item: pytest.Item) -> None:
    _violations.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fail an offline test that used a service even where its code caught the refusal."""
    report = yield
    if _violations and not report.failed:
        used = "; ".join(dict.fromkeys(_violations))
        report.outcome = "failed"
        report.longrepr = f"--offline: this test {used}"
    _violations.clear()
    return report

"""The daemon runs monitoring jobs beside benchmark jobs and publishes their windows, and takes
applications' windows from its monitor socket."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.daemon.config import AgentSettings
from agent.daemon.monitor_socket import MonitorSocket
from agent.daemon.service import AgentDaemon
from agent.daemon.telemetry import TelemetryProbe
from agent.model_cache import ModelCache
from agent.monitor import InferenceMonitor
from agent.spool import Spool
from shared.messages import JobCommand, ModelRef, MonitorSpec
from tests.agent.test_daemon import (
    DEVICE,
    TOPIC,
    FakeLink,
    StubRunner,
    cached_model,  # noqa: F401 (a fixture)
    manifest,
    send,
    settings,  # noqa: F401 (a fixture)
    states,
)


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``predicate`` while the daemon's own loop thread runs (the monitor job is real)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def make(config: AgentSettings, socket: MonitorSocket | None = None
         ) -> tuple[AgentDaemon, FakeLink]:
    links: list[FakeLink] = []

    def factory(**kw: Any) -> FakeLink:
        links.append(FakeLink(**kw))
        return links[0]

    daemon = AgentDaemon(
        config, spool=Spool(config.spool.path), link_factory=factory, job_runner=StubRunner(),
        model_cache=ModelCache(config.models.cache_dir), manifest=manifest,
        telemetry=TelemetryProbe(), monitor_socket=socket)
    return daemon, links[0]


def test_a_monitor_job_publishes_windows_until_cancelled(
        settings: AgentSettings, cached_model: dict[str, str]) -> None:  # noqa: F811
    daemon, link = make(settings)
    daemon.start()
    try:
        job = JobCommand(kind="monitor", job_id="mon-7", model=ModelRef(**cached_model),
                         monitor=MonitorSpec(rate_qps=20, window_s=1, name="canary"))
        send(link, job)
        assert wait_for(lambda: "running" in states(link, "mon-7"), 30)
        assert wait_for(lambda: daemon.spool.depth() >= 1 or bool(link.messages("monitor")), 30)
        daemon.tick()
        assert wait_for(lambda: bool(link.messages("monitor")), 10)
        window = link.messages("monitor")[0]
        assert (window["name"], window["job_id"], window["device_id"]) == ("canary", "mon-7",
                                                                            DEVICE)
        send(link, JobCommand(kind="cancel", job_id="mon-7"))
        assert wait_for(lambda: states(link, "mon-7")[-1:] == ["cancelled"], 10)
    finally:
        daemon.stop()


def test_an_applications_windows_reach_the_broker_through_the_daemon(
        settings: AgentSettings, tmp_path: Path) -> None:  # noqa: F811
    socket = MonitorSocket(tmp_path / "monitor.sock")
    daemon, link = make(settings, socket)
    daemon.start()
    try:
        monitor = InferenceMonitor("app", window_s=3600, socket=socket.path)
        for _ in range(500):
            monitor.record(0.003)
        monitor.close()

        def published() -> int:
            daemon.tick()
            return sum(w["queries"] for w in link.messages("monitor"))

        assert wait_for(lambda: published() == 500, 10)
        assert link.messages("monitor")[0]["device_id"] == DEVICE
        assert f"{TOPIC}/monitor" in {t for t, _, _ in link.published}
    finally:
        daemon.stop()

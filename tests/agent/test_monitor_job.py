"""Monitoring jobs: a model run at a target rate into monitor windows until cancelled or over."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agent.monitor import LocalWindow
from agent.monitor_job import MonitorJobs, MonitorTable, run_monitor
from agent.spool import Spool
from shared.messages import JobCommand, ModelRef, MonitorSpec
from shared.monitoring import MonitorWindow


class Windows:
    def __init__(self) -> None:
        self.got: list[LocalWindow] = []

    def send(self, window: LocalWindow) -> bool:
        self.got.append(window)
        return True

    def close(self) -> None:
        pass


def test_a_monitor_runs_at_its_rate_until_its_duration_is_over() -> None:
    calls = []
    windows = Windows()
    outcome = run_monitor(lambda: calls.append(1), MonitorSpec(rate_qps=200, duration_s=0.5),
                          name="canary", sender=windows, cancel=threading.Event())
    assert outcome.state == "done"
    measured = len(calls) - 3  # the warm-up calls are not counted
    assert outcome.queries == measured == sum(w.queries for w in windows.got)
    assert 50 <= measured <= 101  # 200 qps for 0.5 s, paced (not as fast as possible)


def test_a_cancel_ends_a_monitor_at_once_with_its_last_window() -> None:
    cancel = threading.Event()
    windows = Windows()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    outcome = run_monitor(lambda: None, MonitorSpec(rate_qps=20), name="canary", sender=windows,
                          cancel=cancel)
    assert outcome.state == "cancelled" and time.monotonic() - started < 2
    assert sum(w.queries for w in windows.got) == outcome.queries > 0


def test_an_inference_that_raises_fails_the_job_with_the_reason() -> None:
    count = [0]

    def flaky() -> None:
        count[0] += 1
        if count[0] > 10:
            raise RuntimeError("delegate lost")

    outcome = run_monitor(flaky, MonitorSpec(rate_qps=1000), name="x", sender=Windows(),
                          cancel=threading.Event())
    assert outcome.state == "failed" and "delegate lost" in (outcome.reason or "")


@pytest.mark.slow  # a real model or a live server for seconds: make test, not test-fast
def test_monitor_jobs_spool_windows_with_the_job_id_and_ack_each_state(
        tmp_path: Path, shared_models: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    acks: list[tuple[str, str]] = []
    model = shared_models / "ic_resnet8_int8.tflite"
    jobs = MonitorJobs(device_id="pi-01", fleet="lab", spool=spool, fetch=lambda ref: model,
                       ack=lambda job_id, state, reason: acks.append((job_id, state)))
    job = JobCommand(kind="monitor", job_id="mon-1",
                     model=ModelRef(sha256="0" * 64, name=model.name),
                     monitor=MonitorSpec(rate_qps=50, window_s=1, duration_s=2.5))
    jobs.start(job)
    deadline = time.monotonic() + 30
    while jobs.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert acks == [("mon-1", "accepted"), ("mon-1", "running"), ("mon-1", "done")]
    windows = [MonitorWindow.model_validate_json(e.payload) for e in spool.pending()]
    assert len(windows) >= 2
    assert {(w.name, w.job_id) for w in windows} == {("ic_resnet8_int8", "mon-1")}
    assert sum(w.queries for w in windows) > 50


def test_a_cancel_reaches_only_monitoring_jobs(tmp_path: Path) -> None:
    acks: list[tuple[str, str]] = []
    jobs = MonitorJobs(device_id="pi-01", fleet="lab", spool=Spool(tmp_path / "s.db"),
                       fetch=lambda ref: Path("unused"),
                       ack=lambda job_id, state, reason: acks.append((job_id, state)),
                       load=lambda path, backend, threads: (lambda: None))
    job_id = jobs.start_table(MonitorTable(model=Path("m.tflite"), rate_qps=10))
    assert job_id == "config-m" and jobs.cancel(job_id)
    assert not jobs.cancel("some-benchmark")
    jobs.stop_all()
    assert acks[-1] == ("config-m", "cancelled")


def test_a_monitor_job_needs_its_settings_and_a_model() -> None:
    with pytest.raises(ValueError, match="monitor settings"):
        JobCommand(kind="monitor", model=ModelRef(sha256="0" * 64, name="m.tflite"))
    with pytest.raises(ValueError, match="needs a model"):
        JobCommand(kind="monitor", monitor=MonitorSpec(rate_qps=1))


def test_monitor_tables_in_the_daemon_config_parse(tmp_path: Path) -> None:
    from agent.daemon.config import load_agent_settings, sample_config

    config = tmp_path / "agent.toml"
    config.write_text('device_id = "pi-01"\n[[monitor]]\nmodel = "/opt/m.tflite"\nrate_qps = 5\n'
                      'window_s = 10\nname = "canary"\n')
    settings = load_agent_settings(config)
    assert [(m.model, m.rate_qps, m.name) for m in settings.monitor] == [
        (Path("/opt/m.tflite"), 5.0, "canary")]
    assert "[[monitor]]" in sample_config()

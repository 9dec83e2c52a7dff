"""A job's settings: laid over the daemon's [bench] table, validated once in the daemon, and handed
to the child as model_dump_json(), which the child validates once (no environment, no file)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.config import BenchSettings
from agent.daemon import child
from agent.daemon.config import AgentSettings
from agent.daemon.jobs import job_settings
from shared.errors import ConfigError
from shared.messages import JobCommand

MODEL = {"sha256": "a" * 64, "name": "m.tflite"}


def daemon(**bench: Any) -> AgentSettings:
    return AgentSettings(device_id="pi-1", fleet="lab", bench=bench)


def job(**settings: Any) -> JobCommand:
    wire = JobCommand(model=MODEL, settings=settings).model_dump_json()
    return JobCommand.model_validate_json(wire)  # as the daemon receives it


def test_a_job_sets_what_it_gives_and_the_bench_table_fills_the_rest() -> None:
    agent = daemon(power={"source": "none", "idle_s": 0.5, "hz": 5}, threads=1, fidelity=4,
                   delegate="edgetpu")
    settings = job_settings(job(iterations=50, threads=2, power="rapl"), agent.job_base())
    assert (settings.iterations, settings.threads, settings.fidelity) == (50, 2, 4)
    assert (settings.power.source, settings.power.idle_s, settings.power.hz) == ("rapl", 0.5, 5.0)
    assert settings.backend_settings("litert").delegate == "edgetpu"
    assert (settings.device_id, settings.fleet) == ("pi-1", "lab")


def test_identity_is_always_the_daemons() -> None:
    with pytest.raises(ValueError, match="device_id"):
        JobCommand(model=MODEL, settings={"device_id": "someone-else"})
    settings = job_settings(job(), daemon(device_id="other").job_base())
    assert settings.device_id == "pi-1"


def test_a_job_the_cli_would_refuse_is_refused_with_the_clis_reason() -> None:
    with pytest.raises(ConfigError, match=r"^the server scenario needs --target-qps"):
        job_settings(job(scenario="server"), daemon().job_base())
    assert job_settings(job(scenario="server"), daemon(target_qps=5).job_base()).target_qps == 5


def run_child(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: BenchSettings
              ) -> tuple[int, list[BenchSettings], str]:
    """child.main() in this process, with a Runner that records the settings it was given."""
    seen: list[BenchSettings] = []

    class Runner:
        def __init__(self, settings: BenchSettings, model: Path, **_: Any) -> None:
            seen.append(settings)

        def run(self, seq: int) -> Any:
            raise ConfigError("recorded")

    monkeypatch.setattr("agent.runner.Runner", Runner)
    request = {"model": str(tmp_path / "m.tflite"), "settings": settings.model_dump_json(),
               "seq": 3, "result_path": str(tmp_path / "result.json")}
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    return child.run_request(json.loads(json.dumps(request))), seen, err.getvalue()


def test_the_child_validates_the_json_it_is_given_once_and_reads_nothing_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    agent = daemon(power={"source": "none", "tasmota": {"topic": "plug"}}, threads=1)
    settings = job_settings(job(iterations=50, batch=2, scenario="offline"), agent.job_base())
    bad = tmp_path / "bad.toml"
    bad.write_text("not toml [")
    monkeypatch.setenv("EDGEMETER_THREADS", "7")  # the daemon's environment is not the job's
    monkeypatch.setenv("EDGEMETER_CONFIG", str(bad))
    calls: list[str] = []
    original = BenchSettings.model_validate_json.__func__  # type: ignore[attr-defined]

    def counted(cls: type[BenchSettings], data: Any, **kw: Any) -> BenchSettings:
        calls.append("validate")
        return original(cls, data, **kw)  # type: ignore[no-any-return]

    monkeypatch.setattr(BenchSettings, "model_validate_json", classmethod(counted))
    code, seen, err = run_child(monkeypatch, tmp_path, settings)
    assert (code, err.strip()) == (2, "recorded")
    assert calls == ["validate"]
    assert seen == [settings]  # the very settings the daemon validated, the power table included
    assert seen[0].threads == 1 and seen[0].power.table("tasmota").topic == "plug"  # type: ignore[attr-defined]


def test_the_child_refuses_settings_that_do_not_validate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = BenchSettings.model_construct(threads=0)  # skipped validation: must not slip by
    code, seen, err = run_child(monkeypatch, tmp_path, settings)
    assert code == 2 and seen == [] and "threads" in err

"""Hostile and impossible wire messages are refused by the schema, and only with a ValidationError.

Property tests draw from :mod:`tests.strategies` (derandomized, 200 examples each); the
hand-written cases pin that each impossible measurement is refused with a reason naming its field;
the held-out corpus in ``hostile_corpus/`` is checked file by file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from pydantic import ValidationError

from shared.messages import JobAck, JobCommand, Progress, Receipt, Status, Telemetry
from shared.schema import (
    MAX_CLOCK_SKEW,
    MAX_MESSAGE_BYTES,
    BenchmarkResult,
    EnergyReport,
    PowerScope,
    Stability,
    StabilityWindow,
    Strict,
    SystemState,
)
from tests.factories import make_result
from tests.strategies import SETTINGS, VALID, hostile_payloads, with_changes

CORPUS = Path(__file__).parent / "hostile_corpus"
KIND_MODELS: dict[str, type[Strict]] = {
    "result": BenchmarkResult, "status": Status, "telemetry": Telemetry, "progress": Progress,
    "cmd": JobCommand, "ack": JobAck, "receipt": Receipt,
}
MODELS = list(VALID)


def _reason(err: ValidationError) -> str:
    """Each error as ``loc: message``, the way a dead letter shows it."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                     for e in err.errors(include_url=False))


# properties -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_valid_messages_validate_and_round_trip_through_json_unchanged(model: type[Strict]) -> None:
    @SETTINGS
    @given(VALID[model])
    def check(message: Strict) -> None:
        payload = message.model_dump_json()
        again = model.model_validate_json(payload)
        assert again == message
        assert again.model_dump_json() == payload

    check()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_hostile_payloads_are_refused_with_a_validation_error_only(model: type[Strict]) -> None:
    @SETTINGS
    @given(hostile_payloads(VALID[model]))
    def check(case: tuple[str, bytes]) -> None:
        what, payload = case
        with pytest.raises(ValidationError):
            accepted = model.model_validate_json(payload)
            pytest.fail(f"{what}: accepted as {accepted!r:.200}")

    check()


def test_a_payload_over_the_wire_limit_is_refused_before_it_is_parsed() -> None:
    payload = make_result().model_dump_json().encode()
    padded = payload + b" " * (MAX_MESSAGE_BYTES - len(payload))
    assert BenchmarkResult.model_validate_json(padded) is not None
    with pytest.raises(ValidationError, match="over the 1048576-byte limit") as err:
        BenchmarkResult.model_validate_json(padded + b" ")
    assert err.value.errors()[0]["type"] == "too_large"


# impossible measurements ----------------------------------------------------------------------

Change = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Change:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        *parents, last = (int(k) if k.isdigit() else k for k in path.split("."))
        for key in parents:
            target = target[key]
        target[last] = value
    return change


def _future() -> str:
    return (datetime.now(timezone.utc) + MAX_CLOCK_SKEW + timedelta(minutes=5)).isoformat()


def _full_result(**overrides: Any) -> BenchmarkResult:
    return make_result(
        **overrides,
        gmacs_per_s=3.7,
        stability=Stability(warmup_iterations=10, warmup_settled=True,
                            windows=[StabilityWindow(start_s=0, queries=40, throughput_sps=500,
                                                     p50_ms=2.0)], throughput_cv=0.01),
        energy=EnergyReport(source="rapl", scope=PowerScope.CPU_PACKAGE, estimated=False,
                            avg_power_w=4.0, peak_power_w=5.0, idle_power_w=2.0, energy_j=1.6,
                            joules_per_inference=0.008, window_s=0.4, sample_hz=20, samples=8),
        system=SystemState(samples=4, cpu_util_pct=50.0, temps_c_max={"cpu": 55.0}),
    )


# (what, change, text the reason must contain)
RESULT_CASES: list[tuple[str, Change, str]] = [
    ("negative-p50", _set("latency_ms.p50", -1.0), "latency_ms.p50"),
    ("negative-init", _set("init_ms", -0.5), "init_ms"),
    ("negative-first-inference", _set("first_inference_ms", -3.0), "first_inference_ms"),
    ("negative-throughput", _set("throughput_sps", -1.0), "throughput_sps"),
    ("negative-gmacs", _set("gmacs_per_s", -1.0), "gmacs_per_s"),
    ("p90-below-p50", _set("latency_ms.p90", 0.5), "p90"),
    ("p99-below-p95", _set("latency_ms.p99", 0.1), "p99"),
    ("min-above-p50", _set("latency_ms.min", 50.0), "min"),
    ("max-below-p99", _set("latency_ms.max", 0.001), "max"),
    ("mean-above-max", _set("latency_ms.mean", 1e6), "mean"),
    ("count-zero", _set("latency_ms.count", 0), "latency_ms.count"),
    ("negative-std", _set("latency_ms.std", -1.0), "latency_ms.std"),
    ("histogram-negative-count", _set("latencies.runs.0.1", -1), "latencies.log-hist-v2.runs.0.1"),
    ("histogram-sums-to-other-count", _set("latency_ms.count", 7), "latency_ms.count"),
    ("histogram-runs-overlap", lambda d: d["latencies"]["runs"].append(d["latencies"]["runs"][0]),
     "ascending and disjoint"),
    ("histogram-run-without-count", lambda d: d["latencies"]["runs"].append([5000]),
     "at least one count"),
    ("histogram-beyond-a-day", lambda d: d["latencies"]["runs"].append([99_999, 0]),
     "over 86400 s"),
    ("histogram-zero-error", _set("latencies.rel_error", 0.0), "latencies.log-hist-v2.rel_error"),
    ("histogram-min-outside-it", _set("latency_ms.min", 1.0), "latency_ms.min"),
    ("histogram-max-outside-it", _set("latency_ms.max", 20.0), "latency_ms.max"),
    ("histogram-unknown-encoding", _set("latencies.encoding", "log-hist-v9"), "latencies"),
    ("negative-energy", _set("energy.energy_j", -1.0), "energy.energy_j"),
    ("negative-power", _set("energy.avg_power_w", -0.1), "energy.avg_power_w"),
    ("negative-idle-power", _set("energy.idle_power_w", -2.0), "energy.idle_power_w"),
    ("negative-window-throughput", _set("stability.windows.0.throughput_sps", -1.0),
     "stability.windows.0.throughput_sps"),
    ("negative-cv", _set("stability.throughput_cv", -0.1), "stability.throughput_cv"),
    ("cpu-over-100", _set("system.cpu_util_pct", 140.0), "system.cpu_util_pct"),
    ("below-absolute-zero", _set("system.temps_c_max", {"cpu": -300.0}), "system.temps_c_max.cpu"),
    ("created-in-the-future", lambda d: d.update(created_at=_future()), "created_at"),
    ("created-before-2020", _set("created_at", "1970-01-01T00:00:00Z"), "created_at"),
    ("seq-beyond-int64", _set("seq", 2**64), "seq"),
    ("size-beyond-int64", _set("model.size_bytes", 2**63), "model.size_bytes"),
    ("string-for-number", _set("latency_ms.p50", "2.0"), "latency_ms.p50"),
    ("bool-for-number", _set("latency_ms.count", True), "latency_ms.count"),
]


@pytest.mark.parametrize(("change", "names"), [c[1:] for c in RESULT_CASES],
                         ids=[c[0] for c in RESULT_CASES])
def test_impossible_results_are_refused_with_a_reason_naming_the_field(change: Change, names: str) -> None:
    payload = with_changes(_full_result(), change)
    with pytest.raises(ValidationError) as err:
        BenchmarkResult.model_validate_json(payload)
    assert names in _reason(err.value)


# the same, for a version-1 result (its histogram is log-hist-v1)
V1_RESULT_CASES: list[tuple[str, Change, str]] = [
    ("histogram-negative-count", _set("latencies.counts.0", -1), "latencies.log-hist-v1.counts.0"),
    ("histogram-sums-to-other-count", _set("latency_ms.count", 7), "latency_ms.count"),
    ("histogram-unsorted", lambda d: d["latencies"]["buckets"].reverse(), "ascending"),
    ("v2-histogram-in-v1", lambda d: d.update(latencies={"encoding": "log-hist-v2",
                                                         "runs": [[700, 200]]}),
     "log-hist-v2 needs schema_version 2"),
    ("v2-fidelity-in-v1", _set("fidelity", {"encoding": "digest-v2", "seed": 0,
                                            "input_source": "seeded", "n_inputs": 0, "k": 5,
                                            "outputs": {}}),
     "digest-v2 needs schema_version 2"),
]


@pytest.mark.parametrize(("change", "names"), [c[1:] for c in V1_RESULT_CASES],
                         ids=[c[0] for c in V1_RESULT_CASES])
def test_impossible_v1_results_are_refused_with_a_reason_naming_the_field(change: Change,
                                                                          names: str) -> None:
    payload = with_changes(_full_result(schema_version=1), change)
    with pytest.raises(ValidationError) as err:
        BenchmarkResult.model_validate_json(payload)
    assert names in _reason(err.value)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["latency_ms.p50", "init_ms", "throughput_sps", "energy.energy_j",
                                   "energy.peak_power_w", "stability.windows.0.p50_ms",
                                   "system.cpu_freq_mhz_mean"])
def test_non_finite_numbers_are_refused_wherever_they_stand(field: str, value: str) -> None:
    doc = json.loads(_full_result().model_dump_json())
    _set(field, "__hole__")(doc)
    payload = json.dumps(doc).replace('"__hole__"', value)
    with pytest.raises(ValidationError) as err:
        BenchmarkResult.model_validate_json(payload)
    assert field in _reason(err.value)


def test_the_percentile_reason_says_which_pair_is_out_of_order_and_the_rule() -> None:
    payload = with_changes(_full_result(), _set("latency_ms.p95", 0.01))
    with pytest.raises(ValidationError) as err:
        BenchmarkResult.model_validate_json(payload)
    assert "p90" in str(err.value) and "p95" in str(err.value) and "p50 <= p90" in str(err.value)


def test_the_clock_can_be_injected_so_skew_is_judged_against_the_readers_time() -> None:
    result = make_result(created_at=datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc))
    payload = result.model_dump_json()
    reader = datetime(2025, 6, 1, 11, 55, tzinfo=timezone.utc)  # 5 min behind: within the skew
    assert BenchmarkResult.model_validate_json(payload, context={"now": reader}) == result
    with pytest.raises(ValidationError, match="ahead of this clock"):
        BenchmarkResult.model_validate_json(payload, context={"now": reader - MAX_CLOCK_SKEW})


def test_a_replayed_old_result_is_still_accepted() -> None:
    old = make_result(created_at=datetime(2020, 1, 1, tzinfo=timezone.utc), replayed=True)
    assert BenchmarkResult.model_validate_json(old.model_dump_json()) == old


def test_dynamic_energy_may_be_slightly_negative_within_noise() -> None:
    payload = with_changes(_full_result(), _set("energy.dynamic_joules_per_inference", -1e-4))
    assert BenchmarkResult.model_validate_json(payload).energy is not None


MESSAGE_CASES: list[tuple[str, Strict, Change, str]] = [
    ("telemetry-negative-uptime", Telemetry(device_id="pi-1", fleet="lab", uptime_s=5),
     _set("uptime_s", -1.0), "uptime_s"),
    ("telemetry-negative-power", Telemetry(device_id="pi-1", fleet="lab", uptime_s=5, power_w=3.0),
     _set("power_w", -3.0), "power_w"),
    ("telemetry-cpu-over-100", Telemetry(device_id="pi-1", fleet="lab", uptime_s=5),
     _set("cpu_util_pct", 101.0), "cpu_util_pct"),
    ("telemetry-used-over-total", Telemetry(device_id="pi-1", fleet="lab", uptime_s=5,
                                            memory_used_bytes=1, memory_total_bytes=2),
     _set("memory_used_bytes", 3), "memory_used_bytes"),
    ("telemetry-future", Telemetry(device_id="pi-1", fleet="lab", uptime_s=5),
     lambda d: d.update(sent_at=_future()), "sent_at"),
    ("telemetry-spool-beyond-int64", Telemetry(device_id="pi-1", fleet="lab", uptime_s=5),
     _set("spool_depth", 2**63), "spool_depth"),
    ("status-negative-bd-seq", Status(device_id="pi-1", fleet="lab", status="online", bd_seq=1),
     _set("bd_seq", -1), "bd_seq"),
    ("status-before-2020", Status(device_id="pi-1", fleet="lab", status="online", bd_seq=1),
     _set("sent_at", "1999-12-31T23:59:59Z"), "sent_at"),
    ("status-version-true", Status(device_id="pi-1", fleet="lab", status="online", bd_seq=1),
     _set("schema_version", True), "schema_version"),
    ("progress-negative-p50", Progress(device_id="pi-1", fleet="lab", job_id="j1", phase="measure"),
     _set("running_p50_ms", -2.0), "running_p50_ms"),
    ("progress-string-iterations", Progress(device_id="pi-1", fleet="lab", job_id="j1",
                                            phase="measure"),
     _set("iterations_done", "12"), "iterations_done"),
    ("cmd-future", JobCommand(kind="cancel", job_id="j1"),
     lambda d: d.update(created_at=_future()), "created_at"),
    ("cmd-negative-duration", JobCommand(kind="cancel", job_id="j1"),
     _set("settings.duration_s", -1.0), "settings.duration_s"),
    ("ack-before-2020", JobAck(device_id="pi-1", fleet="lab", job_id="j1", state="done"),
     _set("sent_at", "2019-06-01T00:00:00+00:00"), "sent_at"),
    ("receipt-future", Receipt(run_ids=[make_result().run_id]),
     lambda d: d.update(stored_at=_future()), "stored_at"),
]


@pytest.mark.parametrize(("message", "change", "names"), [c[1:] for c in MESSAGE_CASES],
                         ids=[c[0] for c in MESSAGE_CASES])
def test_impossible_fleet_messages_are_refused_with_a_reason_naming_the_field(
    message: Strict, change: Change, names: str
) -> None:
    model = type(message)
    assert model.model_validate_json(message.model_dump_json()) == message
    with pytest.raises(ValidationError) as err:
        model.model_validate_json(with_changes(message, change))
    assert names in _reason(err.value)


# held-out corpus ------------------------------------------------------------------------------


def _corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.name != "README.md")


@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: p.name)
def test_every_corpus_payload_is_refused_by_the_model_of_its_kind(path: Path) -> None:
    model = KIND_MODELS[path.name.split("-", 1)[0]]
    with pytest.raises(ValidationError):
        model.model_validate_json(path.read_bytes())


def test_the_corpus_readme_names_every_payload_and_nothing_else() -> None:
    readme = (CORPUS / "README.md").read_text()
    listed = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `")}
    assert listed == {p.name for p in _corpus_files()}

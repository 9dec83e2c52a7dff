"""`edgemeter bench` on the team's real models, through the real runtimes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from edgemeter.cli import main
from shared.schema import BenchmarkResult, json_schema

FAST = ["--power", "none", "--fidelity", "0", "--warmup", "5"]


def bench_json(model: Path, tmp_path: Path, *extra: str) -> BenchmarkResult:
    out = tmp_path / "out.json"
    assert main(["bench", str(model), "--json", str(out), "-q", *extra]) == 0
    return BenchmarkResult.model_validate_json(out.read_text())


@pytest.mark.parametrize("name", ["vww_96_int8.tflite", "vww_96_int8_qdq.onnx"])
def test_bench_writes_a_result_that_validates_against_the_schema(
    shared_models: Path, tmp_path: Path, name: str
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    model = shared_models / name
    result = bench_json(model, tmp_path, "--iterations", "300", *FAST)
    jsonschema.validate(json.loads((tmp_path / "out.json").read_text()), json_schema())
    assert result.model.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert result.latency_ms.count == 300
    assert result.spec.effective.iterations == 300
    assert result.throughput_sps > 0
    assert result.model.network == "vww_96"


def test_single_stream_reports_an_early_stopping_p90_not_below_p90(
    shared_models: Path, tmp_path: Path
) -> None:
    result = bench_json(shared_models / "kws_dscnn_int8.tflite", tmp_path, "--iterations", "200", *FAST)
    assert result.latency_ms.p90_early_stop is not None
    assert result.latency_ms.p90_early_stop >= result.latency_ms.p90


def test_a_run_too_short_for_early_stopping_is_invalid_and_says_why(
    shared_models: Path, tmp_path: Path
) -> None:
    result = bench_json(shared_models / "kws_dscnn_int8.tflite", tmp_path, "--iterations", "20", *FAST)
    assert not result.validity.valid
    assert any("too few queries" in r for r in result.validity.reasons)


def test_bench_carries_macs_and_achieved_macs_per_second(shared_models: Path, tmp_path: Path) -> None:
    result = bench_json(shared_models / "ic_resnet8_int8.tflite", tmp_path, "--iterations", "100", *FAST)
    assert result.model.macs is not None and result.gmacs_per_s is not None
    assert result.gmacs_per_s == pytest.approx(result.model.macs * result.throughput_sps / 1e9)


def test_batch_runs_where_the_model_has_a_dynamic_batch(shared_models: Path, tmp_path: Path) -> None:
    result = bench_json(shared_models / "vww_96_int8.tflite", tmp_path, "--iterations", "50",
                        "--batch", "4", *FAST)
    assert result.spec.effective.batch == 4
    assert result.model.inputs[0].shape[0] == 4


def test_offline_streams_run_parallel_sessions(shared_models: Path, tmp_path: Path) -> None:
    result = bench_json(shared_models / "ad_autoencoder_int8_qdq.onnx", tmp_path, "--scenario", "offline",
                        "--streams", "2", "--threads", "1", "--duration-s", "0.5", *FAST)
    assert result.spec.effective.streams == 2
    assert result.spec.effective.scenario.value == "offline"


def test_server_scenario_is_invalid_when_p99_exceeds_the_bound(shared_models: Path, tmp_path: Path) -> None:
    result = bench_json(shared_models / "kws_dscnn_int8.tflite", tmp_path, "--scenario", "server",
                        "--target-qps", "200", "--latency-bound-ms", "0.0001", "--iterations", "100", *FAST)
    assert not result.validity.valid
    assert any("latency bound" in r for r in result.validity.reasons)


def test_multi_stream_reports_p99_early_stop_field(shared_models: Path, tmp_path: Path) -> None:
    result = bench_json(shared_models / "kws_dscnn_int8.tflite", tmp_path, "--scenario", "multi-stream",
                        "--samples-per-query", "4", "--iterations", "30", *FAST)
    assert result.spec.effective.samples_per_query == 4
    assert result.throughput_sps > 0
    # 30 queries are below the 662 that a p99 early-stopping estimate needs
    assert result.latency_ms.p99_early_stop is None


def test_corrupt_model_gives_one_line_error_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 4 + b"TFL3" + b"garbage" * 50)
    assert main(["bench", str(bad), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgemeter: error:")
    onnx = tmp_path / "bad.onnx"
    onnx.write_bytes(b"not a protobuf at all" * 10)
    assert main(["bench", str(onnx), *FAST]) == 2


def test_missing_and_unsupported_models_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path / "nope.onnx"), *FAST]) == 2
    other = tmp_path / "model.pt"
    other.write_bytes(b"PK" + b"\x00" * 100)
    assert main(["bench", str(other), *FAST]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_edge_tpu_model_fails_clearly_on_a_cpu(shared_models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = shared_models / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
    assert main(["bench", str(model), *FAST]) == 2
    assert "Edge TPU" in capsys.readouterr().err
    assert main(["bench", str(model), "--delegate", "edgetpu", *FAST]) == 2
    err = capsys.readouterr().err
    assert "libedgetpu.so.1" in err and "Traceback" not in err


def test_vww_int8_and_float_agree_on_the_sample_photos(shared_models: Path, shared_samples: Path,
                                                      tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    photos = shared_samples / "images"
    runs = [
        bench_json(shared_models / name, tmp_path, "--iterations", "10", "--power", "none",
                   "--inputs", str(photos), "--fidelity", "32")
        for name in ("vww_96_int8.tflite", "vww_96_float.onnx")
    ]
    tops = [[fp.top_k[0] for fp in r.fidelity.fingerprints()["0"]] for r in runs if r.fidelity]
    assert len(tops) == 2 and len(tops[0]) == 11
    agreement = sum(a == b for a, b in zip(*tops, strict=True)) / len(tops[0])
    assert agreement >= 0.9


@pytest.mark.subprocess
def test_quiet_silences_the_native_xnnpack_line(shared_models: Path, tmp_path: Path) -> None:
    # LiteRT prints it from C++ once per process, so each variant runs in a process of its own
    import subprocess
    import sys

    def stderr_of(*flags: str) -> str:
        argv = [sys.executable, "-m", "edgemeter.cli", "bench", *flags,
                str(shared_models / "kws_dscnn_int8.tflite"), "--iterations", "10", *FAST]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "XNNPACK" in stderr_of()
    assert "XNNPACK" not in stderr_of("-q")


def test_a_quick_run_never_claims_mlperf_validity(shared_models: Path, tmp_path: Path) -> None:
    result = bench_json(shared_models / "kws_dscnn_int8.tflite", tmp_path, "--profile", "quick",
                        *FAST)
    assert result.validity.mlperf_valid is False
    assert result.spec.effective.duration_s is not None and result.spec.effective.duration_s >= 1.0

"""[Compare] acceptance on real parts: two real models benchmarked, published through Mosquitto,
stored by the collector in PostgreSQL, then compared edge vs datacenter."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from collector.config import MqttSettings
from collector.service import CollectorService
from collector.stores.base import open_store
from edgemeter.cli import main
from shared.schema import BenchmarkResult


def bench(model: Path, out: Path, *flags: str) -> BenchmarkResult:
    code = main(["bench", str(model), "--iterations", "200", "--warmup", "10", "--idle-s", "0.3",
                 "--fidelity", "8", "--json", str(out), "-q", *flags])
    assert code == 0
    return BenchmarkResult.model_validate_json(out.read_text())


@pytest.mark.postgres
def test_edge_int8_tflite_vs_datacenter_float_onnx_on_postgresql(
    mosquitto_url: str, postgres_url: str, shared_models: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EDGEMETER_SPOOL", str(tmp_path / "state" / "spool.db"))
    store = open_store(postgres_url)
    service = CollectorService(store, MqttSettings(url=mosquitto_url, client_id="compare-e2e"))
    service.start()
    try:
        edge = bench(shared_models / "vww_96_int8.tflite", tmp_path / "edge.json", "--device-id", "pi5-lab",
                     "--role", "edge", "--hardware", "raspberry-pi-5", "--publish", mosquitto_url)
        dc = bench(shared_models / "vww_96_float.onnx", tmp_path / "dc.json", "--device-id", "xeon-rack",
                   "--role", "datacenter", "--hardware", "xeon-8380-2s", "--publish", mosquitto_url)
        assert service.wait_idle(timeout_s=10)
    finally:
        service.stop()
    stored = {str(r.run_id): r for r in store.list_results()}
    store.close()
    edge_s, dc_s = stored[str(edge.run_id)], stored[str(dc.run_id)]

    capsys.readouterr()
    html = tmp_path / "report.html"
    assert main(["compare", "--db", postgres_url, "--model", "vww_96", "--json", "--html", str(html)]) == 0
    rows = json.loads(capsys.readouterr().out)
    row = next(r for r in rows if r["edge_run_id"] == str(edge.run_id)
               and r["baseline"]["kind"] == "measured" and r["baseline"]["run_id"] == str(dc.run_id))
    assert row["match"] == "network"
    assert row["ratios"]["latency_p50"] == pytest.approx(edge_s.latency_ms.p50 / dc_s.latency_ms.p50)
    assert row["ratios"]["throughput"] == pytest.approx(edge_s.throughput_sps / dc_s.throughput_sps)
    assert edge_s.energy and dc_s.energy
    assert row["ratios"]["joules_per_inference"] == pytest.approx(
        edge_s.energy.joules_per_inference / dc_s.energy.joules_per_inference)
    assert row["cost_per_million_usd"]["edge"] > 0
    assert row["cost_per_million_usd"]["baseline"] > 0
    assert row["fidelity"]["top1_agreement"] is not None

    images = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html.read_text())
    assert len(images) == 4
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)

"""End to end on real parts: edgemeter bench -> Mosquitto -> collector -> SQLite -> results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.config import MqttSettings
from collector.service import CollectorService
from collector.stores.base import Store, open_store
from edgemeter.cli import main
from shared.schema import BenchmarkResult

MODELS = ["vww_96_int8.tflite", "vww_96_int8_qdq.onnx", "kws_dscnn_int8.tflite"]


@pytest.fixture()
def collector(mosquitto_url: str, tmp_path: Path) -> Iterator[tuple[CollectorService, Store, str]]:
    db = f"sqlite:///{tmp_path / 'results.db'}"
    store = open_store(db)
    service = CollectorService(store, MqttSettings(url=mosquitto_url, client_id=f"e2e-{tmp_path.name}"))
    service.start()
    yield service, store, db
    service.stop()
    store.close()


def test_real_models_benchmarked_and_published_arrive_in_the_store_unchanged(
    collector: tuple[CollectorService, Store, str], mosquitto_url: str, shared_models: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    service, store, db = collector
    monkeypatch.setenv("EDGEMETER_SPOOL", str(tmp_path / "state" / "spool.db"))
    sent = []
    for i, name in enumerate(MODELS):
        out = tmp_path / f"{i}.json"
        code = main(["bench", str(shared_models / name), "--iterations", "100", "--warmup", "5",
                     "--idle-s", "0.2", "--fidelity", "4", "--device-id", "e2e-board", "--fleet", "ci",
                     "--publish", mosquitto_url, "--json", str(out), "-q"])
        assert code == 0
        sent.append(BenchmarkResult.model_validate_json(out.read_text()))
    assert service.wait_idle(timeout_s=10)
    stored = {str(r.run_id): r for r in store.list_results()}
    for result in sent:
        assert stored[str(result.run_id)] == result
    assert [r.seq for r in sent] == [1, 2, 3]
    assert store.list_dead_letters() == []

    capsys.readouterr()
    assert main(["results", "--db", db, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["run_id"] for r in listed} == {str(r.run_id) for r in sent}
    assert {r["model"]["name"] for r in listed} == set(MODELS)

"""`edgemeter results import`: result files stored with MQTT ingest's validation, dead letters and
exactly-once rule (a run_id already stored is skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.importer import import_paths
from collector.stores.base import open_store
from edgemeter.cli import main
from tests.factories import make_result


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_importing_a_folder_twice_stores_each_result_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [make_result(device_id="lumi-node-1", fleet="hpc", role="hpc", seq=i) for i in range(3)]
    write(tmp_path / "out/a.json", runs[0].model_dump_json())
    write(tmp_path / "out/sub/b.json", runs[1].model_dump_json())
    write(tmp_path / "sweep.json", json.dumps([runs[2].model_dump(mode="json")]))
    db = f"sqlite:///{tmp_path}/results.db"
    assert main(["results", "import", str(tmp_path / "out"), str(tmp_path / "sweep.json"), "--db", db]) == 0
    assert "imported 3 new result(s) of 3 read (0 already stored" in capsys.readouterr().err
    assert main(["results", "import", str(tmp_path / "out"), "--db", db]) == 0
    assert "imported 0 new result(s) of 2 read (2 already stored" in capsys.readouterr().err
    store = open_store(db)
    try:
        stored = store.list_results()
        assert sorted(str(r.run_id) for r in stored) == sorted(str(r.run_id) for r in runs)
        assert {r.role.value for r in stored} == {"hpc"}
    finally:
        store.close()


def test_a_file_mqtt_would_refuse_is_kept_as_a_dead_letter_with_its_reason(tmp_path: Path) -> None:
    good = make_result(device_id="pi-01", seq=1)
    bad = good.model_dump(mode="json")
    bad["run_id"] = "not-a-uuid"
    write(tmp_path / "good.json", good.model_dump_json())
    write(tmp_path / "bad.json", json.dumps(bad))
    write(tmp_path / "nan.json", '{"schema_version": 2, "latency": NaN}')
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        report = import_paths(store, [tmp_path])
        assert (report.read, report.stored, len(report.rejected)) == (3, 1, 2)
        reasons = {Path(f).name: why for f, why in report.rejected}
        assert "run_id" in reasons["bad.json"]
        letters = store.list_dead_letters(limit=10)
        assert len(letters) == 2
        assert any(letter.reason.startswith("nan.json: ") for letter in letters)
        assert any(letter.device_id == "pi-01" for letter in letters)  # named by the payload
    finally:
        store.close()


def test_refusals_exit_1_and_a_missing_path_is_a_one_line_error(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "x.json", "[1, 2")
    db = f"sqlite:///{tmp_path}/r.db"
    assert main(["results", "import", str(tmp_path / "x.json"), "--db", db]) == 1
    assert "refused" in capsys.readouterr().err
    assert main(["results", "import", str(tmp_path / "nowhere"), "--db", db]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_results_listing_still_needs_its_db(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results"]) == 2
    assert "--db" in capsys.readouterr().err

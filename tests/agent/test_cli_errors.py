"""User mistakes get one line and exit 2 before any work is done, and create nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemeter.cli import main


def test_bad_publish_url_fails_before_the_run(shared_models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(shared_models / "kws_dscnn_int8.tflite"), "--publish", "notaurl"]) == 2
    err = capsys.readouterr().err
    assert "mqtt://" in err and len(err.strip().splitlines()) == 1


def test_multi_stream_with_a_batch_is_refused(shared_models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(shared_models / "kws_dscnn_int8.tflite"), "--scenario", "multi-stream",
                 "--batch", "2", "--power", "none"]) == 2
    assert "samples-per-query" in capsys.readouterr().err


def test_sweep_output_into_a_missing_folder_fails_before_measuring(shared_models: Path, tmp_path: Path) -> None:
    assert main(["sweep", str(shared_models / "kws_dscnn_int8.tflite"), "--json",
                 str(tmp_path / "nope" / "rows.json")]) == 2


def test_reading_commands_never_create_a_database(tmp_path: Path) -> None:
    db = tmp_path / "typo" / "results.db"
    for argv in (["results", "--db", f"sqlite:///{db}"], ["compare", "--db", f"sqlite:///{db}"],
                 ["baselines", "list", "--db", f"sqlite:///{db}"]):
        assert main(argv) == 2
    assert not db.parent.exists()


def test_importing_a_file_without_cited_rows_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07binary")
    assert main(["baselines", "import", str(bad), "--db", f"sqlite:///{tmp_path / 'r.db'}"]) == 2

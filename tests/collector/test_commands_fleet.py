"""``edgemeter models``, ``dead-letters`` and ``fleet gaps`` through the root CLI, on SQLite."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from collector.commands_fleet import model_format
from collector.stores.base import Store, open_store
from edgemeter.cli import main
from tests.factories import make_result

RESULT_TOPIC = "edgemeter/v1/default/pi-01/result"


def run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- models -------------------------------------------------------------------------------------


def test_models_add_stores_real_models_by_content_and_ls_lists_them(
    shared_models: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    tflite, onnx = shared_models / "vww_96_int8.tflite", shared_models / "vww_96_int8_qdq.onnx"
    for path in (tflite, onnx, tflite):
        code, out, _ = run(["models", "add", str(path), "--db", sqlite_url], capsys)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert code == 0 and out.startswith(sha) and f"--model {sha}:{path.name}" in out
    code, out, _ = run(["models", "ls", "--db", sqlite_url, "--json"], capsys)
    assert code == 0
    assert sorted(m["name"] for m in json.loads(out)) == sorted([onnx.name, tflite.name])
    store = open_store(sqlite_url)
    try:
        assert store.get_model(hashlib.sha256(onnx.read_bytes()).hexdigest()) == (
            onnx.name, onnx.read_bytes())
    finally:
        store.close()


def test_models_add_refuses_a_file_that_is_not_a_model(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    fake = tmp_path / "notes.onnx"
    fake.write_text("hello, not a model")
    code, out, err = run(["models", "add", str(fake), "--db", sqlite_url], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "is not an ONNX or TFLite model" in err


def test_models_add_wants_the_name_to_match_the_content(
    shared_models: Path, tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    renamed = tmp_path / "vww.onnx"
    shutil.copy(shared_models / "vww_96_int8.tflite", renamed)
    code, _, err = run(["models", "add", str(renamed), "--db", sqlite_url], capsys)
    assert code == 2 and "holds a tflite model: name it NAME.tflite" in err


def test_models_add_refuses_a_file_over_the_size_cap_and_a_wrong_sha256(
    shared_models: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    tflite = shared_models / "vww_96_int8.tflite"
    code, out, err = run(["models", "add", str(tflite), "--db", sqlite_url, "--max-mb", "0.01"],
                         capsys)
    assert code == 2 and out == "" and "over the 0.01 MiB limit" in err and "--max-mb" in err
    code, out, err = run(["models", "add", str(tflite), "--db", sqlite_url, "--sha256", "ab" * 32],
                         capsys)
    assert code == 2 and out == "" and "not the " + "ab" * 32 in err
    sha = hashlib.sha256(tflite.read_bytes()).hexdigest()
    code, out, _ = run(["models", "add", str(tflite), "--db", sqlite_url, "--sha256", sha.upper()],
                       capsys)
    assert code == 0 and out.startswith(sha)


def test_a_stored_model_reads_back_in_chunks(shared_models: Path, store: Store) -> None:
    content = (shared_models / "vww_96_int8.tflite").read_bytes()
    sha = store.add_model("vww_96_int8.tflite", content)
    chunks = list(store.read_model(sha, chunk_bytes=4096))
    assert b"".join(chunks) == content and max(map(len, chunks)) == 4096
    record = store.model_record(sha)
    assert record is not None and record.size_bytes == len(content)
    assert list(store.read_model("0" * 64)) == [] and store.model_record("0" * 64) is None


def test_model_format_reads_the_magic_not_the_name(shared_models: Path) -> None:
    formats = {p.suffix: {model_format(p.read_bytes()) for p in shared_models.glob(f"*{p.suffix}")}
               for p in shared_models.iterdir() if p.suffix in (".onnx", ".tflite")}
    assert formats == {".onnx": {"onnx"}, ".tflite": {"tflite"}}
    assert model_format(b"\x08\x00") is None  # ir_version 0
    assert model_format(b"{}") is None and model_format(b"") is None


def test_models_ls_on_an_empty_database_says_how_to_add(
    sqlite_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    open_store(sqlite_url).close()
    code, out, _ = run(["models", "ls", "--db", sqlite_url], capsys)
    assert code == 0 and "edgemeter models add FILE" in out


# -- dead letters -------------------------------------------------------------------------------


def letter_ids(url: str) -> list[int]:
    """The ids of the dead letters, oldest first (a repeat may use up an id)."""
    store = open_store(url)
    try:
        return [d.id for d in store.list_dead_letters() if d.id is not None]
    finally:
        store.close()


@pytest.fixture()
def letters_db(sqlite_url: str) -> str:
    store = open_store(sqlite_url)
    try:
        store.add_dead_letter(RESULT_TOPIC, "payload is not JSON", b"\xff{", device_id="pi-01")
        store.add_dead_letter(RESULT_TOPIC, "payload is not JSON", b"\xff{", device_id="pi-01")
        store.add_dead_letter(RESULT_TOPIC, "payload is not JSON", b"nope", device_id="pi-01")
        # valid today (e.g. rejected by an older collector): replay stores it
        store.add_dead_letter(RESULT_TOPIC, "unsupported schema_version",
                              make_result(seq=7).model_dump_json().encode(), device_id="pi-01")
    finally:
        store.close()
    return sqlite_url


def test_dead_letters_ls_counts_by_reason_then_lists_one_reason(
    letters_db: str, capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(["dead-letters", "ls", "--db", letters_db, "--json"], capsys)
    assert code == 0 and json.loads(out) == [
        {"reason": "payload is not JSON", "letters": 2, "messages": 3},
        {"reason": "unsupported schema_version", "letters": 1, "messages": 1}]
    code, out, _ = run(["dead-letters", "ls", "--db", letters_db, "--reason",
                        "payload is not JSON"], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["id", "device", "count"] and len(lines) == 3


def test_dead_letters_show_prints_binary_as_hex_and_text_as_text(
    letters_db: str, capsys: pytest.CaptureFixture[str],
) -> None:
    binary, _, valid = letter_ids(letters_db)
    code, out, _ = run(["dead-letters", "show", str(binary), "--db", letters_db], capsys)
    assert code == 0 and "count:       2" in out and "00000000  ff 7b" in out
    code, out, _ = run(["dead-letters", "show", str(valid), "--db", letters_db], capsys)
    assert code == 0 and '"seq":7' in out
    code, _, err = run(["dead-letters", "show", "99", "--db", letters_db], capsys)
    assert code == 2 and "no dead letter 99" in err


def test_replay_stores_what_validates_now_and_keeps_the_rest(
    letters_db: str, capsys: pytest.CaptureFixture[str],
) -> None:
    binary, text, valid = letter_ids(letters_db)
    code, out, err = run(["dead-letters", "replay", "--db", letters_db], capsys)
    assert code == 1 and "1 of 3 dead letters validate now" in err
    assert f"{valid}: stored: stored result" in out and f"{binary}: kept: still rejected" in out
    store = open_store(letters_db)
    try:
        assert [r.seq for r in store.list_results()] == [7]
    finally:
        store.close()
    assert letter_ids(letters_db) == [binary, text]
    code, out, _ = run(["dead-letters", "replay", "--id", str(text), "--id", "50", "--db",
                        letters_db], capsys)
    assert code == 1 and "50: kept: no such dead letter" in out


def test_purge_by_id_or_all_and_never_without_saying_which(
    letters_db: str, capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(["dead-letters", "purge", "--db", letters_db], capsys)
    assert code == 2 and "--id" in err and "--all" in err
    first = letter_ids(letters_db)[0]
    code, out, _ = run(["dead-letters", "purge", "--id", str(first), "--id", "99", "--db",
                        letters_db], capsys)
    assert code == 0 and out == "deleted 1 dead letters\n"
    code, out, _ = run(["dead-letters", "purge", "--all", "--db", letters_db], capsys)
    assert code == 0 and out == "deleted 2 dead letters\n"


def test_a_missing_database_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(["dead-letters", "ls", "--db", f"sqlite:///{tmp_path}/none.db"], capsys)
    assert code == 2 and err.count("\n") == 1 and "no results database" in err
    assert not (tmp_path / "none.db").exists()


# -- fleet gaps ---------------------------------------------------------------------------------


def test_fleet_gaps_lists_missing_ranges_as_table_and_json(
    sqlite_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    store = open_store(sqlite_url)
    try:
        store.add_results([make_result(seq=s) for s in (0, 3, 4, 8)])
        store.add_results([make_result(device_id="pi-02", seq=s) for s in (0, 1)])
    finally:
        store.close()
    code, out, _ = run(["fleet", "gaps", "--db", sqlite_url, "--json"], capsys)
    assert code == 0 and [(g["first_missing"], g["last_missing"], g["missing"])
                          for g in json.loads(out)] == [(1, 2, 2), (5, 7, 3)]
    code, out, _ = run(["fleet", "gaps", "--db", sqlite_url, "--device", "pi-02"], capsys)
    assert code == 0 and "no gaps" in out
    code, out, _ = run(["fleet", "gaps", "--db", sqlite_url], capsys)
    assert code == 0 and out.splitlines()[1].split() == ["pi-01", "default", "1", "2", "2"]


def test_replay_applies_presence_and_drops_valid_progress_but_keeps_truncated_letters(
    sqlite_url: str,
) -> None:
    from collector.dead_letters import replay
    from shared.messages import Progress, Status

    birth = Status(device_id="pi-01", fleet="lab", status="online", bd_seq=2)
    progress = Progress(device_id="pi-01", fleet="lab", job_id="j1", phase="measure")
    store = open_store(sqlite_url)
    try:
        store.add_dead_letter("edgemeter/v1/lab/pi-01/status", "old", birth.model_dump_json()
                              .encode(), device_id="pi-01", retained=True)
        store.add_dead_letter("edgemeter/v1/lab/pi-01/progress", "old",
                              progress.model_dump_json().encode(), device_id="pi-01")
        store.add_dead_letter(RESULT_TOPIC, "too big", b"x" * 70_000, device_id="pi-01")
        outcomes = replay(store)
        assert [o.stored for o in outcomes] == [True, True, False]
        assert "cannot be read again" in outcomes[2].detail
        [device] = store.list_devices()
        assert (device.status, device.bd_seq) == ("online", 2)
        assert [d.reason for d in store.list_dead_letters()] == ["too big"]
    finally:
        store.close()

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


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture()
def corrupt_model(tmp_path: Path) -> Path:
    """A model that fails as soon as it loads: an error about anything else came first."""
    model = tmp_path / "corrupt.tflite"
    model.write_bytes(b"\x00" * 4 + b"TFL3" + b"garbage" * 50)
    return model


@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_missing_or_unsupported_inputs_fail_before_the_model_loads(
    command: str, corrupt_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(corrupt_model), "--inputs", "/nope", "--power", "none"]) == 2
    line = _one_error_line(capsys)
    assert "inputs" in line and "/nope: no such file or folder" in line
    csv = tmp_path / "inputs.csv"
    csv.write_text("1,2,3\n")
    assert main([command, str(corrupt_model), "--inputs", str(csv), "--power", "none"]) == 2
    assert "unsupported file type .csv" in _one_error_line(capsys)


@pytest.mark.parametrize(("command", "flag"), [("bench", "--json"), ("sweep", "--json"),
                                               ("sweep", "--plot")])
def test_an_output_into_a_missing_folder_fails_before_the_model_loads(
    command: str, flag: str, corrupt_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(corrupt_model), flag, "/nope/x.out", "--power", "none"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"edgemeter: error: {flag} /nope/x.out: the folder /nope does not exist")


def test_a_bad_flag_value_is_one_line_not_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "model.tflite", "--threads", "abc"]) == 2
    line = _one_error_line(capsys)
    assert "--threads: invalid int value: 'abc'" in line and "edgemeter bench --help" in line


def test_verbose_and_quiet_are_accepted_after_the_subcommand() -> None:
    from edgemeter.cli import build_parser

    parser = build_parser()
    after = parser.parse_args(["bench", "-v", "-q", "m.tflite"])
    assert (after.sub_verbose, after.quiet) == (1, True)
    before = parser.parse_args(["-v", "-q", "bench", "m.tflite"])
    assert (before.verbose, before.quiet) == (1, True)
    assert parser.parse_args(["sweep", "m.onnx", "-q"]).quiet is True
    assert parser.parse_args(["results", "--db", "sqlite:///x", "-v"]).sub_verbose == 1
    assert parser.parse_args(["bench", "m.tflite"]).quiet is False


@pytest.mark.parametrize(("argv", "prog"), [
    (["bench", "model.tflite", "--no-such-flag"], "edgemeter bench"),
    (["fleet", "ls", "--mqtt", "mqtt://x", "--no-such-flag"], "edgemeter fleet ls"),
])
def test_an_unknown_flag_is_hinted_with_its_own_subcommands_help(
    capsys: pytest.CaptureFixture[str], argv: list[str], prog: str,
) -> None:
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"{prog}: error: unrecognized arguments: --no-such-flag")
    assert line.endswith(f"(see {prog} --help)")


def test_help_names_the_wire_schema_version_schema_prints() -> None:
    from edgemeter.cli import COMMANDS
    from shared.schema import SCHEMA_VERSION, json_schema

    assert f"wire schema v{SCHEMA_VERSION})" in COMMANDS["schema"][1]
    assert json_schema()["properties"]["schema_version"]["default"] == SCHEMA_VERSION

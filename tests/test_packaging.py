"""The agent stays light: its install and its imports never pull the collector's stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.errors import MissingExtraError, require_module
from tests.conftest import unavailable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("psycopg", "matplotlib", "pyarrow", "amqtt", "onnx", "onnxruntime", "ai_edge_litert")


def test_agent_install_depends_on_no_database_web_or_plotting_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for heavy in ("psycopg", "matplotlib", "pyarrow", "amqtt", "fastapi", "sqlalchemy"):
        assert heavy not in base
    assert set(project["optional-dependencies"]) >= {"onnx", "litert", "collector", "demo", "dev", "all"}


@pytest.mark.subprocess
def test_building_the_cli_imports_no_runtime_database_or_plotting_library() -> None:
    code = (
        "import sys; from edgemeter.cli import build_parser; build_parser(); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.subprocess
def test_the_help_loads_neither_numpy_nor_pydantic() -> None:
    """`edgemeter --help` only lists commands; its start-up time is measured by bench/startup.py."""
    code = (
        "import sys; from edgemeter.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(','.join(m for m in ('numpy', 'pydantic', 'paho') if m in sys.modules), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stderr.strip() == ""
    assert "bench" in out.stdout and "collector" in out.stdout


def test_missing_extra_error_names_this_copys_own_install_command() -> None:
    """This checkout is installed editable: the hint is its own interpreter's pip on this tree."""
    with pytest.raises(MissingExtraError) as excinfo:
        require_module("edgemeter_surely_missing_module", "collector")
    message = str(excinfo.value)
    assert "edgemeter[collector]" not in message  # never the package index
    assert f"-e {REPO}[collector]" in message or f"-e '{REPO}[collector]'" in message
    assert sys.executable in message


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_fresh_agent_install_benchmarks_an_onnx_model_without_the_collector_stack(
    tmp_path: Path, shared_models: Path,
) -> None:
    """`pip install -e '.[onnx]'` in a new venv: bench works, and no collector package came."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", f"{REPO}[onnx]"],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        unavailable(f"pip could not install the agent: {pip.stderr.strip().splitlines()[-1:]}")
    listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format", "json"],
                            capture_output=True, text=True, check=True).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert "onnxruntime" in names
    for heavy in ("sqlalchemy", "psycopg", "psycopg-binary", "matplotlib", "pyarrow", "fastapi",
                  "starlette", "uvicorn", "alembic", "prometheus-client", "amqtt"):
        assert heavy not in names, f"the agent's install pulled {heavy}"
    out = tmp_path / "result.json"
    bench = subprocess.run(
        [str(venv / "bin" / "edgemeter"), "bench", str(shared_models / "vww_96_int8_qdq.onnx"),
         "--iterations", "20", "--warmup", "2", "--power", "none", "--fidelity", "2", "-q",
         "--json", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    assert json.loads(out.read_text())["latency_ms"]["count"] == 20

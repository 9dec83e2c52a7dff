"""The agent stays light: its install and its imports never pull the collector's stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.errors import MissingExtraError, require_module

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


def test_building_the_cli_imports_no_runtime_database_or_plotting_library() -> None:
    code = (
        "import sys; from edgemeter.cli import build_parser; build_parser(); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


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


def test_missing_extra_error_names_the_exact_pip_command() -> None:
    try:
        require_module("edgemeter_surely_missing_module", "collector")
    except MissingExtraError as err:
        assert "pip install 'edgemeter[collector]'" in str(err)
    else:
        raise AssertionError("require_module did not raise")

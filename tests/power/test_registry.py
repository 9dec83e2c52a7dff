"""The meta-test over every registered source, and the public surface."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
from pydantic import BaseModel

import agent.power
from agent.power import available_sources, probe_all
from agent.power.base import PowerSource, SourceSettings
from agent.power.registry import SOURCES, auto_order, create, source_class
from shared.errors import ConfigError
from shared.schema import PowerScope


def roots(tmp_path: Path) -> dict[str, dict[str, Path]]:
    """Every sysfs-reading source pointed at an empty tree."""
    return {name: {"root": tmp_path} for name in SOURCES
            if "root" in source_class(name).Settings.model_fields}


@pytest.mark.parametrize("name", available_sources())
def test_every_source_follows_the_conventions(name: str, tmp_path: Path) -> None:
    cls = source_class(name)
    assert issubclass(cls, PowerSource)
    # it owns its settings: a strict pydantic model whose fields all say what they are
    assert issubclass(cls.Settings, SourceSettings) and issubclass(cls.Settings, BaseModel)
    assert cls.Settings.model_config.get("extra") == "forbid"
    assert all(f.description for f in cls.Settings.model_fields.values())
    cls.Settings()  # every key has a default: an absent table means the defaults
    source = create(name, roots(tmp_path).get(name))
    assert source.name == name
    assert isinstance(source.scope, PowerScope)
    assert source.kind in ("counter", "gauge")
    assert source.max_hz > 0
    assert source.update_period_s >= 0
    assert isinstance(source.estimated, bool)
    assert source.estimated == (source.scope is PowerScope.ESTIMATE)
    why = source.probe()  # an empty root: must not raise
    assert why is None or (isinstance(why, str) and why and "\n" not in why)
    source.close()  # closing an unopened source is harmless


def test_probe_all_on_an_empty_root_says_why_for_each(tmp_path: Path) -> None:
    result = probe_all(roots(tmp_path))
    assert set(result) == set(SOURCES)
    for name in ("rapl", "jetson", "tasmota", "shelly"):
        assert result[name], name
    assert "no RAPL zones" in str(result["rapl"])
    assert "--power-mqtt" in str(result["tasmota"])


def test_auto_order_ends_with_the_estimate() -> None:
    assert auto_order("x86_64") == ["rapl", "nvml", "estimate"]
    assert auto_order("aarch64") == ["jetson", "rpi5", "nvml", "estimate"]
    assert auto_order("riscv64")[-1] == "estimate"


def test_unknown_source_is_an_actionable_error() -> None:
    with pytest.raises(ConfigError, match="unknown power source 'watts-up'; choose one of: auto, "
                       "none, rapl"):
        source_class("watts-up")


def test_all_is_complete() -> None:
    public = {
        n for n, v in vars(agent.power).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"
    }
    assert public == set(agent.power.__all__)


@pytest.mark.subprocess
def test_importing_the_package_imports_no_source_library() -> None:
    code = (
        "import sys, agent.power; "
        "bad = [m for m in ('pynvml', 'paho', 'agent.power.nvml', 'agent.power.tasmota', "
        "'agent.power.rapl') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stdout + done.stderr

"""``collector.compare`` exports its public names, and importing it stays light."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import collector.compare as compare_pkg

MODULES = ("cost", "engine", "matching", "baselines")


def test_all_is_complete_and_resolvable() -> None:
    exported = set(compare_pkg.__all__)
    assert len(exported) == len(compare_pkg.__all__)
    for name in exported:
        assert hasattr(compare_pkg, name), name
    for module_name in MODULES:
        module = importlib.import_module(f"collector.compare.{module_name}")
        public = {
            name for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__
        }
        assert public <= exported, f"{module_name}: not exported {public - exported}"


@pytest.mark.subprocess
def test_registering_the_commands_imports_no_plotting_or_database_driver() -> None:
    code = (
        "import argparse, sys\n"
        "from collector.compare.commands import register\n"
        "register(argparse.ArgumentParser().add_subparsers())\n"
        "bad = [m for m in ('matplotlib', 'psycopg', 'sqlite3') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Meta-tests: every plugin registered by name follows the conventions of its registry."""

from __future__ import annotations

import argparse
import importlib

import pytest

from agent.backends.base import BACKENDS, get_backend
from collector.stores.base import STORES
from edgemeter.cli import COMMAND_MODULES, COMMANDS


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_has_a_name_formats_and_a_probe_that_never_raises(name: str) -> None:
    backend = get_backend(name)
    assert backend.name == name
    assert backend.formats and all(f in ("onnx", "tflite") for f in backend.formats)
    why = backend.probe()
    assert why is None or (isinstance(why, str) and why)


@pytest.mark.parametrize("name", sorted(set(STORES.values())))
def test_every_store_implements_the_store_interface(name: str) -> None:
    module, _, cls = name.partition(":")
    store_cls = getattr(importlib.import_module(module), cls)
    for method in ("migrate", "add_results", "add_dead_letter", "list_results", "get_result",
                   "list_dead_letters", "add_cited_baselines", "list_cited_baselines", "close"):
        assert callable(getattr(store_cls, method, None)), f"{cls} lacks {method}"


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_every_command_module_registers_a_documented_subcommand(module: str) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(module).register(sub)
    assert sub.choices, f"{module} registered nothing"
    for name, subparser in sub.choices.items():
        assert subparser.description or any(a.help for a in sub._choices_actions if a.dest == name)


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_the_lazy_command_table_lists_exactly_what_each_module_registers(module: str) -> None:
    """``edgemeter --help`` lists commands from the table without importing their modules."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(module).register(sub)
    listed = {name for name, (mod, _) in COMMANDS.items() if mod == module}
    assert set(sub.choices) == listed
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name in listed:
        assert COMMANDS[name][1] == helps[name], f"help of {name!r} differs from its module's"
